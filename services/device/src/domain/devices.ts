import crypto from 'node:crypto';
import { errors, isSubjectToken } from '@iot-mesh/runtime';
import type { DeviceCache } from '../store/device-cache';
import type { DeviceStore, StatusChange } from '../store/device-store';
import type { GroupStore } from '../store/group-store';
import type { Credentials, IssuedCredential } from './credentials';
import type { DeviceTypes } from './device-types';
import { DeviceCursor, DeviceEventKind, DeviceFilter, DeviceOrder, DevicePatch, DeviceRecord, DeviceTypeRecord, NewDevice } from './model';

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

/** A page of devices in a chosen order. */
export interface OrderedDevicePage {
  devices: DeviceRecord[];
  /** Keyset position of the last device when more follow. */
  next?: DeviceCursor;
}

/** What the registry is built from. */
export interface RegistryDeps {
  store: DeviceStore;
  cache: Pick<DeviceCache, 'get' | 'put'>;
  changes: DeviceChanges;
  credentials: Credentials;
  /** Resolves the device type a new or updated device names (by id or name). */
  types: Pick<DeviceTypes, 'byName'>;
  /** Resolves a list's group filter. */
  groups: Pick<GroupStore, 'get'>;
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
    const created = await this.deps.store.insert(tenantId, await this.typed(tenantId, devices));
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
    if (patch.deviceTypeId) {
      const type = await this.explicitType(tenantId, patch.deviceTypeId, 'device.device_type_id');
      patch = { ...patch, deviceTypeId: type.id, type: type.name };
    }
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

  /** Devices matching `filter` after keyset position `after`, `size` at most, in creation order. */
  async list(tenantId: string, filter: DeviceFilter, size: number, after: string | undefined): Promise<DevicePage> {
    const page = await this.listOrdered(tenantId, filter, { descending: false }, size, after === undefined ? undefined : { seq: after });
    return { devices: page.devices, nextAfter: page.next?.seq };
  }

  /** Devices matching `filter` in `order` after `after`, `size` at most. */
  async listOrdered(tenantId: string, filter: DeviceFilter, order: DeviceOrder, size: number, after: DeviceCursor | undefined): Promise<OrderedDevicePage> {
    const resolved = await this.resolveGroup(tenantId, filter);
    if (!resolved) return { devices: [] };
    const rows = await this.deps.store.listOrdered(tenantId, resolved, order, after, size + 1);
    const page = rows.slice(0, size);
    return { devices: page.map((r) => r.device), next: rows.length > size ? page[page.length - 1].cursor : undefined };
  }

  /** How many devices match `filter` (over every page of a list). */
  async count(tenantId: string, filter: DeviceFilter): Promise<number> {
    const resolved = await this.resolveGroup(tenantId, filter);
    return resolved ? this.deps.store.count(tenantId, resolved) : 0;
  }

  /** The filter with its group's selector folded in; undefined when nothing can match both. */
  private async resolveGroup(tenantId: string, filter: DeviceFilter): Promise<DeviceFilter | undefined> {
    if (!filter.groupId) return filter;
    const group = await this.deps.groups.get(tenantId, filter.groupId);
    if (!group) throw errors.notFound('group', filter.groupId);
    const labels = { ...group.matchLabels };
    for (const [key, value] of Object.entries(filter.labels ?? {})) {
      // A label the group fixes to another value: nothing can match both.
      if (key in labels && labels[key] !== value) return undefined;
      labels[key] = value;
    }
    if (group.deviceTypeId && filter.deviceTypeId && group.deviceTypeId !== filter.deviceTypeId) return undefined;
    return { ...filter, groupId: undefined, labels, deviceTypeId: group.deviceTypeId ?? filter.deviceTypeId };
  }

  /**
   * New devices with their device type resolved: one named by id or name in
   * `deviceTypeId` (NOT_FOUND-worthy names are INVALID_ARGUMENT), else one
   * whose name equals the free-text `type`; the type's name becomes `type`.
   */
  private async typed(tenantId: string, devices: NewDevice[]): Promise<NewDevice[]> {
    const seen = new Map<string, Promise<DeviceTypeRecord | undefined>>();
    const lookup = (key: string, explicit: boolean, field: string) => {
      const cacheKey = `${explicit}:${key}`;
      if (!seen.has(cacheKey)) seen.set(cacheKey, explicit ? this.explicitType(tenantId, key, field) : this.deps.types.byName(tenantId, key));
      return seen.get(cacheKey)!;
    };
    const out: NewDevice[] = [];
    for (const [i, d] of devices.entries()) {
      const field = devices.length > 1 ? `devices[${i}].device_type_id` : 'device.device_type_id';
      const type = d.deviceTypeId ? await lookup(d.deviceTypeId, true, field) : d.type ? await lookup(d.type, false, field) : undefined;
      out.push(type ? { ...d, deviceTypeId: type.id, type: type.name } : { ...d, deviceTypeId: undefined });
    }
    return out;
  }

  /** The type a request names; INVALID_ARGUMENT (not NOT_FOUND: the device is what is asked for) when there is none. */
  private async explicitType(tenantId: string, idOrName: string, field: string): Promise<DeviceTypeRecord> {
    const type = await this.deps.types.byName(tenantId, idOrName);
    if (!type) throw errors.invalidArgument([{ field, description: 'names no device type of the tenant' }]);
    return type;
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
