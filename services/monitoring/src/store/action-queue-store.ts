import type { Pool } from '@iot-mesh/runtime';

/** One queued action as stored: the job as JSON text, the attempt it is at. */
export interface QueuedAction {
  id: string;
  job: string;
  attempt: number;
}

/**
 * The durable queue of rule actions and alert notifications (table
 * `rule_action_queue`, migration 0004). A replica owns the rows it queued or
 * claimed and keeps their lease fresh; rows whose lease ran out are claimed by
 * whichever replica asks next.
 */
export interface ActionQueueRepository {
  /** Stores new jobs (JSON text, ids chosen by the caller) owned by `owner`, in one statement. */
  addMany(owner: string, leaseMs: number, jobs: { id: string; tenantId: string; ruleId: string; job: string }[]): Promise<void>;
  /** Moves a job to its next attempt. */
  setAttempt(id: string, attempt: number): Promise<void>;
  /** Removes a job that reached its final outcome. */
  remove(id: string): Promise<void>;
  /** Extends the lease of every job `owner` holds. */
  renew(owner: string, leaseMs: number): Promise<void>;
  /** Lets the jobs of `owner` go at once (a replica stopping), so another may claim them. */
  release(owner: string): Promise<void>;
  /** Takes up to `limit` jobs whose lease ran out, oldest first. */
  claimExpired(owner: string, leaseMs: number, limit: number): Promise<QueuedAction[]>;
  /** Jobs stored, over every owner. */
  count(): Promise<number>;
}

/** {@link ActionQueueRepository} on PostgreSQL. */
export class PostgresActionQueue implements ActionQueueRepository {
  constructor(private readonly pool: Pool) {}

  async addMany(owner: string, leaseMs: number, jobs: { id: string; tenantId: string; ruleId: string; job: string }[]): Promise<void> {
    await this.pool.query(
      `INSERT INTO rule_action_queue (id, tenant_id, rule_id, job, owner, lease_until)
       SELECT id, tenant_id, rule_id, job, $5, now() + $6 * interval '1 millisecond'
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::jsonb[]) AS j(id, tenant_id, rule_id, job)`,
      [jobs.map((j) => j.id), jobs.map((j) => j.tenantId), jobs.map((j) => j.ruleId), jobs.map((j) => j.job), owner, leaseMs],
    );
  }

  async setAttempt(id: string, attempt: number): Promise<void> {
    await this.pool.query('UPDATE rule_action_queue SET attempt = $2 WHERE id = $1', [id, attempt]);
  }

  async remove(id: string): Promise<void> {
    await this.pool.query('DELETE FROM rule_action_queue WHERE id = $1', [id]);
  }

  async renew(owner: string, leaseMs: number): Promise<void> {
    await this.pool.query(`UPDATE rule_action_queue SET lease_until = now() + $2 * interval '1 millisecond' WHERE owner = $1`, [owner, leaseMs]);
  }

  async release(owner: string): Promise<void> {
    await this.pool.query(`UPDATE rule_action_queue SET lease_until = now() - interval '1 millisecond' WHERE owner = $1`, [owner]);
  }

  async claimExpired(owner: string, leaseMs: number, limit: number): Promise<QueuedAction[]> {
    if (limit <= 0) return [];
    const { rows } = await this.pool.query(
      `UPDATE rule_action_queue q SET owner = $1, lease_until = now() + $2 * interval '1 millisecond'
         FROM (SELECT id FROM rule_action_queue WHERE lease_until < now() ORDER BY create_time LIMIT $3 FOR UPDATE SKIP LOCKED) due
        WHERE q.id = due.id RETURNING q.id, q.job::text AS job, q.attempt`,
      [owner, leaseMs, limit],
    );
    return rows.map((r) => ({ id: r.id, job: r.job, attempt: r.attempt }));
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query('SELECT count(*)::int AS n FROM rule_action_queue');
    return rows[0].n;
  }
}
