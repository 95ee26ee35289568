import { Pool, PoolClient, withTransaction } from '@iot-mesh/runtime';
import type { JobCounts, JobDeviceRecord, JobDeviceState, JobRecord, JobSpec, JobStep } from '../domain/jobs';
import { Row } from './device-store';
import { isUuid } from './device-type-store';

/** Persistence of jobs and of each device's state in them. */
export interface JobStore {
  /** Stores the job with every device queued; returns the device ids of the tenant that do not exist. */
  insert(job: JobSpec, deviceIds: string[]): Promise<{ job?: JobRecord; missing: string[] }>;
  get(tenantId: string, id: string): Promise<JobRecord | undefined>;
  list(tenantId: string, beforeSeq: string | undefined, limit: number): Promise<JobRecord[]>;
  devices(tenantId: string, jobId: string, state: JobDeviceState | undefined, afterSeq: string | undefined, limit: number): Promise<JobDeviceRecord[]>;
  /** Ends a running job as cancelled; its queued devices become cancelled. False when it was not running. */
  cancel(tenantId: string, id: string, reason: string): Promise<boolean>;
  /** Every running job, of every tenant. */
  running(): Promise<JobRecord[]>;
  /**
   * Marks up to what the rollout allows of the job's queued, online devices
   * as sent by `replica`; the rows are claimed with FOR UPDATE SKIP LOCKED
   * under the job's row lock, so no two replicas claim one device.
   */
  claim(job: JobRecord, replica: string): Promise<string[]>;
  /** Puts a claimed device back in the queue (its step was not sent: the device went offline). */
  requeue(job: JobRecord, deviceId: string, replica: string): Promise<void>;
  /**
   * Records the outcome of a sent step, and in the same transaction judges
   * the abort threshold. False when the row was no longer this replica's sent step.
   */
  finish(job: JobRecord, deviceId: string, replica: string, step: JobStep): Promise<boolean>;
  /** A firmware step's desired state is set: the row waits, still sent, for the device's report until the job expires. */
  awaitReport(job: JobRecord, deviceId: string, replica: string): Promise<void>;
  /**
   * Records a device's report of firmware `version` as the outcome of its
   * sent step in every job awaiting that version (whichever replica sent it),
   * judging the abort threshold; the ids of the jobs it finished a step of.
   */
  finishReported(tenantId: string, deviceId: string, version: string, step: JobStep): Promise<string[]>;
  /**
   * Timeouts and endings: sent steps whose replica stopped waiting long ago
   * time out, queued devices of expired jobs time out, and jobs with nothing
   * queued or sent complete.
   */
  sweep(): Promise<void>;
}

const JOB_COLUMNS = `j.tenant_id, j.id, j.seq, j.description, j.kind, j.command_name, j.params, j.timeout_ms, j.desired_patch, j.group_id,
  j.max_in_flight, j.max_per_second, j.abort_threshold_percent, j.abort_min_finished, j.expire_time, j.state, j.reason, j.actor_id, j.create_time, j.update_time, j.await_firmware`;

/** Counts of every state of one job, as a lateral subquery. */
const COUNTS = `LEFT JOIN LATERAL (
  SELECT count(*) AS total,
    count(*) FILTER (WHERE state = 'queued') AS queued, count(*) FILTER (WHERE state = 'sent') AS sent,
    count(*) FILTER (WHERE state = 'succeeded') AS succeeded, count(*) FILTER (WHERE state = 'failed') AS failed,
    count(*) FILTER (WHERE state = 'timed_out') AS timed_out, count(*) FILTER (WHERE state = 'cancelled') AS cancelled
  FROM job_devices jd WHERE jd.tenant_id = j.tenant_id AND jd.job_id = j.id) c ON true`;

/** A step's answer waits this long past its timeout before a sweep deems its replica gone. */
const ORPHAN_GRACE = "interval '5 seconds'";

function toCounts(row: Row): JobCounts {
  const n = (k: string) => Number(row[k] ?? 0);
  return { total: n('total'), queued: n('queued'), sent: n('sent'), succeeded: n('succeeded'), failed: n('failed'), timedOut: n('timed_out'), cancelled: n('cancelled') };
}

function toJob(row: Row): JobRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    description: row.description,
    command: row.kind === 'command' ? { name: row.command_name, params: row.params ?? undefined, timeoutMs: row.timeout_ms } : undefined,
    desiredPatch: row.kind === 'desired' ? row.desired_patch : undefined,
    groupId: row.group_id,
    rollout: { maxInFlight: row.max_in_flight, maxPerSecond: row.max_per_second, abortThresholdPercent: row.abort_threshold_percent, abortMinFinished: row.abort_min_finished },
    expireTime: row.expire_time,
    state: row.state,
    reason: row.reason,
    actorId: row.actor_id,
    createTime: row.create_time,
    updateTime: row.update_time,
    counts: toCounts(row),
    awaitFirmware: row.await_firmware || undefined,
  };
}

function toJobDevice(row: Row): JobDeviceRecord {
  return {
    deviceId: row.device_id,
    seq: String(row.seq),
    state: row.state,
    reason: row.reason,
    result: row.result ?? undefined,
    sentTime: row.sent_time ?? undefined,
    finishTime: row.finish_time ?? undefined,
  };
}

/** Locks the job's row (every writer of a job's devices takes it first, so lock order is always job, then devices); undefined unless running. */
async function lockRunning(client: PoolClient, tenantId: string, id: string): Promise<Row | undefined> {
  const { rows } = await client.query(`SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2 AND state = 'running' FOR UPDATE`, [tenantId, id]);
  return rows[0];
}

/** The PostgreSQL implementation (schema `device`). */
export class PgJobStore implements JobStore {
  constructor(private readonly pool: Pool) {}

  async insert(job: JobSpec, deviceIds: string[]): Promise<{ job?: JobRecord; missing: string[] }> {
    return withTransaction(this.pool, async (client) => {
      const { rows: found } = await client.query(`SELECT id FROM devices WHERE tenant_id = $1 AND id = ANY($2::text[])`, [job.tenantId, deviceIds]);
      const have = new Set(found.map((r) => r.id as string));
      const missing = deviceIds.filter((id) => !have.has(id));
      if (missing.length > 0) return { missing };
      await client.query(
        `INSERT INTO jobs (tenant_id, id, description, kind, command_name, params, timeout_ms, desired_patch, group_id,
           max_in_flight, max_per_second, abort_threshold_percent, abort_min_finished, expire_time, actor_id, await_firmware)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
        [
          job.tenantId,
          job.id,
          job.description,
          job.command ? 'command' : 'desired',
          job.command?.name ?? '',
          job.command?.params ? JSON.stringify(job.command.params) : null,
          job.command?.timeoutMs ?? 0,
          job.desiredPatch ? JSON.stringify(job.desiredPatch) : null,
          job.groupId,
          job.rollout.maxInFlight,
          job.rollout.maxPerSecond,
          job.rollout.abortThresholdPercent,
          job.rollout.abortMinFinished,
          job.expireTime,
          job.actorId,
          job.awaitFirmware ?? '',
        ],
      );
      // unnest WITH ORDINALITY keeps the caller's order as the rollout order.
      await client.query(
        `INSERT INTO job_devices (tenant_id, job_id, device_id) SELECT $1, $2, d FROM unnest($3::text[]) WITH ORDINALITY AS u(d, n) ORDER BY n`,
        [job.tenantId, job.id, deviceIds],
      );
      const { rows } = await client.query(`SELECT ${JOB_COLUMNS}, c.* FROM jobs j ${COUNTS} WHERE j.tenant_id = $1 AND j.id = $2`, [job.tenantId, job.id]);
      return { job: toJob(rows[0]), missing: [] };
    });
  }

  async get(tenantId: string, id: string): Promise<JobRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query(`SELECT ${JOB_COLUMNS}, c.* FROM jobs j ${COUNTS} WHERE j.tenant_id = $1 AND j.id = $2`, [tenantId, id]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async list(tenantId: string, beforeSeq: string | undefined, limit: number): Promise<JobRecord[]> {
    const { rows } = await this.pool.query(
      `SELECT ${JOB_COLUMNS}, c.* FROM jobs j ${COUNTS} WHERE j.tenant_id = $1 AND ($2::bigint IS NULL OR j.seq < $2) ORDER BY j.seq DESC LIMIT $3`,
      [tenantId, beforeSeq ?? null, limit],
    );
    return rows.map(toJob);
  }

  async devices(tenantId: string, jobId: string, state: JobDeviceState | undefined, afterSeq: string | undefined, limit: number): Promise<JobDeviceRecord[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM job_devices WHERE tenant_id = $1 AND job_id = $2 AND ($3::text IS NULL OR state = $3) AND ($4::bigint IS NULL OR seq > $4) ORDER BY seq LIMIT $5`,
      [tenantId, jobId, state ?? null, afterSeq ?? null, limit],
    );
    return rows.map(toJobDevice);
  }

  async cancel(tenantId: string, id: string, reason: string): Promise<boolean> {
    return withTransaction(this.pool, async (client) => {
      if (!(await lockRunning(client, tenantId, id))) return false;
      await client.query(`UPDATE jobs SET state = 'cancelled', reason = $3, update_time = now() WHERE tenant_id = $1 AND id = $2`, [tenantId, id, reason]);
      await client.query(`UPDATE job_devices SET state = 'cancelled', reason = $3, finish_time = now() WHERE tenant_id = $1 AND job_id = $2 AND state = 'queued'`, [tenantId, id, reason]);
      return true;
    });
  }

  async running(): Promise<JobRecord[]> {
    const { rows } = await this.pool.query(`SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.state = 'running' ORDER BY j.seq`);
    return rows.map(toJob);
  }

  async claim(job: JobRecord, replica: string): Promise<string[]> {
    return withTransaction(this.pool, async (client) => {
      if (!(await lockRunning(client, job.tenantId, job.id))) return [];
      const { rows: load } = await client.query(
        `SELECT count(*) FILTER (WHERE state = 'sent') AS sent, count(*) FILTER (WHERE sent_time > now() - interval '1 second') AS last_second
         FROM job_devices WHERE tenant_id = $1 AND job_id = $2 AND (state = 'sent' OR sent_time > now() - interval '1 second')`,
        [job.tenantId, job.id],
      );
      let room = job.rollout.maxInFlight - Number(load[0].sent);
      if (job.rollout.maxPerSecond > 0) room = Math.min(room, job.rollout.maxPerSecond - Number(load[0].last_second));
      if (room <= 0) return [];
      const timeoutMs = job.command?.timeoutMs ?? 0;
      const { rows } = await client.query(
        `UPDATE job_devices SET state = 'sent', claimed_by = $3, sent_time = now(), deadline = now() + make_interval(secs => $4::double precision / 1000) + ${ORPHAN_GRACE}
         WHERE (tenant_id, job_id, device_id) IN (
           SELECT jd.tenant_id, jd.job_id, jd.device_id FROM job_devices jd
           JOIN devices d ON d.tenant_id = jd.tenant_id AND d.id = jd.device_id
           WHERE jd.tenant_id = $1 AND jd.job_id = $2 AND jd.state = 'queued' AND d.status = 'online'
           ORDER BY jd.seq LIMIT $5 FOR UPDATE OF jd SKIP LOCKED)
         RETURNING device_id`,
        [job.tenantId, job.id, replica, timeoutMs, room],
      );
      return rows.map((r) => r.device_id as string);
    });
  }

  async requeue(job: JobRecord, deviceId: string, replica: string): Promise<void> {
    await this.pool.query(
      `UPDATE job_devices SET state = 'queued', claimed_by = '', sent_time = NULL, deadline = NULL, reason = 'waiting for the device to connect'
       WHERE tenant_id = $1 AND job_id = $2 AND device_id = $3 AND state = 'sent' AND claimed_by = $4`,
      [job.tenantId, job.id, deviceId, replica],
    );
  }

  async finish(job: JobRecord, deviceId: string, replica: string, step: JobStep): Promise<boolean> {
    return withTransaction(this.pool, async (client) => {
      // The job's row first (the lock order), whatever its state: a cancelled or aborted job's sent steps still finish.
      await client.query(`SELECT 1 FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [job.tenantId, job.id]);
      const { rowCount } = await client.query(
        `UPDATE job_devices SET state = $5, reason = $6, result = $7, finish_time = now()
         WHERE tenant_id = $1 AND job_id = $2 AND device_id = $3 AND state = 'sent' AND claimed_by = $4`,
        [job.tenantId, job.id, deviceId, replica, step.state, step.reason, step.result ? JSON.stringify(step.result) : null],
      );
      if (rowCount === 0) return false;
      await judgeAbort(client, job);
      return true;
    });
  }

  async awaitReport(job: JobRecord, deviceId: string, replica: string): Promise<void> {
    await this.pool.query(
      `UPDATE job_devices SET deadline = $5::timestamptz + ${ORPHAN_GRACE}, reason = 'waiting for the device to report the firmware'
       WHERE tenant_id = $1 AND job_id = $2 AND device_id = $3 AND state = 'sent' AND claimed_by = $4`,
      [job.tenantId, job.id, deviceId, replica, job.expireTime],
    );
  }

  async finishReported(tenantId: string, deviceId: string, version: string, step: JobStep): Promise<string[]> {
    const { rows } = await this.pool.query(
      `SELECT ${JOB_COLUMNS} FROM jobs j JOIN job_devices jd ON jd.tenant_id = j.tenant_id AND jd.job_id = j.id
       WHERE j.tenant_id = $1 AND j.await_firmware = $3 AND jd.device_id = $2 AND jd.state = 'sent'`,
      [tenantId, deviceId, version],
    );
    const finished: string[] = [];
    for (const job of rows.map(toJob)) {
      const done = await withTransaction(this.pool, async (client) => {
        await client.query(`SELECT 1 FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [job.tenantId, job.id]);
        const { rowCount } = await client.query(
          `UPDATE job_devices SET state = $4, reason = $5, finish_time = now() WHERE tenant_id = $1 AND job_id = $2 AND device_id = $3 AND state = 'sent'`,
          [job.tenantId, job.id, deviceId, step.state, step.reason],
        );
        if (rowCount === 0) return false;
        await judgeAbort(client, job);
        return true;
      });
      if (done) finished.push(job.id);
    }
    return finished;
  }

  async sweep(): Promise<void> {
    for (const job of await this.running()) {
      await withTransaction(this.pool, async (client) => {
        const row = await lockRunning(client, job.tenantId, job.id);
        if (!row) return;
        const { rowCount: orphans } = await client.query(
          `UPDATE job_devices SET state = 'timed_out', finish_time = now(),
             reason = CASE WHEN $3 <> '' THEN 'the device did not report the firmware before the job expired' ELSE 'no answer was recorded: the replica that sent the step stopped before it came' END
           WHERE tenant_id = $1 AND job_id = $2 AND state = 'sent' AND deadline < now()`,
          [job.tenantId, job.id, job.awaitFirmware ?? ''],
        );
        if ((orphans ?? 0) > 0 && (await judgeAbort(client, job))) return;
        if (row.expire_time.getTime() <= Date.now()) {
          await client.query(
            `UPDATE job_devices SET state = 'timed_out', reason = 'the device did not connect before the job expired', finish_time = now()
             WHERE tenant_id = $1 AND job_id = $2 AND state = 'queued'`,
            [job.tenantId, job.id],
          );
        }
        const { rows } = await client.query(`SELECT count(*) AS open FROM job_devices WHERE tenant_id = $1 AND job_id = $2 AND state IN ('queued', 'sent')`, [job.tenantId, job.id]);
        if (Number(rows[0].open) === 0) {
          await client.query(`UPDATE jobs SET state = 'completed', reason = 'every device finished', update_time = now() WHERE tenant_id = $1 AND id = $2`, [job.tenantId, job.id]);
        }
      });
    }
  }
}

/** Aborts the (locked) job when more than its threshold of finished devices failed; true when it did. */
async function judgeAbort(client: PoolClient, job: JobRecord): Promise<boolean> {
  const { abortThresholdPercent, abortMinFinished } = job.rollout;
  if (abortThresholdPercent <= 0) return false;
  const { rows } = await client.query(
    `SELECT count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'timed_out')) AS finished, count(*) FILTER (WHERE state IN ('failed', 'timed_out')) AS failed
     FROM job_devices WHERE tenant_id = $1 AND job_id = $2`,
    [job.tenantId, job.id],
  );
  const finished = Number(rows[0].finished);
  const failed = Number(rows[0].failed);
  if (finished < abortMinFinished || failed * 100 <= abortThresholdPercent * finished) return false;
  const reason = `aborted: ${failed} of ${finished} finished devices failed (more than ${abortThresholdPercent} %)`;
  const { rowCount } = await client.query(`UPDATE jobs SET state = 'aborted', reason = $3, update_time = now() WHERE tenant_id = $1 AND id = $2 AND state = 'running'`, [job.tenantId, job.id, reason]);
  if (rowCount === 0) return false;
  await client.query(`UPDATE job_devices SET state = 'cancelled', reason = $3, finish_time = now() WHERE tenant_id = $1 AND job_id = $2 AND state = 'queued'`, [job.tenantId, job.id, reason]);
  return true;
}
