import { KV, NatsConnection } from 'nats';
import { DEVICE_DIRECTORY_BUCKET, DeviceDirectoryEntry, deviceDirectoryKey, Logger } from '@iot-mesh/runtime';
import { DeviceRecord } from '../model';

/** The directory entry of a device, exactly as readers of the bucket expect it. */
export function directoryEntry(device: DeviceRecord): DeviceDirectoryEntry {
  return {
    tenantId: device.tenantId,
    deviceId: device.id,
    name: device.name,
    type: device.type,
    labels: device.labels,
    credentialState: device.credentialState,
    updateTime: device.updateTime.toISOString(),
  };
}

/**
 * Writes the device directory (JetStream KV bucket {@link DEVICE_DIRECTORY_BUCKET})
 * that other services watch instead of asking the device service per message.
 * PostgreSQL stays the source of truth: {@link DeviceDirectory.resync} rebuilds
 * the bucket from it on start.
 */
export class DeviceDirectory {
  private constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Opens (creating when missing) the bucket. */
  static async open(nc: NatsConnection, log: Logger): Promise<DeviceDirectory> {
    const kv = await nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET, { history: 1 });
    return new DeviceDirectory(kv, log);
  }

  /** Writes the entries of `devices`; failures are logged (the next resync repairs them). */
  async put(devices: DeviceRecord[]): Promise<void> {
    const encoder = new TextEncoder();
    for (let i = 0; i < devices.length; i += 100) {
      const chunk = devices.slice(i, i + 100);
      const results = await Promise.allSettled(chunk.map((d) => this.kv.put(deviceDirectoryKey(d.tenantId, d.id), encoder.encode(JSON.stringify(directoryEntry(d))))));
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
