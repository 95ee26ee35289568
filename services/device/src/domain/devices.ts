import crypto from 'node:crypto';
import { decodePageToken, encodePageToken, errors, isSubjectToken, Logger, Violations } from '@iot-mesh/runtime';
import { DeviceEvents } from './nats/device-events';
import { DeviceDirectory } from './nats/device-directory';
import { AccountAuthority } from './nats/account-authority';
import { DeviceCache } from './store/device-cache';
import { DeviceStore } from './store/device-store';
import { DeviceFilter, DeviceRecord } from './model';
import { checkNewDevice, DEVICE_LIMITS, DeviceInput, toNewDevice, toPatch } from './validate';

/** A credential as handed to the caller once: the token is never stored. */
export interface IssuedCredential {
  deviceId: string;
  tenantId: string;
  token: string;
  publicKey: string;
  issueTime: Date;
  expireTime?: Date;
  natsUrl: string;
  mqttUrl: string;
  publishSubjects: string[];
  subscribeSubjects: string[];
}

/** A page of devices. */
export interface DevicePage {
  devices: DeviceRecord[];
  nextPageToken: string;
}

/** What the registry is built from. */
export interface RegistryDeps {
  store: DeviceStore;
  cache: DeviceCache;
  directory: DeviceDirectory;
  events: DeviceEvents;
  /** Absent when NATS credentials are not configured: credential calls then fail with FAILED_PRECONDITION. */
  authority?: AccountAuthority;
  /** Where devices connect, as put into credentials. */
  urls: { nats: string; mqtt: string };
  log: Logger;
}

/**
 * The device registry of every tenant: devices, their credentials and the
 * side effects every change has (cache, directory, events, the NATS account's
 * revocation list). Every method is scoped to one tenant; a device of another
 * tenant does not exist for it.
 */
export class DeviceRegistry {
  constructor(private readonly deps: RegistryDeps) {}

  private get authority(): AccountAuthority {
    if (!this.deps.authority) throw errors.failedPrecondition('device credentials are not configured on this server (DEVICE_NATS_* variables)');
    return this.deps.authority;
  }

  /** Tells every reader about changed devices: cache, directory, events. */
  private async changed(kind: Parameters<DeviceEvents['publish']>[0], devices: DeviceRecord[]): Promise<void> {
    await Promise.all(devices.map((d) => this.deps.cache.invalidate(d.tenantId, d.id, d.version)));
    if (kind === 'deleted') await Promise.all(devices.map((d) => this.deps.directory.remove(d.tenantId, d.id)));
    else if (kind !== 'status_changed') await this.deps.directory.put(devices);
    this.deps.events.publish(kind, devices);
  }

  async create(tenantId: string, input: DeviceInput | undefined): Promise<DeviceRecord> {
    const v = new Violations();
    checkNewDevice(input, 'device', v);
    v.throwIfAny();
    const [device] = await this.insert(tenantId, [toNewDevice(input!, newDeviceId)]);
    return device;
  }

  private async insert(tenantId: string, devices: ReturnType<typeof toNewDevice>[]): Promise<DeviceRecord[]> {
    const created = await this.deps.store.insert(tenantId, devices).catch((err: { code?: string }) => {
      if (err.code === '23505') throw errors.alreadyExists('a device with this id already exists');
      throw err;
    });
    await this.changed('created', created);
    return created;
  }

  /** Creates up to 1000 devices in one transaction, optionally with a credential each. */
  async createMany(tenantId: string, inputs: DeviceInput[], issueCredentials: boolean): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    const v = new Violations();
    v.check(inputs.length > 0, 'devices', 'at least one device is required');
    v.check(inputs.length <= DEVICE_LIMITS.batch, 'devices', `at most ${DEVICE_LIMITS.batch} devices per call`);
    if (inputs.length <= DEVICE_LIMITS.batch) inputs.forEach((input, i) => checkNewDevice(input, `devices[${i}]`, v));
    const seen = new Map<string, number>();
    inputs.forEach((input, i) => {
      if (!input?.id) return;
      if (seen.has(input.id)) v.add(`devices[${i}].id`, `repeats devices[${seen.get(input.id)}].id`);
      else seen.set(input.id, i);
    });
    v.throwIfAny();
    if (issueCredentials) void this.authority;
    const devices = await this.insert(tenantId, inputs.map((input) => toNewDevice(input, newDeviceId)));
    if (!issueCredentials) return { devices, credentials: [] };
    const { devices: withCredentials, credentials } = await this.issue(tenantId, devices, undefined);
    return { devices: withCredentials, credentials };
  }

  async get(tenantId: string, id: string): Promise<DeviceRecord> {
    checkId(id, 'id');
    const cached = await this.deps.cache.get(tenantId, id);
    if (cached) return cached;
    const device = await this.deps.store.get(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.deps.cache.put(device);
    return device;
  }

  async update(tenantId: string, input: DeviceInput | undefined, paths: string[]): Promise<DeviceRecord> {
    const v = new Violations();
    v.required(input?.id, 'device.id');
    const patch = toPatch(input, paths, v);
    v.throwIfAny();
    checkId(input!.id!, 'device.id');
    const device = await this.deps.store.update(tenantId, input!.id!, patch);
    if (!device) throw errors.notFound('device', input!.id!);
    await this.changed('updated', [device]);
    return device;
  }

  /** Deletes the device; its credential joins the revocation list, so a live connection is dropped. */
  async delete(tenantId: string, id: string): Promise<void> {
    checkId(id, 'id');
    const device = await this.deps.store.delete(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.changed('deleted', [{ ...device, version: device.version + 1 }]);
    // Normally the server has dropped the device when this returns; if NATS is away the push is retried.
    if (device.credentialKey) await this.deps.authority?.syncInBackground();
  }

  async list(tenantId: string, filter: DeviceFilter, size: number, pageToken: string | undefined): Promise<DevicePage> {
    const cursor = decodePageToken(pageToken);
    if (cursor && (cursor.length !== 1 || typeof cursor[0] !== 'string' || !/^\d+$/.test(cursor[0]))) {
      throw errors.invalidArgument([{ field: 'page.page_token', description: 'is not a token this server issued' }]);
    }
    const v = new Violations();
    if (filter.labels) for (const key of Object.keys(filter.labels)) v.check(key.length > 0, 'labels', 'label keys must not be empty');
    v.throwIfAny();
    const rows = await this.deps.store.list(tenantId, filter, cursor?.[0] as string | undefined, size + 1);
    const devices = rows.slice(0, size);
    return { devices, nextPageToken: rows.length > size ? encodePageToken([devices[devices.length - 1].seq]) : '' };
  }

  /** Mints a credential for a device that has no active one. */
  async issueCredential(tenantId: string, id: string, expireTime: Date | undefined): Promise<IssuedCredential> {
    const device = await this.existing(tenantId, id, expireTime);
    if (device.credentialState === 'active') throw errors.failedPrecondition(`device ${JSON.stringify(id)} already has an active credential; rotate or revoke it`);
    const { credentials } = await this.issue(tenantId, [device], expireTime);
    return credentials[0];
  }

  /** Mints a new credential and revokes the previous one at the NATS server before returning. */
  async rotateCredential(tenantId: string, id: string, expireTime: Date | undefined): Promise<IssuedCredential> {
    const device = await this.existing(tenantId, id, expireTime);
    const { credentials } = await this.issue(tenantId, [device], expireTime);
    if (device.credentialKey) await this.enforceRevocations();
    return credentials[0];
  }

  /** Revokes the credential: the NATS server drops the live connection and refuses reconnects. */
  async revokeCredential(tenantId: string, id: string): Promise<DeviceRecord> {
    checkId(id, 'device_id');
    void this.authority;
    const device = await this.deps.store.revokeCredential(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.enforceRevocations();
    await this.changed('credential_revoked', [device]);
    return device;
  }

  /** Pushes the revocation list; a NATS failure becomes UNAVAILABLE (the registry already holds the revocation and retries). */
  private async enforceRevocations(): Promise<void> {
    try {
      await this.authority.sync();
    } catch (err) {
      throw errors.unavailable('the revocation is recorded but the NATS server has not confirmed it yet; it is retried', err);
    }
  }

  private async existing(tenantId: string, id: string, expireTime: Date | undefined): Promise<DeviceRecord> {
    checkId(id, 'device_id');
    void this.authority;
    if (expireTime && expireTime.getTime() <= Date.now()) throw errors.invalidArgument([{ field: 'expire_time', description: 'must be in the future' }]);
    const device = await this.deps.store.get(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    return device;
  }

  private async issue(tenantId: string, devices: DeviceRecord[], expireTime: Date | undefined): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    const authority = this.authority;
    const issueTime = new Date();
    const minted = devices.map((d) => authority.mint(tenantId, d.id, expireTime));
    const updated = await this.deps.store.setCredential(
      tenantId,
      devices.map((d) => d.id),
      minted.map((m) => ({ publicKey: m.publicKey, issueTime, expireTime })),
    );
    if (updated.length !== devices.length) throw errors.notFound('device', devices.find((d) => !updated.some((u) => u.id === d.id))!.id);
    await this.changed('credential_issued', updated);
    const credentials = devices.map((d, i) => ({
      deviceId: d.id,
      tenantId,
      token: minted[i].token,
      publicKey: minted[i].publicKey,
      issueTime,
      expireTime,
      natsUrl: this.deps.urls.nats,
      mqttUrl: this.deps.urls.mqtt,
      publishSubjects: minted[i].permissions.publish,
      subscribeSubjects: minted[i].permissions.subscribe,
    }));
    return { devices: updated, credentials };
  }
}

/** A server-assigned device id: a random UUID (a valid subject token). */
export function newDeviceId(): string {
  return crypto.randomUUID();
}

function checkId(id: string, field: string): void {
  if (!id) throw errors.invalidArgument([{ field, description: 'is required' }]);
  // An id that could never exist is simply not found (nor may it reach a NATS subject).
  if (!isSubjectToken(id)) throw errors.notFound('device', id);
}
