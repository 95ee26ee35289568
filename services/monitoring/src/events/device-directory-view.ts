import type { KV, NatsConnection, QueuedIterator, KvEntry } from 'nats';
import { DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey, GROUP_DIRECTORY_BUCKET, groupDirectoryKey, isSubjectToken, Logger } from '@iot-mesh/runtime';
import { CredentialState } from '../../../../gen/ts/iot/device/v1/device';
import { DefaultAlertRule, UnknownMetricPolicy } from '../../../../gen/ts/iot/device/v1/device_types';
import { DeviceDirectoryEntry, GroupDirectoryEntry } from '../../../../gen/ts/iot/device/v1/directory';
import type { KnownDevice, KnownDevices, KnownGroup } from '../domain/telemetry';
import type { DeviceLookup } from './telemetry-decoder';

/** How long a device found missing is not looked up again (a directory update clears it at once). */
const NEGATIVE_CACHE_MS = 2000;

/**
 * Called with a device type's default alert rules when the directory shows
 * them first or changed, and with none when the last device of the type left
 * the directory (a type is deleted only once no device has it).
 */
export type DefaultAlertRulesListener = (tenantId: string, deviceTypeId: string, rules: DefaultAlertRule[]) => void;

/** A decoded directory value as monitoring uses it; undefined when it is not a device entry. */
function knownDevice(value: DeviceDirectoryEntry): KnownDevice | undefined {
  if (!value.tenantId || !value.deviceId) return undefined;
  const strict = value.unknownMetricPolicy === UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER;
  return {
    tenantId: value.tenantId,
    deviceId: value.deviceId,
    labels: value.labels,
    type: value.type,
    deviceTypeId: value.deviceTypeId,
    revoked: value.credentialState === CredentialState.CREDENTIAL_STATE_REVOKED,
    declaredMetrics: strict ? new Set(value.metrics) : undefined,
  };
}

/** A group directory value; undefined when it is not a group entry. */
function knownGroup(entry: KvEntry): KnownGroup | undefined {
  const value = GroupDirectoryEntry.decode(entry.value);
  if (!value.tenantId || !value.groupId) return undefined;
  return { tenantId: value.tenantId, groupId: value.groupId, matchLabels: value.matchLabels, deviceTypeId: value.deviceTypeId || undefined };
}

/**
 * Monitoring's read-only view of the device directory (KV bucket
 * `IOT_DEVICES`, written by the device service), watched into memory so
 * validation needs no lookup per message. A device missing from memory is
 * looked up once in the bucket before it is called unknown, to cover a
 * device created a moment ago. The group directory (KV bucket `IOT_GROUPS`,
 * groups' selectors) is watched beside it, so a group id resolves to the
 * devices its selector matches now: relabelling a device, or changing a
 * group, changes what selects it at once, without a restart.
 */
export class DeviceDirectoryView implements DeviceLookup, KnownDevices {
  private readonly entries = new Map<string, KnownDevice>();
  /** Keys recently looked up and not found, so a flood from an unknown device costs one lookup per few seconds. */
  private readonly missing = new Map<string, number>();
  private readonly groups = new Map<string, KnownGroup>();
  private readonly watchers: QueuedIterator<KvEntry>[] = [];
  /** Each device type's default alert rules as its devices' entries last showed them (`<tenant>.<type id>` → rules and their encoding). */
  private readonly typeRules = new Map<string, { tenantId: string; deviceTypeId: string; rules: DefaultAlertRule[]; encoded: string }>();
  private typeRulesListener?: DefaultAlertRulesListener;
  /** Devices in the directory per device type (`<tenant>.<type id>`). */
  private readonly typeDevices = new Map<string, number>();

  private constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Opens (creating when missing) both buckets and resolves once their current content is in memory. */
  static async open(nc: NatsConnection, log: Logger): Promise<DeviceDirectoryView> {
    const js = nc.jetstream();
    const [kv, groups] = await Promise.all([js.views.kv(DEVICE_DIRECTORY_BUCKET), js.views.kv(GROUP_DIRECTORY_BUCKET, { history: 1 })]);
    const directory = new DeviceDirectoryView(kv, log);
    await Promise.all([directory.watch(kv, 'device directory', (e) => directory.apply(e)), directory.watch(groups, 'group directory', (e) => directory.applyGroup(e))]);
    return directory;
  }

  private async watch(kv: KV, name: string, apply: (entry: KvEntry) => void): Promise<void> {
    let initialized!: () => void;
    const ready = new Promise<void>((resolve) => (initialized = resolve));
    const watcher = await kv.watch({ key: '>', initializedFn: () => initialized() });
    this.watchers.push(watcher);
    // An empty bucket may never call initializedFn on some server versions.
    const status = await kv.status();
    if (status.values === 0) initialized();
    void (async () => {
      for await (const entry of watcher) apply(entry);
    })().catch((err: Error) => this.log.warn({ err: err.message }, `${name} watch ended`));
    await ready;
  }

  private applyGroup(entry: KvEntry): void {
    if (entry.operation === 'DEL' || entry.operation === 'PURGE') {
      this.groups.delete(entry.key);
      return;
    }
    try {
      const group = knownGroup(entry);
      if (group && entry.key === groupDirectoryKey(group.tenantId, group.groupId)) return void this.groups.set(entry.key, group);
    } catch {
      // fall through
    }
    this.log.warn({ key: entry.key }, 'ignoring a malformed group directory entry');
  }

  /** A group of the tenant, if the group directory has it. */
  group(tenantId: string, groupId: string): KnownGroup | undefined {
    if (!isSubjectToken(tenantId) || !isSubjectToken(groupId)) return undefined;
    return this.groups.get(groupDirectoryKey(tenantId, groupId));
  }

  private apply(entry: KvEntry): void {
    this.missing.delete(entry.key);
    if (entry.operation === 'DEL' || entry.operation === 'PURGE') {
      const gone = this.entries.get(entry.key);
      this.entries.delete(entry.key);
      if (gone) this.countType(gone, -1);
      return;
    }
    const parsed = this.parse(entry);
    if (parsed) this.setEntry(entry.key, parsed);
  }

  /** Keeps an entry and the device counts of the types it left and joined. */
  private setEntry(key: string, device: KnownDevice): void {
    const before = this.entries.get(key);
    this.entries.set(key, device);
    if (before?.deviceTypeId === device.deviceTypeId) return;
    if (before) this.countType(before, -1);
    this.countType(device, +1);
  }

  /**
   * Counts a device of its type in or out. When the last one leaves, the
   * type's default rules are forgotten and the listener told there are none:
   * its rules apply to no device any more, and a deleted type (which has no
   * devices by then) leaves none behind. A device of it again brings them back.
   */
  private countType(device: KnownDevice, delta: 1 | -1): void {
    if (!device.deviceTypeId) return;
    const key = `${device.tenantId}.${device.deviceTypeId}`;
    const count = (this.typeDevices.get(key) ?? 0) + delta;
    if (count > 0) return void this.typeDevices.set(key, count);
    this.typeDevices.delete(key);
    this.typeRules.delete(key);
    this.typeRulesListener?.(device.tenantId, device.deviceTypeId, []);
  }

  /** True while the directory holds a device of the type. */
  hasDevicesOfType(tenantId: string, deviceTypeId: string): boolean {
    return this.typeDevices.has(`${tenantId}.${deviceTypeId}`);
  }

  /**
   * Calls `listener` with every device type's default alert rules known now,
   * then whenever an entry shows a type's rules first or changed (entries of
   * one type all carry the same rules, so a type change calls it once).
   */
  onDefaultAlertRules(listener: DefaultAlertRulesListener): void {
    this.typeRulesListener = listener;
    for (const t of this.typeRules.values()) listener(t.tenantId, t.deviceTypeId, t.rules);
  }

  private noteTypeRules(value: DeviceDirectoryEntry): void {
    // No policy on a typed device: written without its type, so its empty rules say nothing about the type's.
    if (!value.deviceTypeId || value.unknownMetricPolicy === UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_UNSPECIFIED) return;
    const key = `${value.tenantId}.${value.deviceTypeId}`;
    const encoded = JSON.stringify(value.defaultAlertRules.map((r) => DefaultAlertRule.toJSON(r)));
    if (this.typeRules.get(key)?.encoded === encoded) return;
    this.typeRules.set(key, { tenantId: value.tenantId, deviceTypeId: value.deviceTypeId, rules: value.defaultAlertRules, encoded });
    this.typeRulesListener?.(value.tenantId, value.deviceTypeId, value.defaultAlertRules);
  }

  private parse(entry: KvEntry): KnownDevice | undefined {
    try {
      const value = DeviceDirectoryEntry.decode(entry.value);
      const device = knownDevice(value);
      if (device) {
        this.noteTypeRules(value);
        return device;
      }
    } catch {
      // fall through
    }
    this.log.warn({ key: entry.key }, 'ignoring a malformed device directory entry');
    return undefined;
  }

  /** The entry in memory, if any. */
  get(tenantId: string, deviceId: string): KnownDevice | undefined {
    return this.entries.get(`${tenantId}.${deviceId}`);
  }

  async lookup(tenantId: string, deviceId: string): Promise<KnownDevice | undefined> {
    const known = this.get(tenantId, deviceId);
    if (known) return known;
    if (!isSubjectToken(tenantId) || !isSubjectToken(deviceId)) return undefined;
    const key = deviceDirectoryKey(tenantId, deviceId);
    const until = this.missing.get(key);
    if (until !== undefined && until > Date.now()) return undefined;
    const entry = await this.kv.get(key);
    if (!entry || entry.operation !== 'PUT') {
      if (this.missing.size > 100_000) this.missing.clear();
      this.missing.set(key, Date.now() + NEGATIVE_CACHE_MS);
      return undefined;
    }
    const parsed = this.parse(entry);
    if (parsed) this.setEntry(entry.key, parsed);
    return parsed;
  }

  /** Every device of a tenant currently in the directory. */
  devicesOf(tenantId: string): KnownDevice[] {
    const out: KnownDevice[] = [];
    for (const entry of this.entries.values()) if (entry.tenantId === tenantId) out.push(entry);
    return out;
  }

  /** Stops watching the buckets. */
  stop(): void {
    for (const watcher of this.watchers) watcher.stop();
  }
}
