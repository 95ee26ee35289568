import { NatsConnection, Subscription } from 'nats';
import { eventSubject, Logger } from '@iot-mesh/runtime';
import { WatchDevicesResponse } from '../../../../gen/ts/iot/device/v1/device';
import { toDeviceMessage, toEventType } from '../convert';
import { DeviceEventKind, DeviceRecord } from '../model';

/**
 * Device events on `iot.<tenant>.evt.device.<kind>`, each a
 * `WatchDevicesResponse` as canonical proto3 JSON: what WatchDevices streams
 * and what any other consumer may subscribe to.
 */
export class DeviceEvents {
  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  /** Publishes one event per device; a NATS outage is logged, never thrown. */
  publish(kind: DeviceEventKind, devices: DeviceRecord[]): void {
    const time = new Date();
    for (const device of devices) {
      const event: WatchDevicesResponse = { type: toEventType(kind), device: toDeviceMessage(device), time };
      try {
        this.nc.publish(eventSubject(device.tenantId, 'device', kind), new TextEncoder().encode(JSON.stringify(WatchDevicesResponse.toJSON(event))));
      } catch (err) {
        this.log.warn({ err: (err as Error).message, kind }, 'publishing a device event failed');
      }
    }
  }

  /** Subscribes to every device event of a tenant; resolves once the server has the subscription. */
  async subscribe(tenantId: string, onEvent: (event: WatchDevicesResponse) => void): Promise<Subscription> {
    const sub = this.nc.subscribe(eventSubject(tenantId, 'device', '>'), {
      callback: (err, msg) => {
        if (err) return;
        try {
          onEvent(WatchDevicesResponse.fromJSON(JSON.parse(new TextDecoder().decode(msg.data))));
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, 'undecodable device event');
        }
      },
    });
    await this.nc.flush();
    return sub;
  }
}
