import { eventSubject, injectTraceContext, isSubjectToken, Logger, NatsConnection } from '@iot-mesh/runtime';
import { AuditEvent } from '../../../../gen/ts/iot/signing/v1/audit';
import { auditEventMessage } from '../api/messages';
import type { AuditPublisher } from '../domain/audit';
import type { AuditEventRecord } from '../store/audit-events';

/** The subject of an audit event: `iot.<tenant>.evt.audit.<type>`, e.g. `iot.<tenant>.evt.audit.login.failed`. */
export function auditEventSubject(tenantId: string, type: string): string {
  return eventSubject(tenantId, 'audit', ...type.split('.'));
}

/**
 * Publishes stored audit events on NATS as binary `iot.signing.v1.AuditEvent`
 * with the trace context in the headers. Events without a known tenant are
 * stored only (there is no tenant subject to put them on).
 */
export class NatsAuditPublisher implements AuditPublisher {
  constructor(private readonly nats: NatsConnection, private readonly log: Logger) {}

  publish(event: AuditEventRecord): void {
    if (!event.tenantId || !isSubjectToken(event.tenantId)) return;
    try {
      this.nats.publish(auditEventSubject(event.tenantId, event.type), AuditEvent.encode(auditEventMessage(event)).finish(), { headers: injectTraceContext() });
    } catch (err) {
      this.log.warn({ err: (err as Error).message, type: event.type }, 'publishing an audit event failed');
    }
  }
}
