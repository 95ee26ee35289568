import type { KV, NatsConnection, QueuedIterator, KvEntry } from 'nats';
import { DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey, isSubjectToken, Logger } from '@iot-mesh/runtime';
import { CredentialState } from '../../../../gen/ts/iot/device/v1/device';
import { UnknownMetricPolicy } from '../../../../gen/ts/iot/device/v1/device_types';
import { DeviceDirectoryEntry } from '../../../../gen/ts/iot/device/v1/directory';
import type { KnownDevice, KnownDevices } from '../domain/telemetry';
import type { DeviceLookup } from './telemetry-decoder';

/** How long a device found missing is not looked up again (a directory update clears it at once). */
const NEGATIVE_CACHE_MS = 2000;

/** A directory value as monitoring uses it; undefined when it is not a device entry. */
function knownDevice(entry: KvEntry): KnownDevice | undefined {
  const value = DeviceDirectoryEntry.decode(entry.value);
  if (!value.tenantId || !value.deviceId) return undefined;
  const strict = value.unknownMetricPolicy === UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER;
  return {
    tenantId: value.tenantId,
    deviceId: value.deviceId,
    labels: value.labels,
    type: value.type,
    revoked: value.credentialState === CredentialState.CREDENTIAL_STATE_REVOKED,
    declaredMetrics: strict ? new Set(value.metrics) : undefined,
  };
}

/**
 * Monitoring's read-only view of the device directory (KV bucket
 * `IOT_DEVICES`, written by the device service), watched into memory so
 * validation needs no lookup per message. A device missing from memory is
 * looked up once in the bucket before it is called unknown, to cover a
 * device created a moment ago.
 */
export class DeviceDirectoryView implements DeviceLookup, KnownDevices {
  private readonly entries = new Map<string, KnownDevice>();
  /** Keys recently looked up and not found, so a flood from an unknown device costs one lookup per few seconds. */
  private readonly missing = new Map<string, number>();
  private watcher?: QueuedIterator<KvEntry>;

  private constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Opens (creating when missing) the bucket and resolves once its current content is in memory. */
  static async open(nc: NatsConnection, log: Logger): Promise<DeviceDirectoryView> {
    const kv = await nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
    const directory = new DeviceDirectoryView(kv, log);
    await directory.watch();
    return directory;
  }

  private async watch(): Promise<void> {
    let initialized!: () => void;
    const ready = new Promise<void>((resolve) => (initialized = resolve));
    this.watcher = await this.kv.watch({ key: '>', initializedFn: () => initialized() });
    // An empty bucket may never call initializedFn on some server versions.
    const status = await this.kv.status();
    if (status.values === 0) initialized();
    void (async () => {
      for await (const entry of this.watcher!) this.apply(entry);
    })().catch((err: Error) => this.log.warn({ err: err.message }, 'device directory watch ended'));
    await ready;
  }

  private apply(entry: KvEntry): void {
    this.missing.delete(entry.key);
    if (entry.operation === 'DEL' || entry.operation === 'PURGE') {
      this.entries.delete(entry.key);
      return;
    }
    const parsed = this.parse(entry);
    if (parsed) this.entries.set(entry.key, parsed);
  }

  private parse(entry: KvEntry): KnownDevice | undefined {
    try {
      const device = knownDevice(entry);
      if (device) return device;
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
    if (parsed) this.entries.set(entry.key, parsed);
    return parsed;
  }

  /** Every device of a tenant currently in the directory. */
  devicesOf(tenantId: string): KnownDevice[] {
    const out: KnownDevice[] = [];
    for (const entry of this.entries.values()) if (entry.tenantId === tenantId) out.push(entry);
    return out;
  }

  /** Stops watching the bucket. */
  stop(): void {
    this.watcher?.stop();
  }
}
