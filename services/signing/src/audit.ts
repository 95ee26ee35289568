import crypto from 'node:crypto';
import { eventSubject, isSubjectToken, Logger, NatsConnection, Pool, PoolClient } from '@iot-mesh/runtime';

/** One security-relevant event, as stored and published. */
export interface AuditEventRecord {
  id: string;
  tenantId: string | null;
  /** `login.succeeded`, `login.failed`, `api_key.created`, `api_key.revoked`, `user.role_changed`, `refresh_token.reused`, … */
  type: string;
  actorId: string;
  subject: { kind: string; id: string };
  sourceAddress: string;
  details: Record<string, unknown>;
  time: Date;
}

/** What a caller says about an event; the log fills in id and time. */
export type AuditEventInput = Omit<AuditEventRecord, 'id' | 'time' | 'actorId' | 'subject' | 'details' | 'sourceAddress'> &
  Partial<Pick<AuditEventRecord, 'actorId' | 'subject' | 'details' | 'sourceAddress'>>;

/**
 * Stores audit events in PostgreSQL and publishes each on
 * `iot.<tenant>.evt.audit.<type>` (JSON) once stored. Events without a known
 * tenant are stored only.
 */
export class AuditLog {
  constructor(private readonly pool: Pool, private readonly nats: NatsConnection | undefined, private readonly log: Logger) {}

  /** Stores the event (inside `client`'s transaction when given) and returns a function that publishes it. */
  async store(input: AuditEventInput, client?: PoolClient): Promise<AuditEventRecord> {
    const event: AuditEventRecord = {
      id: crypto.randomUUID(),
      tenantId: input.tenantId,
      type: input.type,
      actorId: input.actorId ?? '',
      subject: input.subject ?? { kind: '', id: '' },
      sourceAddress: input.sourceAddress ?? '',
      details: input.details ?? {},
      time: new Date(),
    };
    await (client ?? this.pool).query(
      `INSERT INTO audit_events (id, tenant_id, type, actor_id, subject_kind, subject_id, source_address, details, time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [event.id, event.tenantId, event.type, event.actorId, event.subject.kind, event.subject.id, event.sourceAddress, JSON.stringify(event.details), event.time],
    );
    return event;
  }

  /** Publishes a stored event on NATS; failures are logged, never thrown (the database has it). */
  publish(event: AuditEventRecord): void {
    if (!this.nats || !event.tenantId || !isSubjectToken(event.tenantId)) return;
    try {
      const subject = eventSubject(event.tenantId, 'audit', ...event.type.split('.'));
      this.nats.publish(subject, JSON.stringify(auditEventJson(event)));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, type: event.type }, 'publishing an audit event failed');
    }
  }

  /** Stores and publishes an event outside any transaction. */
  async record(input: AuditEventInput): Promise<AuditEventRecord> {
    const event = await this.store(input);
    this.publish(event);
    return event;
  }
}

/** The proto3 JSON form of an event (as `iot.signing.v1.AuditEvent`). */
export function auditEventJson(event: AuditEventRecord): Record<string, unknown> {
  return {
    id: event.id,
    tenantId: event.tenantId ?? '',
    type: event.type,
    actorId: event.actorId,
    subject: { tenantId: event.tenantId ?? '', kind: event.subject.kind, id: event.subject.id },
    sourceAddress: event.sourceAddress,
    details: event.details,
    time: event.time.toISOString(),
  };
}
