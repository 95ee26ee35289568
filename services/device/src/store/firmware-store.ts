import crypto from 'node:crypto';
import { Pool, withTransaction } from '@iot-mesh/runtime';
import type { CampaignDeviceRecord, CampaignRecord, CampaignSpec, CampaignStage, CampaignState, FirmwareRecord, FirmwareSpec } from '../domain/firmware';
import type { JobCounts, JobDeviceState } from '../domain/jobs';
import { Row } from './device-store';
import { isUuid } from './device-type-store';

/** Persistence of firmware artefacts and campaigns (the campaigns' device rows are their jobs'). */
export interface FirmwareStore {
  /** Undefined when the device type already has this version. */
  insert(firmware: FirmwareSpec): Promise<FirmwareRecord | undefined>;
  get(tenantId: string, id: string): Promise<FirmwareRecord | undefined>;
  list(tenantId: string, deviceTypeId: string, beforeSeq: string | undefined, limit: number): Promise<FirmwareRecord[]>;
  /** 'in_use' while a running campaign installs it. */
  delete(tenantId: string, id: string): Promise<'deleted' | 'not_found' | 'in_use'>;
  /**
   * Appends one chunk of a stored image with the firmware's row locked (and
   * the tenant's uploads serialised): `check` sees the firmware and the bytes
   * the tenant's stored images hold, and throws to refuse. With `last`,
   * `finish` sees the whole image's SHA-256 and size and returns the URL to
   * set, or throws after the store dropped the image's chunks when it
   * returns 'restart'. Undefined when the firmware does not exist.
   */
  appendChunk(
    tenantId: string,
    id: string,
    chunk: { offset: bigint; data: Uint8Array; last: boolean },
    check: (firmware: FirmwareRecord, tenantStoredBytes: bigint) => 'append' | 'duplicate',
    finish: (firmware: FirmwareRecord, image: { sha256: string; sizeBytes: bigint }) => { url: string } | { restart: Error },
  ): Promise<FirmwareRecord | undefined>;
  /** The image's bytes from `offset` on, `length` of them, in chunks as stored. */
  readImage(tenantId: string, id: string, offset: bigint, length: bigint): AsyncIterable<Uint8Array>;
  /** True when a campaign of the tenant installs this firmware on the device (either stage). */
  campaignTargets(tenantId: string, firmwareId: string, deviceId: string): Promise<boolean>;
  insertCampaign(campaign: CampaignSpec): Promise<CampaignRecord>;
  getCampaign(tenantId: string, id: string): Promise<CampaignRecord | undefined>;
  listCampaigns(tenantId: string, beforeSeq: string | undefined, limit: number): Promise<CampaignRecord[]>;
  /** Both stages' devices in rollout order. */
  campaignDevices(tenantId: string, campaign: CampaignRecord, afterSeq: string | undefined, limit: number): Promise<CampaignDeviceRecord[]>;
  runningCampaigns(): Promise<CampaignRecord[]>;
  /** Devices whose firmware step was sent and awaits their report, of every tenant. */
  awaitingDevices(): Promise<{ tenantId: string; deviceId: string }[]>;
  /**
   * Runs `step` with the campaign's row locked while it is still running;
   * what `step` returns is written (state, stage, reason). False when it was
   * no longer running.
   */
  advance(tenantId: string, id: string, step: (c: CampaignRecord) => Promise<{ state: CampaignState; stage: CampaignStage; reason: string } | undefined>): Promise<boolean>;
}

const ZERO: JobCounts = { total: 0, queued: 0, sent: 0, succeeded: 0, failed: 0, timedOut: 0, cancelled: 0 };

function toFirmware(row: Row): FirmwareRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    version: row.version,
    deviceTypeId: row.device_type_id,
    sizeBytes: BigInt(row.size_bytes),
    sha256: row.sha256,
    url: row.url,
    description: row.description,
    stored: row.stored,
    uploadedBytes: BigInt(row.uploaded_bytes),
    uploadComplete: row.upload_complete,
    createTime: row.create_time,
  };
}

/** Chunks read per query while hashing or downloading (1 MiB each at most). */
const READ_CHUNKS = 8;

/** Counts of both stages' jobs, the rollout's devices as queued until its job exists. */
const CAMPAIGN_SELECT = `SELECT c.*, f.version, f.url, f.sha256, cnt.* FROM firmware_campaigns c
  JOIN firmware f ON f.tenant_id = c.tenant_id AND f.id = c.firmware_id
  LEFT JOIN LATERAL (
    SELECT count(*) AS total,
      count(*) FILTER (WHERE state = 'queued') AS queued, count(*) FILTER (WHERE state = 'sent') AS sent,
      count(*) FILTER (WHERE state = 'succeeded') AS succeeded, count(*) FILTER (WHERE state = 'failed') AS failed,
      count(*) FILTER (WHERE state = 'timed_out') AS timed_out, count(*) FILTER (WHERE state = 'cancelled') AS cancelled
    FROM job_devices jd WHERE jd.tenant_id = c.tenant_id AND jd.job_id IN (c.canary_job_id, c.rollout_job_id)) cnt ON true`;

function toCampaign(row: Row): CampaignRecord {
  const n = (k: string) => Number(row[k] ?? 0);
  const pending = row.rollout_started ? 0 : row.rollout_device_ids.length;
  const counts: JobCounts = row.total === undefined ? { ...ZERO } : { total: n('total') + pending, queued: n('queued') + pending, sent: n('sent'), succeeded: n('succeeded'), failed: n('failed'), timedOut: n('timed_out'), cancelled: n('cancelled') };
  // A cancelled or aborted campaign's rollout devices never started: they count as cancelled.
  if (pending > 0 && row.state !== 'running') {
    counts.queued -= pending;
    counts.cancelled += pending;
  }
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    firmwareId: row.firmware_id,
    version: row.version,
    url: row.url,
    sha256: row.sha256,
    description: row.description,
    groupId: row.group_id,
    canaryPercent: row.canary_percent,
    maxConcurrent: row.max_concurrent,
    failureThresholdPercent: row.failure_threshold_percent,
    expireTime: row.expire_time,
    state: row.state,
    stage: row.stage,
    reason: row.reason,
    canaryJobId: row.canary_job_id ?? undefined,
    rolloutJobId: row.rollout_job_id,
    rolloutDeviceIds: row.rollout_device_ids,
    rolloutStarted: row.rollout_started,
    actorId: row.actor_id,
    createTime: row.create_time,
    updateTime: row.update_time,
    counts,
  };
}

/** The PostgreSQL implementation (schema `device`). */
export class PgFirmwareStore implements FirmwareStore {
  constructor(private readonly pool: Pool) {}

  async insert(f: FirmwareSpec): Promise<FirmwareRecord | undefined> {
    const { rows } = await this.pool.query(
      `INSERT INTO firmware (tenant_id, id, version, device_type_id, size_bytes, sha256, url, description, stored, upload_complete) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NOT $9)
       ON CONFLICT (tenant_id, device_type_id, version) DO NOTHING RETURNING *`,
      [f.tenantId, f.id, f.version, f.deviceTypeId, f.sizeBytes.toString(), f.sha256, f.url, f.description, f.stored],
    );
    return rows[0] ? toFirmware(rows[0]) : undefined;
  }

  async get(tenantId: string, id: string): Promise<FirmwareRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query(`SELECT * FROM firmware WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return rows[0] ? toFirmware(rows[0]) : undefined;
  }

  async list(tenantId: string, deviceTypeId: string, beforeSeq: string | undefined, limit: number): Promise<FirmwareRecord[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM firmware WHERE tenant_id = $1 AND ($2 = '' OR device_type_id = $2) AND ($3::bigint IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4`,
      [tenantId, deviceTypeId, beforeSeq ?? null, limit],
    );
    return rows.map(toFirmware);
  }

  async delete(tenantId: string, id: string): Promise<'deleted' | 'not_found' | 'in_use'> {
    if (!isUuid(id)) return 'not_found';
    return withTransaction(this.pool, async (client) => {
      const { rows } = await client.query(`SELECT 1 FROM firmware WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenantId, id]);
      if (rows.length === 0) return 'not_found';
      const { rows: used } = await client.query(`SELECT 1 FROM firmware_campaigns WHERE tenant_id = $1 AND firmware_id = $2 AND state = 'running' LIMIT 1`, [tenantId, id]);
      if (used.length > 0) return 'in_use';
      // Ended campaigns keep their history; their artefact goes with them.
      await client.query(`DELETE FROM firmware_campaigns WHERE tenant_id = $1 AND firmware_id = $2`, [tenantId, id]);
      await client.query(`DELETE FROM firmware WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return 'deleted';
    });
  }

  async appendChunk(
    tenantId: string,
    id: string,
    chunk: { offset: bigint; data: Uint8Array; last: boolean },
    check: (firmware: FirmwareRecord, tenantStoredBytes: bigint) => 'append' | 'duplicate',
    finish: (firmware: FirmwareRecord, image: { sha256: string; sizeBytes: bigint }) => { url: string } | { restart: Error },
  ): Promise<FirmwareRecord | undefined> {
    if (!isUuid(id)) return undefined;
    let restart: Error | undefined;
    const result = await withTransaction(this.pool, async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('firmware-uploads/' || $1))`, [tenantId]);
      const { rows } = await client.query(`SELECT * FROM firmware WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenantId, id]);
      if (!rows[0]) return undefined;
      const { rows: held } = await client.query(`SELECT coalesce(sum(uploaded_bytes), 0) AS bytes FROM firmware WHERE tenant_id = $1 AND stored`, [tenantId]);
      let firmware = toFirmware(rows[0]);
      if (check(firmware, BigInt(held[0].bytes)) === 'duplicate') return firmware;
      if (chunk.data.length > 0) {
        await client.query(`INSERT INTO firmware_chunks (tenant_id, firmware_id, byte_offset, data) VALUES ($1, $2, $3, $4)`, [tenantId, id, chunk.offset.toString(), Buffer.from(chunk.data)]);
        const { rows: updated } = await client.query(`UPDATE firmware SET uploaded_bytes = uploaded_bytes + $3 WHERE tenant_id = $1 AND id = $2 RETURNING *`, [tenantId, id, chunk.data.length]);
        firmware = toFirmware(updated[0]);
      }
      if (!chunk.last) return firmware;
      const hash = crypto.createHash('sha256');
      let after = -1n;
      for (;;) {
        const { rows: chunks } = await client.query(`SELECT byte_offset, data FROM firmware_chunks WHERE tenant_id = $1 AND firmware_id = $2 AND byte_offset > $3 ORDER BY byte_offset LIMIT ${READ_CHUNKS}`, [tenantId, id, after.toString()]);
        for (const c of chunks) hash.update(c.data);
        if (chunks.length < READ_CHUNKS) break;
        after = BigInt(chunks[chunks.length - 1].byte_offset);
      }
      const sha256 = hash.digest('hex');
      const outcome = finish(firmware, { sha256, sizeBytes: firmware.uploadedBytes });
      if ('restart' in outcome) {
        restart = outcome.restart;
        await client.query(`DELETE FROM firmware_chunks WHERE tenant_id = $1 AND firmware_id = $2`, [tenantId, id]);
        await client.query(`UPDATE firmware SET uploaded_bytes = 0 WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
        return firmware;
      }
      const { rows: done } = await client.query(
        `UPDATE firmware SET upload_complete = true, url = $3, sha256 = $4, size_bytes = $5 WHERE tenant_id = $1 AND id = $2 RETURNING *`,
        [tenantId, id, outcome.url, sha256, firmware.uploadedBytes.toString()],
      );
      return toFirmware(done[0]);
    });
    if (restart) throw restart;
    return result;
  }

  async *readImage(tenantId: string, id: string, offset: bigint, length: bigint): AsyncIterable<Uint8Array> {
    const end = offset + length;
    let from = offset;
    while (from < end) {
      // The chunk holding `from` and the ones after it.
      const { rows } = await this.pool.query(
        `SELECT byte_offset, data FROM firmware_chunks WHERE tenant_id = $1 AND firmware_id = $2 AND byte_offset + length(data) > $3 AND byte_offset < $4 ORDER BY byte_offset LIMIT ${READ_CHUNKS}`,
        [tenantId, id, from.toString(), end.toString()],
      );
      if (rows.length === 0) return;
      for (const row of rows) {
        const start = BigInt(row.byte_offset);
        const data = row.data as Buffer;
        const chunkEnd = start + BigInt(data.length);
        const slice = data.subarray(Number(from - start), Number((end < chunkEnd ? end : chunkEnd) - start));
        from += BigInt(slice.length);
        yield slice;
      }
    }
  }

  async campaignTargets(tenantId: string, firmwareId: string, deviceId: string): Promise<boolean> {
    if (!isUuid(firmwareId)) return false;
    const { rows } = await this.pool.query(
      `SELECT 1 FROM firmware_campaigns c WHERE c.tenant_id = $1 AND c.firmware_id = $2
         AND ($3 = ANY (c.rollout_device_ids) OR EXISTS (SELECT 1 FROM job_devices jd WHERE jd.tenant_id = c.tenant_id AND jd.job_id IN (c.canary_job_id, c.rollout_job_id) AND jd.device_id = $3))
       LIMIT 1`,
      [tenantId, firmwareId, deviceId],
    );
    return rows.length > 0;
  }

  async insertCampaign(c: CampaignSpec): Promise<CampaignRecord> {
    await this.pool.query(
      `INSERT INTO firmware_campaigns (tenant_id, id, firmware_id, description, group_id, canary_percent, max_concurrent, failure_threshold_percent,
         expire_time, stage, canary_job_id, rollout_job_id, rollout_device_ids, rollout_started, actor_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
      [
        c.tenantId,
        c.id,
        c.firmwareId,
        c.description,
        c.groupId,
        c.canaryPercent,
        c.maxConcurrent,
        c.failureThresholdPercent,
        c.expireTime,
        c.stage,
        c.canaryJobId ?? null,
        c.rolloutJobId,
        c.rolloutDeviceIds,
        c.rolloutStarted,
        c.actorId,
      ],
    );
    return (await this.getCampaign(c.tenantId, c.id))!;
  }

  async getCampaign(tenantId: string, id: string): Promise<CampaignRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query(`${CAMPAIGN_SELECT} WHERE c.tenant_id = $1 AND c.id = $2`, [tenantId, id]);
    return rows[0] ? toCampaign(rows[0]) : undefined;
  }

  async listCampaigns(tenantId: string, beforeSeq: string | undefined, limit: number): Promise<CampaignRecord[]> {
    const { rows } = await this.pool.query(`${CAMPAIGN_SELECT} WHERE c.tenant_id = $1 AND ($2::bigint IS NULL OR c.seq < $2) ORDER BY c.seq DESC LIMIT $3`, [
      tenantId,
      beforeSeq ?? null,
      limit,
    ]);
    return rows.map(toCampaign);
  }

  async campaignDevices(tenantId: string, c: CampaignRecord, afterSeq: string | undefined, limit: number): Promise<CampaignDeviceRecord[]> {
    // Tokens 'r<n>' page through the rollout's devices before its job exists (they come after the canary's rows).
    const pendingFrom = afterSeq?.startsWith('r') ? Number(afterSeq.slice(1)) : undefined;
    const listed: CampaignDeviceRecord[] = [];
    if (pendingFrom === undefined) {
      const { rows } = await this.pool.query(
        `SELECT jd.*, CASE WHEN jd.job_id = $3 THEN 'canary' ELSE 'rollout' END AS stage FROM job_devices jd
         WHERE jd.tenant_id = $1 AND (jd.job_id = $2 OR jd.job_id = $3) AND ($4::bigint IS NULL OR jd.seq > $4) ORDER BY jd.seq LIMIT $5`,
        [tenantId, c.rolloutJobId, c.canaryJobId ?? null, afterSeq ?? null, limit],
      );
      for (const r of rows) {
        listed.push({ deviceId: r.device_id, seq: String(r.seq), stage: r.stage, state: r.state as JobDeviceState, reason: r.reason, sentTime: r.sent_time ?? undefined, finishTime: r.finish_time ?? undefined });
      }
    }
    if (!c.rolloutStarted && listed.length < limit) {
      const state: JobDeviceState = c.state === 'running' ? 'queued' : 'cancelled';
      const reason = c.state === 'running' ? 'waiting for the canary stage' : c.reason;
      const start = pendingFrom ?? 0;
      c.rolloutDeviceIds.slice(start, start + limit - listed.length).forEach((deviceId, i) => listed.push({ deviceId, seq: `r${start + i + 1}`, stage: 'rollout', state, reason }));
    }
    return listed;
  }

  async runningCampaigns(): Promise<CampaignRecord[]> {
    const { rows } = await this.pool.query(`${CAMPAIGN_SELECT} WHERE c.state = 'running' ORDER BY c.seq`);
    return rows.map(toCampaign);
  }

  async awaitingDevices(): Promise<{ tenantId: string; deviceId: string }[]> {
    const { rows } = await this.pool.query(
      `SELECT DISTINCT jd.tenant_id, jd.device_id FROM jobs j JOIN job_devices jd ON jd.tenant_id = j.tenant_id AND jd.job_id = j.id
       WHERE j.state = 'running' AND j.await_firmware <> '' AND jd.state = 'sent'`,
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, deviceId: r.device_id }));
  }

  async advance(tenantId: string, id: string, step: (c: CampaignRecord) => Promise<{ state: CampaignState; stage: CampaignStage; reason: string } | undefined>): Promise<boolean> {
    return withTransaction(this.pool, async (client) => {
      const { rows } = await client.query(`SELECT 1 FROM firmware_campaigns WHERE tenant_id = $1 AND id = $2 AND state = 'running' FOR UPDATE`, [tenantId, id]);
      if (rows.length === 0) return false;
      const { rows: now } = await client.query(`${CAMPAIGN_SELECT} WHERE c.tenant_id = $1 AND c.id = $2`, [tenantId, id]);
      const next = await step(toCampaign(now[0]));
      if (!next) return true;
      await client.query(
        `UPDATE firmware_campaigns SET state = $3, stage = $4, reason = $5, rollout_started = rollout_started OR $4 = 'rollout', update_time = now() WHERE tenant_id = $1 AND id = $2`,
        [tenantId, id, next.state, next.stage, next.reason],
      );
      return true;
    });
  }
}
