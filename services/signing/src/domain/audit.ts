import crypto from 'node:crypto';
import { Logger, Principal } from '@iot-mesh/runtime';
import type { AuditEventRecord } from '../store/audit-events';
import type { Repositories, SigningStore } from '../store/signing-store';
import { cursorOf, Page, pageOf } from './pages';

/** What a caller says about an event; the trail fills in id and time. */
export type AuditEventInput = Omit<AuditEventRecord, 'id' | 'time' | 'actorId' | 'subject' | 'details' | 'sourceAddress'> &
  Partial<Pick<AuditEventRecord, 'actorId' | 'subject' | 'details' | 'sourceAddress'>>;

/** Tells the rest of the platform about a stored event; never throws (the database has the event). */
export interface AuditPublisher {
  publish(event: AuditEventRecord): void;
}

/** Which audit events to list. */
export interface AuditEventFilter {
  limit: number;
  pageToken?: string;
  start?: Date;
  end?: Date;
  type?: string;
}

/**
 * The audit trail: security events are stored (inside the transaction of the
 * change they record, when there is one) and published once stored.
 */
export class AuditTrail {
  constructor(private readonly data: SigningStore, private readonly publisher: AuditPublisher, private readonly log: Logger) {}

  /** Stores the event, inside `tx`'s transaction when given; publish it with {@link publish} after commit. */
  async store(input: AuditEventInput, tx: Repositories = this.data): Promise<AuditEventRecord> {
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
    await tx.auditEvents.insert(event);
    return event;
  }

  /** Publishes stored events. */
  publish(...events: AuditEventRecord[]): void {
    for (const event of events) this.publisher.publish(event);
  }

  /** Stores and publishes an event outside any transaction; a failure is logged, not thrown, so the action it records still succeeds. */
  async record(input: AuditEventInput): Promise<void> {
    try {
      this.publish(await this.store(input));
    } catch (err) {
      this.log.error({ err: (err as Error).message, type: input.type }, 'storing an audit event failed');
    }
  }

  /** The caller's tenant's events, newest first. */
  async list(actor: Principal, filter: AuditEventFilter): Promise<Page<AuditEventRecord>> {
    const rows = await this.data.auditEvents.list(actor.tenantId, {
      limit: filter.limit + 1,
      start: filter.start,
      end: filter.end,
      type: filter.type,
      before: cursorOf(filter.pageToken),
    });
    return pageOf(rows, filter.limit, (e) => e.time);
  }
}
