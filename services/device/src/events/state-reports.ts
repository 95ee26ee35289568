import { NatsConnection, Subscription } from 'nats';
import { ALL_STATE, Logger, parseDeviceSubject } from '@iot-mesh/runtime';
import { StateReport } from '../../../../gen/ts/iot/telemetry/v1/telemetry';
import { JsonObject } from '../domain/model';
import { TWIN_DOCUMENT_LIMIT, Twins } from '../domain/twins';
import { DEVICE_QUEUE } from './connect-events';
import { decodeDevicePayload } from './device-payload';

/**
 * Reported state: each device's `StateReport` (JSON or binary) on
 * `iot.<t>.dev.<d>.state`, handled once across replicas (queue group) and
 * stored as the twin's reported document. Bad reports are logged and dropped.
 */
export class StateReports {
  private sub?: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly twins: Pick<Twins, 'report'>,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.sub = this.nc.subscribe(ALL_STATE, {
      queue: DEVICE_QUEUE,
      callback: (err, msg) => {
        const from = err ? undefined : parseDeviceSubject(msg.subject);
        if (from) void this.handle(from.tenantId, from.deviceId, msg.data).catch((e: Error) => this.log.warn({ err: e.message }, 'storing a state report failed'));
      },
    });
  }

  private async handle(tenantId: string, deviceId: string, data: Uint8Array): Promise<void> {
    // Twice the document limit leaves room for the JSON wrapper; anything larger is not worth decoding.
    if (data.length > TWIN_DOCUMENT_LIMIT * 2) {
      this.log.warn({ deviceId, bytes: data.length }, 'state report too large; dropped');
      return;
    }
    let reported: JsonObject;
    try {
      reported = decodeDevicePayload(data, StateReport).reported ?? {};
    } catch (err) {
      this.log.warn({ deviceId, err: (err as Error).message }, 'undecodable state report; dropped');
      return;
    }
    const outcome = await this.twins.report(tenantId, deviceId, reported);
    if (outcome === 'too_large') this.log.warn({ deviceId }, 'reported state over 32 KB; dropped');
    else if (outcome === 'unstorable') this.log.warn({ deviceId }, 'reported state nested too deep or holding U+0000; dropped');
    else if (outcome === 'schema_violation') this.log.warn({ deviceId }, "reported state fails its device type's schema; dropped");
    else if (outcome === 'unknown_device') this.log.debug({ deviceId }, 'state report of an unknown device');
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
