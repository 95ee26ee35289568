import { callerTenant, decodePageToken, defineService, encodePageToken, errors, isSubjectToken, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { CountDevicesRequest, CredentialState, Device, DeviceCredential, DeviceEventType, DeviceServiceService, DeviceStatus, ListDevicesRequest, WatchDevicesResponse } from '../../../../gen/ts/iot/device/v1/device';
import type { IssuedCredential } from '../domain/credentials';
import { isUuid } from '../store/device-type-store';
import { DeviceRegistry, newDeviceId } from '../domain/devices';
import { ConnectionStatus, DEVICE_ORDER_FIELDS, DeviceCursor, DeviceFilter, DeviceOrder, DeviceOrderField, DevicePatch, DeviceRecord, NewDevice } from '../domain/model';

/** How many events a slow WatchDevices client may lag behind before the oldest are dropped. */
const WATCH_BUFFER = 10_000;

/** Devices read per query while WatchDevices sends its snapshot. */
const SNAPSHOT_BATCH = 500;

/** Limits of device fields, checked with a field violation each. */
export const DEVICE_LIMITS = {
  nameLength: 200,
  typeLength: 100,
  labels: 64,
  labelKeyLength: 63,
  labelValueLength: 256,
  batch: 1000,
} as const;

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/;

/** Where WatchDevices gets the tenant's device events (`events/device-events.ts`). */
export interface DeviceEventSource {
  subscribe(tenantId: string, onEvent: (event: WatchDevicesResponse) => void): Promise<{ unsubscribe(): void }>;
}

/** What the DeviceService handlers call. */
export interface DeviceApiDeps {
  registry: DeviceRegistry;
  events: DeviceEventSource;
}

/** `iot.device.v1.DeviceService`: decode and validate → registry call scoped to the caller's tenant → encode. */
export function deviceApi({ registry, events }: DeviceApiDeps): ServiceRegistration {
  return defineService(DeviceServiceService, {
    async createDevice(request, ctx) {
      const v = new Violations();
      checkNewDevice(request.device, 'device', v);
      v.throwIfAny();
      const [device] = await registry.create(callerTenant(ctx), [toNewDevice(request.device!)]);
      return { device: toDeviceMessage(device) };
    },
    async getDevice(request, ctx) {
      return { device: toDeviceMessage(await registry.get(callerTenant(ctx), request.id)) };
    },
    async updateDevice(request, ctx) {
      const v = new Violations();
      v.required(request.device?.id, 'device.id');
      const patch = toPatch(request.device, request.updateMask ?? [], v);
      v.throwIfAny();
      return { device: toDeviceMessage(await registry.update(callerTenant(ctx), request.device!.id, patch)) };
    },
    async deleteDevice(request, ctx) {
      await registry.delete(callerTenant(ctx), request.id);
      return {};
    },
    async listDevices(request, ctx) {
      const v = new Violations();
      const order = parseOrderBy(request.orderBy, v);
      const filter = toFilter(request, v);
      v.throwIfAny();
      const after = decodeListToken(request.page?.pageToken, request.orderBy);
      const page = await registry.listOrdered(callerTenant(ctx), filter, order, pageSize(request.page?.pageSize), after);
      return { devices: page.devices.map(toDeviceMessage), page: { nextPageToken: encodeListToken(page.next, request.orderBy) } };
    },
    async countDevices(request, ctx) {
      const v = new Violations();
      const filter = toFilter(request, v);
      v.throwIfAny();
      return { count: BigInt(await registry.count(callerTenant(ctx), filter)) };
    },
    async batchCreateDevices(request, ctx) {
      const v = new Violations();
      const inputs = request.devices;
      v.check(inputs.length > 0, 'devices', 'at least one device is required');
      v.check(inputs.length <= DEVICE_LIMITS.batch, 'devices', `at most ${DEVICE_LIMITS.batch} devices per call`);
      if (inputs.length <= DEVICE_LIMITS.batch) inputs.forEach((input, i) => checkNewDevice(input, `devices[${i}]`, v));
      const seen = new Map<string, number>();
      inputs.forEach((input, i) => {
        if (!input.id) return;
        if (seen.has(input.id)) v.add(`devices[${i}].id`, `repeats devices[${seen.get(input.id)}].id`);
        else seen.set(input.id, i);
      });
      v.throwIfAny();
      const result = await registry.createMany(callerTenant(ctx), inputs.map(toNewDevice), request.issueCredentials);
      return { devices: result.devices.map(toDeviceMessage), credentials: result.credentials.map(toCredentialMessage) };
    },
    async watchDevices(request, ctx, send) {
      const tenantId = callerTenant(ctx);
      const ids = new Set(request.deviceIds);
      const labels = Object.entries(request.labels);
      const matches = (e: WatchDevicesResponse) =>
        e.device !== undefined && (ids.size === 0 || ids.has(e.device.id)) && labels.every(([k, v]) => e.device!.labels[k] === v);
      const queue: WatchDevicesResponse[] = [];
      let wake: (() => void) | undefined;
      const sub = await events.subscribe(tenantId, (event) => {
        if (!matches(event)) return;
        queue.push(event);
        if (queue.length > WATCH_BUFFER) queue.shift();
        wake?.();
      });
      const aborted = new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      try {
        // Subscribed first, so a change made while the snapshot is read is queued and follows it.
        if (!request.changesOnly) {
          const filter: DeviceFilter = { labels: request.labels, ids: ids.size > 0 ? [...ids] : undefined };
          let after: string | undefined;
          do {
            const page = await registry.list(tenantId, filter, SNAPSHOT_BATCH, after);
            for (const device of page.devices) {
              if (ctx.signal.aborted) return;
              await send({ type: DeviceEventType.DEVICE_EVENT_TYPE_SNAPSHOT, device: toDeviceMessage(device), time: new Date() });
            }
            after = page.nextAfter;
          } while (after !== undefined);
          await send({ type: DeviceEventType.DEVICE_EVENT_TYPE_SNAPSHOT_COMPLETE, device: undefined, time: new Date() });
        }
        while (!ctx.signal.aborted) {
          if (queue.length === 0) await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
          wake = undefined;
          while (queue.length > 0 && !ctx.signal.aborted) await send(queue.shift()!);
        }
      } finally {
        sub.unsubscribe();
      }
    },
  });
}

/** The filters ListDevices and CountDevices share; violations for bad ones. */
function toFilter(request: Omit<ListDevicesRequest, 'page' | 'orderBy'> | CountDevicesRequest, v: Violations): DeviceFilter {
  for (const key of Object.keys(request.labels)) v.check(key.length > 0, 'labels', 'label keys must not be empty');
  // Compared as a uuid column: anything else failed in PostgreSQL as a malformed value, without naming the field.
  v.check(!request.deviceTypeId || isUuid(request.deviceTypeId), 'device_type_id', 'must be a device type id (a UUID)');
  return {
    labels: request.labels,
    status: fromDeviceStatus(request.status),
    namePrefix: request.namePrefix || undefined,
    type: request.type || undefined,
    groupId: request.groupId || undefined,
    deviceTypeId: request.deviceTypeId || undefined,
  };
}

/** ListDevices' `order_by`: "", or one of {@link DEVICE_ORDER_FIELDS} optionally followed by " asc" or " desc". */
export function parseOrderBy(orderBy: string, v: Violations): DeviceOrder {
  const words = orderBy.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return { descending: false };
  const [field, direction = 'asc'] = words;
  const known = (DEVICE_ORDER_FIELDS as readonly string[]).includes(field);
  v.check(known, 'order_by', `cannot sort by ${JSON.stringify(field)}; sortable: ${DEVICE_ORDER_FIELDS.join(', ')}`);
  v.check(words.length <= 2 && (direction === 'asc' || direction === 'desc'), 'order_by', 'is a field optionally followed by "asc" or "desc", such as "last_seen_time desc"');
  return { field: known ? (field as DeviceOrderField) : undefined, descending: direction === 'desc' };
}

/** A sort key as PostgreSQL prints it: text, or a timestamp (ISO DateStyle) or -infinity. */
const TIMESTAMP_KEY = /^(-infinity|\d{4,}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d(:\d\d)?)$/;

/** A ListDevices position as a page token: the creation-order token, or [seq, order_by, key] for a sorted list. */
function encodeListToken(cursor: DeviceCursor | undefined, orderBy: string): string {
  if (cursor === undefined) return '';
  return cursor.key === undefined ? encodeSeqToken(cursor.seq) : encodePageToken([cursor.seq, orderBy.trim(), cursor.key]);
}

/** The position of a ListDevices page token; INVALID_ARGUMENT for a foreign token or one issued for another order. */
function decodeListToken(token: string | undefined, orderBy: string): DeviceCursor | undefined {
  const cursor = decodePageToken(token || undefined);
  if (!cursor) return undefined;
  const invalid = (description: string) => errors.invalidArgument([{ field: 'page.page_token', description }]);
  if (cursor.length === 1) {
    if (orderBy.trim()) throw invalid(`was issued for another order_by than ${JSON.stringify(orderBy)}`);
    return { seq: decodeSeqToken(token)! };
  }
  const [seq, order, key] = cursor;
  if (cursor.length !== 3 || typeof seq !== 'string' || !/^\d+$/.test(seq) || typeof key !== 'string') throw invalid('is not a token this server issued');
  if (order !== orderBy.trim()) throw invalid(`was issued for another order_by than ${JSON.stringify(orderBy)}`);
  if (/_time\b/.test(orderBy) && !TIMESTAMP_KEY.test(key)) throw invalid('is not a token this server issued');
  return { seq, key };
}

/** A list position (a keyset `seq`) as a page token; '' for the last page. */
export function encodeSeqToken(seq: string | undefined): string {
  return seq === undefined ? '' : encodePageToken([seq]);
}

/** The keyset position of a page token made by {@link encodeSeqToken}; INVALID_ARGUMENT for any other token. */
export function decodeSeqToken(token: string | undefined): string | undefined {
  const cursor = decodePageToken(token || undefined);
  if (!cursor) return undefined;
  if (cursor.length !== 1 || typeof cursor[0] !== 'string' || !/^\d+$/.test(cursor[0])) {
    throw errors.invalidArgument([{ field: 'page.page_token', description: 'is not a token this server issued' }]);
  }
  return cursor[0];
}

/** Violations of a label map (`field` names it): count, key syntax, value length. */
export function checkLabels(labels: Record<string, string>, field: string, v: Violations): void {
  const keys = Object.keys(labels);
  v.check(keys.length <= DEVICE_LIMITS.labels, field, `at most ${DEVICE_LIMITS.labels} labels`);
  for (const key of keys) {
    v.check(key.length <= DEVICE_LIMITS.labelKeyLength && LABEL_KEY.test(key), `${field}[${key}]`, `label keys are 1-${DEVICE_LIMITS.labelKeyLength} characters: letters, digits, '_', '.', '/', '-'`);
    v.check(labels[key].length <= DEVICE_LIMITS.labelValueLength, `${field}[${key}]`, `label values are at most ${DEVICE_LIMITS.labelValueLength} characters`);
  }
}

function checkName(name: string | undefined, field: string, v: Violations): void {
  if (v.required(name?.trim(), field)) v.maxLength(name, DEVICE_LIMITS.nameLength, field);
}

function checkType(type: string | undefined, field: string, v: Violations): void {
  v.maxLength(type, DEVICE_LIMITS.typeLength, field);
}

/** Validates one device to create (`prefix` names it in violations, e.g. `devices[3]`). */
function checkNewDevice(input: Device | undefined, prefix: string, v: Violations): void {
  if (!input) {
    v.add(prefix, 'is required');
    return;
  }
  if (input.id) v.check(isSubjectToken(input.id), `${prefix}.id`, "must be 1-64 characters: lower-case letters, digits, '-', '_', starting with a letter or digit");
  checkName(input.name, `${prefix}.name`, v);
  checkType(input.type, `${prefix}.type`, v);
  checkLabels(input.labels ?? {}, `${prefix}.labels`, v);
}

/** The device to insert, with a server-assigned id when none was given. */
function toNewDevice(input: Device): NewDevice {
  return { id: input.id || newDeviceId(), name: input.name.trim(), type: input.type ?? '', labels: input.labels ?? {}, deviceTypeId: input.deviceTypeId || undefined };
}

/** Paths of UpdateDevice's field mask (proto field names). */
const UPDATABLE = new Set(['name', 'type', 'labels', 'device_type_id']);

/**
 * The patch an update asks for: the masked fields, or (empty mask) every
 * field the caller set. Violations for unknown paths or bad values.
 */
function toPatch(input: Device | undefined, paths: string[], v: Violations): DevicePatch {
  if (!input) {
    v.add('device', 'is required');
    return {};
  }
  const effective =
    paths.length > 0
      ? paths
      : ['name', 'type', 'labels', 'device_type_id'].filter((p) =>
          p === 'labels' ? Object.keys(input.labels ?? {}).length > 0 : p === 'device_type_id' ? Boolean(input.deviceTypeId) : Boolean(input[p as 'name' | 'type']),
        );
  for (const path of paths) v.check(UPDATABLE.has(path), 'update_mask', `cannot update ${JSON.stringify(path)}; updatable: name, type, labels, device_type_id`);
  v.check(effective.length > 0, 'update_mask', 'names no field to update');
  const patch: DevicePatch = {};
  if (effective.includes('name')) {
    checkName(input.name, 'device.name', v);
    patch.name = input.name?.trim();
  }
  if (effective.includes('type')) {
    checkType(input.type, 'device.type', v);
    patch.type = input.type ?? '';
  }
  if (effective.includes('labels')) {
    checkLabels(input.labels ?? {}, 'device.labels', v);
    patch.labels = input.labels ?? {};
  }
  // An empty type id in the mask unbinds the type (the free-text type stays as it was).
  if (effective.includes('device_type_id')) patch.deviceTypeId = input.deviceTypeId || null;
  return patch;
}

const CREDENTIAL_STATES: Record<DeviceRecord['credentialState'], CredentialState> = {
  none: CredentialState.CREDENTIAL_STATE_NONE,
  active: CredentialState.CREDENTIAL_STATE_ACTIVE,
  revoked: CredentialState.CREDENTIAL_STATE_REVOKED,
};

/** The `iot.device.v1.CredentialState` of a record's credential state. */
export function toCredentialState(state: DeviceRecord['credentialState']): CredentialState {
  return CREDENTIAL_STATES[state];
}

function toDeviceStatus(status: ConnectionStatus): DeviceStatus {
  return status === 'online' ? DeviceStatus.DEVICE_STATUS_ONLINE : DeviceStatus.DEVICE_STATUS_OFFLINE;
}

/** The connection status a list filter asks for; undefined for "any". */
function fromDeviceStatus(status: DeviceStatus): ConnectionStatus | undefined {
  if (status === DeviceStatus.DEVICE_STATUS_ONLINE) return 'online';
  if (status === DeviceStatus.DEVICE_STATUS_OFFLINE) return 'offline';
  return undefined;
}

/** A device record as the `iot.device.v1.Device` message (the API's and the device events' encoding). */
export function toDeviceMessage(d: DeviceRecord): Device {
  return {
    id: d.id,
    tenantId: d.tenantId,
    name: d.name,
    type: d.type,
    labels: d.labels,
    credentialState: toCredentialState(d.credentialState),
    status: toDeviceStatus(d.status),
    lastSeenTime: d.lastSeenTime,
    lastConnectTime: d.lastConnectTime,
    lastDisconnectTime: d.lastDisconnectTime,
    createTime: d.createTime,
    updateTime: d.updateTime,
    deviceTypeId: d.deviceTypeId ?? '',
    serialNumber: d.serialNumber ?? '',
    lastDataTime: d.lastDataTime,
    lastDisconnectReason: d.lastDisconnectReason,
  };
}

/** An issued credential as the `iot.device.v1.DeviceCredential` message (it carries the token: shown once). */
export function toCredentialMessage(c: IssuedCredential): DeviceCredential {
  return { ...c };
}
