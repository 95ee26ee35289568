import { Cursor, Db } from './sql';

/** One security-relevant event, as stored and published. */
export interface AuditEventRecord {
  id: string;
  /** Null when the tenant is unknown (a login to a tenant that does not exist). */
  tenantId: string | null;
  /** `login.succeeded`, `login.failed`, `api_key.created`, `api_key.revoked`, `user.role_changed`, `refresh_token.reused`, … */
  type: string;
  actorId: string;
  subject: { kind: string; id: string };
  sourceAddress: string;
  details: Record<string, unknown>;
  time: Date;
}

/** Which events of one tenant to list, newest first. */
export interface AuditEventQuery {
  limit: number;
  start?: Date;
  end?: Date;
  type?: string;
  /** The (time, id) of the last event of the previous page. */
  before?: Cursor;
}

/** Where audit events are kept. */
export interface AuditEventRepository {
  insert(event: AuditEventRecord): Promise<void>;
  list(tenantId: string, query: AuditEventQuery): Promise<AuditEventRecord[]>;
}

/** {@link AuditEventRepository} on the `audit_events` table. */
export class PostgresAuditEventRepository implements AuditEventRepository {
  constructor(private readonly db: Db) {}

  async insert(event: AuditEventRecord): Promise<void> {
    await this.db.query(
      `INSERT INTO audit_events (id, tenant_id, type, actor_id, subject_kind, subject_id, source_address, details, time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [event.id, event.tenantId, event.type, event.actorId, event.subject.kind, event.subject.id, event.sourceAddress, JSON.stringify(event.details), event.time],
    );
  }

  async list(tenantId: string, query: AuditEventQuery): Promise<AuditEventRecord[]> {
    const params: unknown[] = [tenantId];
    let where = 'tenant_id = $1';
    if (query.start) where += ` AND time >= $${params.push(query.start)}`;
    if (query.end) where += ` AND time < $${params.push(query.end)}`;
    if (query.type) where += ` AND type = $${params.push(query.type)}`;
    if (query.before) where += ` AND (time, id) < ($${params.push(query.before[0])}::timestamptz, $${params.push(query.before[1])}::uuid)`;
    const { rows } = await this.db.query(`SELECT * FROM audit_events WHERE ${where} ORDER BY time DESC, id DESC LIMIT $${params.push(query.limit)}`, params);
    return rows.map((r) => ({
      id: r.id,
      tenantId: r.tenant_id,
      type: r.type,
      actorId: r.actor_id,
      subject: { kind: r.subject_kind, id: r.subject_id },
      sourceAddress: r.source_address,
      details: r.details,
      time: r.time,
    }));
  }
}
