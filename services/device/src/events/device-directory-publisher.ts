import { KV, NatsConnection } from 'nats';
import { DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey, Logger } from '@iot-mesh/runtime';
import { DefaultAlertRule } from '../../../../gen/ts/iot/device/v1/device_types';
import { DeviceDirectoryEntry } from '../../../../gen/ts/iot/device/v1/directory';
import { toCredentialState } from '../api/devices';
import { toUnknownMetricPolicy } from '../api/device-types';
import type { DeviceDirectoryWriter } from '../domain/devices';
import { DeviceRecord, DeviceTypeRecord } from '../domain/model';
import type { DeviceTypeStore } from '../store/device-type-store';
import { resyncBucket } from './directory-resync';

/** The directory entry of a device (with what its type tells the telemetry consumer and the alert evaluator), exactly as readers of the bucket expect it. */
export function directoryEntry(device: DeviceRecord, type?: DeviceTypeRecord): DeviceDirectoryEntry {
  return {
    tenantId: device.tenantId,
    deviceId: device.id,
    name: device.name,
    type: device.type,
    labels: device.labels,
    credentialState: toCredentialState(device.credentialState),
    updateTime: device.updateTime,
    deviceTypeId: device.deviceTypeId ?? '',
    unknownMetricPolicy: toUnknownMetricPolicy(type?.unknownMetricPolicy),
    metrics: type?.metrics.map((m) => m.name) ?? [],
    defaultAlertRules: type?.defaultAlertRules.map((r) => DefaultAlertRule.fromJSON(r)) ?? [],
  };
}

/**
 * Writes the device directory (JetStream KV bucket {@link DEVICE_DIRECTORY_BUCKET},
 * values binary `iot.device.v1.DeviceDirectoryEntry`) that other services
 * watch instead of asking the device service per message. PostgreSQL stays
 * the source of truth: {@link DeviceDirectoryPublisher.resync} rebuilds the
 * bucket from it on start.
 */
export class DeviceDirectoryPublisher implements DeviceDirectoryWriter {
  private constructor(
    private readonly kv: KV,
    private readonly log: Logger,
    private readonly types?: Pick<DeviceTypeStore, 'getMany'>,
  ) {}

  /**
   * Opens the bucket, creating it with `replicas` when missing (an existing
   * bucket keeps its own); `types` supplies the device types entries carry the policy of.
   */
  static async open(nc: NatsConnection, log: Logger, options: { replicas?: number; types?: Pick<DeviceTypeStore, 'getMany'> } = {}): Promise<DeviceDirectoryPublisher> {
    const kv = await nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET, { history: 1, replicas: options.replicas ?? 1 });
    const { types } = options;
    return new DeviceDirectoryPublisher(kv, log, types);
  }

  /** Writes the entries of `devices`; failures are logged (the next resync repairs them). */
  async put(devices: DeviceRecord[]): Promise<void> {
    const typeIds = [...new Set(devices.flatMap((d) => (d.deviceTypeId ? [d.deviceTypeId] : [])))];
    let types = new Map<string, DeviceTypeRecord>();
    try {
      if (typeIds.length > 0 && this.types) types = new Map((await this.types.getMany(typeIds)).map((t) => [t.id, t]));
    } catch (err) {
      // Written without the type's policy rather than not at all; the next resync repairs it.
      this.log.warn({ err: (err as Error).message }, 'reading device types for the directory failed');
    }
    for (let i = 0; i < devices.length; i += 100) {
      const chunk = devices.slice(i, i + 100);
      const results = await Promise.allSettled(
        chunk.map((d) => this.kv.put(deviceDirectoryKey(d.tenantId, d.id), DeviceDirectoryEntry.encode(directoryEntry(d, d.deviceTypeId ? types.get(d.deviceTypeId) : undefined)).finish())),
      );
      const failed = results.filter((r) => r.status === 'rejected').length;
      if (failed > 0) this.log.warn({ failed, err: String((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason) }, 'device directory write failed');
    }
  }

  /** Removes a deleted device's entry. */
  async remove(tenantId: string, deviceId: string): Promise<void> {
    try {
      await this.kv.delete(deviceDirectoryKey(tenantId, deviceId));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'device directory delete failed');
    }
  }

  /** Makes the bucket equal to `source`: writes every device, deletes keys of devices that are gone. */
  async resync(source: AsyncIterable<DeviceRecord[]>): Promise<number> {
    const { count, removed } = await resyncBucket(this.kv, source, (batch) => this.put(batch), (d) => deviceDirectoryKey(d.tenantId, d.id));
    this.log.info({ devices: count, removed }, 'device directory resynced');
    return count;
  }
}
