import crypto from 'node:crypto';
import { errors, isSubjectToken } from '@iot-mesh/runtime';
import type { DeviceCache } from '../store/device-cache';
import type { DeviceStore, StatusChange } from '../store/device-store';
import type { Credentials, IssuedCredential } from './credentials';
import { DeviceEventKind, DeviceFilter, DevicePatch, DeviceRecord, NewDevice } from './model';

/** Where the directory of devices other services watch is written (the NATS KV bucket). */
export interface DeviceDirectoryWriter {
  put(devices: DeviceRecord[]): Promise<void>;
  remove(tenantId: string, deviceId: string): Promise<void>;
}

/** Where device events go (WatchDevices streams and any other subscriber). */
export interface DeviceEventSink {
  publish(kind: DeviceEventKind, devices: DeviceRecord[]): void;
}

/**
 * Everyone who must learn of a changed device: the cache (a tombstone, so a
 * stale read cannot put the old row back), the directory, event subscribers.
 */
export class DeviceChanges {
  constructor(
    private readonly cache: Pick<DeviceCache, 'invalidate'>,
    private readonly directory: DeviceDirectoryWriter,
    private readonly events: DeviceEventSink,
  ) {}

  /** A registry change: cache, directory (not for status changes, which it does not hold), events. */
  async announce(kind: DeviceEventKind, devices: DeviceRecord[]): Promise<void> {
    await Promise.all(devices.map((d) => this.cache.invalidate(d.tenantId, d.id, d.version)));
    if (kind === 'deleted') await Promise.all(devices.map((d) => this.directory.remove(d.tenantId, d.id)));
    else if (kind !== 'status_changed') await this.directory.put(devices);
    this.events.publish(kind, devices);
  }

  /** A connection change: every one drops the cached copy; only a flip of online/offline is an event. */
  async connection(change: StatusChange): Promise<void> {
    await this.invalidate(change.device);
    if (change.changed) this.events.publish('status_changed', [change.device]);
  }

  /** Drops the cached copy of a device whose row changed in a way nobody subscribes to (last seen). */
  invalidate(device: { tenantId: string; id: string; version: number }): Promise<void> {
    return this.cache.invalidate(device.tenantId, device.id, device.version);
  }
}

/** A page of devices. */
export interface DevicePage {
  devices: DeviceRecord[];
  /** Keyset position of the last device when more follow. */
  nextAfter?: string;
}

/** What the registry is built from. */
export interface RegistryDeps {
  store: DeviceStore;
  cache: Pick<DeviceCache, 'get' | 'put'>;
  changes: DeviceChanges;
  credentials: Credentials;
}

/**
 * The device registry of every tenant. Every method is scoped to one tenant;
 * a device of another tenant does not exist for it. Inputs arrive validated
 * (see `api/devices.ts`); ids are checked here because every caller passes them.
 */
export class DeviceRegistry {
  constructor(private readonly deps: RegistryDeps) {}

  /** Creates the devices in one transaction (ALREADY_EXISTS, and none created, when an id is taken). */
  async create(tenantId: string, devices: NewDevice[]): Promise<DeviceRecord[]> {
    const created = await this.deps.store.insert(tenantId, devices);
    await this.deps.changes.announce('created', created);
    return created;
  }

  /** Creates up to a batch of devices, optionally with a credential each. */
  async createMany(tenantId: string, devices: NewDevice[], issueCredentials: boolean): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    // Refuse before inserting anything when credentials cannot be minted.
    if (issueCredentials) this.deps.credentials.requireConfigured();
    const created = await this.create(tenantId, devices);
    if (!issueCredentials) return { devices: created, credentials: [] };
    return this.deps.credentials.issueFor(tenantId, created, undefined);
  }

  /** A device, from the cache when it holds it. */
  async get(tenantId: string, id: string, field = 'id'): Promise<DeviceRecord> {
    checkDeviceId(id, field);
    const cached = await this.deps.cache.get(tenantId, id);
    if (cached) return cached;
    const device = await this.deps.store.get(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.deps.cache.put(device);
    return device;
  }

  async update(tenantId: string, id: string, patch: DevicePatch): Promise<DeviceRecord> {
    checkDeviceId(id, 'device.id');
    const device = await this.deps.store.update(tenantId, id, patch);
    if (!device) throw errors.notFound('device', id);
    await this.deps.changes.announce('updated', [device]);
    return device;
  }

  /** Deletes the device; its credential joins the revocation list, so a live connection is dropped. */
  async delete(tenantId: string, id: string): Promise<void> {
    checkDeviceId(id, 'id');
    const device = await this.deps.store.delete(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.deps.changes.announce('deleted', [{ ...device, version: device.version + 1 }]);
    await this.deps.credentials.deviceDeleted(device);
  }

  /** Devices matching `filter` after keyset position `after`, `size` at most. */
  async list(tenantId: string, filter: DeviceFilter, size: number, after: string | undefined): Promise<DevicePage> {
    const rows = await this.deps.store.list(tenantId, filter, after, size + 1);
    const devices = rows.slice(0, size);
    return { devices, nextAfter: rows.length > size ? devices[devices.length - 1].seq : undefined };
  }
}

/** A server-assigned device id: a random UUID (a valid subject token). */
export function newDeviceId(): string {
  return crypto.randomUUID();
}

/** INVALID_ARGUMENT for an empty id; NOT_FOUND for one that could never exist (nor may it reach a NATS subject). */
export function checkDeviceId(id: string, field: string): void {
  if (!id) throw errors.invalidArgument([{ field, description: 'is required' }]);
  if (!isSubjectToken(id)) throw errors.notFound('device', id);
}
