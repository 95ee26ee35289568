import type { NatsConnection, Subscription } from 'nats';
import { ALL_TELEMETRY, Logger, parseDeviceSubject } from '@iot-mesh/runtime';
import type { TelemetryMessage } from '../domain/telemetry';
import type { TelemetryDecoder } from './telemetry-decoder';

/** Someone handed telemetry as it arrives on core NATS (the live hub, the alert evaluator). */
export interface TelemetryListener {
  /** True when the listener wants this tenant's telemetry now; a message nobody wants is not decoded. */
  wants(tenantId: string): boolean;
  /**
   * Called synchronously, in arrival order, with the message's one decoding
   * still under way (undefined: it was rejected), so a listener that must keep
   * order can queue on it and one that must not wait need not.
   */
  receive(decoded: Promise<TelemetryMessage | undefined>): void;
}

/**
 * The fast path: one core NATS subscription to every device's telemetry,
 * each message decoded once by the shared decoder and handed to every
 * listener that wants its tenant. It never waits for the database.
 *
 * The durable writer does not read from here: it pulls its share of the
 * stream from the shared consumer (other replicas take the rest) and must ack
 * only after its commit, so it decodes what it pulls — with the stream's
 * timestamp as receive time, stable across redeliveries — through the same
 * decoder.
 */
export class TelemetryFanout {
  private subscription?: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly decoder: TelemetryDecoder,
    private readonly listeners: TelemetryListener[],
    private readonly log: Logger,
  ) {}

  /** Subscribes; resolves once the server knows the subscription. */
  async start(): Promise<void> {
    this.subscription = this.nc.subscribe(ALL_TELEMETRY, {
      callback: (err, msg) => {
        if (err) return;
        // A listener that throws must not take the subscription (or the process) with it.
        try {
          this.dispatch(msg.subject, msg.data);
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, 'a live telemetry listener failed on a message');
        }
      },
    });
    await this.nc.flush();
  }

  private dispatch(subject: string, data: Uint8Array): void {
    const tenantId = parseDeviceSubject(subject)?.tenantId;
    if (!tenantId) return;
    const wanting = this.listeners.filter((l) => l.wants(tenantId));
    if (wanting.length === 0) return;
    const decoded = this.decoder.decode({ subject, data, receivedAt: new Date() }).then(
      (d) => (d.ok ? d : undefined),
      (err: Error) => {
        this.log.debug({ err: err.message }, 'live telemetry skipped a message');
        return undefined;
      },
    );
    for (const listener of wanting) listener.receive(decoded);
  }

  /** Unsubscribes. */
  stop(): void {
    this.subscription?.unsubscribe();
  }
}
