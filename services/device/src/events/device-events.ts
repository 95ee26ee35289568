import { NatsConnection, Subscription } from 'nats';
import { eventSubject, Logger } from '@iot-mesh/runtime';
import { DeviceEventType, WatchDevicesResponse } from '../../../../gen/ts/iot/device/v1/device';
import { toDeviceMessage } from '../api/devices';
import type { DeviceEventSink } from '../domain/devices';
import { DeviceEventKind, DeviceRecord } from '../domain/model';

const EVENT_TYPES: Record<DeviceEventKind, DeviceEventType> = {
  created: DeviceEventType.DEVICE_EVENT_TYPE_CREATED,
  updated: DeviceEventType.DEVICE_EVENT_TYPE_UPDATED,
  deleted: DeviceEventType.DEVICE_EVENT_TYPE_DELETED,
  status_changed: DeviceEventType.DEVICE_EVENT_TYPE_STATUS_CHANGED,
  credential_issued: DeviceEventType.DEVICE_EVENT_TYPE_CREDENTIAL_ISSUED,
  credential_revoked: DeviceEventType.DEVICE_EVENT_TYPE_CREDENTIAL_REVOKED,
};

/**
 * Device events on `iot.<tenant>.evt.device.<kind>`, each a binary
 * `iot.device.v1.WatchDevicesResponse`: what WatchDevices streams and what
 * any other consumer may subscribe to.
 */
export class DeviceEvents implements DeviceEventSink {
  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  /** Publishes one event per device; a NATS outage is logged, never thrown. */
  publish(kind: DeviceEventKind, devices: DeviceRecord[]): void {
    const time = new Date();
    for (const device of devices) {
      const event: WatchDevicesResponse = { type: EVENT_TYPES[kind], device: toDeviceMessage(device), time };
      try {
        this.nc.publish(eventSubject(device.tenantId, 'device', kind), WatchDevicesResponse.encode(event).finish());
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
        let event: WatchDevicesResponse;
        try {
          event = WatchDevicesResponse.decode(msg.data);
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, 'undecodable device event');
          return;
        }
        onEvent(event);
      },
    });
    await this.nc.flush();
    return sub;
  }
}
