import { KV, NatsConnection } from 'nats';
import { DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey, Logger } from '@iot-mesh/runtime';
import { DeviceDirectoryEntry } from '../../../../gen/ts/iot/device/v1/directory';
import { toCredentialState } from '../api/devices';
import type { DeviceDirectoryWriter } from '../domain/devices';
import { DeviceRecord } from '../domain/model';

/** The directory entry of a device, exactly as readers of the bucket expect it. */
export function directoryEntry(device: DeviceRecord): DeviceDirectoryEntry {
  return {
    tenantId: device.tenantId,
    deviceId: device.id,
    name: device.name,
    type: device.type,
    labels: device.labels,
    credentialState: toCredentialState(device.credentialState),
    updateTime: device.updateTime,
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
  ) {}

  /** Opens (creating when missing) the bucket. */
  static async open(nc: NatsConnection, log: Logger): Promise<DeviceDirectoryPublisher> {
    const kv = await nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET, { history: 1 });
    return new DeviceDirectoryPublisher(kv, log);
  }

  /** Writes the entries of `devices`; failures are logged (the next resync repairs them). */
  async put(devices: DeviceRecord[]): Promise<void> {
    for (let i = 0; i < devices.length; i += 100) {
      const chunk = devices.slice(i, i + 100);
      const results = await Promise.allSettled(chunk.map((d) => this.kv.put(deviceDirectoryKey(d.tenantId, d.id), DeviceDirectoryEntry.encode(directoryEntry(d)).finish())));
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
    const stale = new Set<string>();
    for await (const key of await this.kv.keys()) stale.add(key);
    let count = 0;
    for await (const batch of source) {
      await this.put(batch);
      for (const d of batch) stale.delete(deviceDirectoryKey(d.tenantId, d.id));
      count += batch.length;
    }
    for (const key of stale) await this.kv.delete(key).catch(() => undefined);
    this.log.info({ devices: count, removed: stale.size }, 'device directory resynced');
    return count;
  }
}
