import { ErrorCode, NatsConnection, NatsError } from 'nats';
import { setTimeout as sleep } from 'node:timers/promises';
import { deviceSubject, Logger } from '@iot-mesh/runtime';
import { DesiredState } from '../../../../gen/ts/iot/telemetry/v1/telemetry';
import type { DesiredStateChannel } from '../domain/twins';
import { TwinRecord } from '../domain/model';
import { encodeForDevice } from './device-payload';

/** How long delivery on reconnect waits for the device to subscribe to its desired-state subject. */
const DELIVERY_WAIT_MS = 15_000;

/** Desired state to devices on `iot.<t>.dev.<d>.desired`, as a `DesiredState` in canonical JSON (the device protocol). */
export class NatsDesiredStateChannel implements DesiredStateChannel {
  private readonly deliveries = new Map<string, AbortController>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  private encode(twin: TwinRecord): Uint8Array {
    return encodeForDevice<DesiredState>({ desired: twin.desired, version: BigInt(twin.desiredVersion) }, DesiredState);
  }

  send(tenantId: string, deviceId: string, twin: TwinRecord): void {
    try {
      this.nc.publish(deviceSubject(tenantId, deviceId, 'desired'), this.encode(twin));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, deviceId }, 'publishing desired state failed; it is sent again on reconnect');
    }
  }

  /**
   * Sends the desired state to a device that just connected, once it has
   * subscribed: a request with no responders means nobody listens yet, so it
   * is retried; a request that times out was delivered to a listener.
   */
  async deliverWhenListening(tenantId: string, deviceId: string, twin: TwinRecord): Promise<void> {
    const key = `${tenantId}.${deviceId}`;
    this.deliveries.get(key)?.abort();
    const controller = new AbortController();
    this.deliveries.set(key, controller);
    try {
      const subject = deviceSubject(tenantId, deviceId, 'desired');
      const until = Date.now() + DELIVERY_WAIT_MS;
      while (!controller.signal.aborted && Date.now() < until && !this.nc.isClosed()) {
        try {
          await this.nc.request(subject, this.encode(twin), { timeout: 250, noMux: true });
          return;
        } catch (err) {
          const code = (err as NatsError).code;
          if (code === ErrorCode.Timeout) return;
          if (code !== ErrorCode.NoResponders) throw err;
        }
        await sleep(200, undefined, { signal: controller.signal }).catch(() => undefined);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, deviceId }, 'delivering desired state on connect failed');
    } finally {
      if (this.deliveries.get(key) === controller) this.deliveries.delete(key);
    }
  }

  /** Abandons deliveries still waiting for their device. */
  stop(): void {
    for (const controller of this.deliveries.values()) controller.abort();
  }
}
