import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { PG_ERROR, type Pool, type PoolClient } from '@iot-mesh/runtime';
import {
  AggregationKind,
  DeviceHistorySeries,
  DevicesHistoryQuery,
  HistoryBucket,
  HistoryQuery,
  HistorySeries,
  PointRow,
  PointsPage,
  PointsQuery,
  SampleValue,
  StoredPoint,
  TelemetryStore,
  WriteResult,
} from './telemetry-store';
import { planHistorySpans, rollupsOf } from './rollups';

const DAY_MS = 86_400_000;
const PARTITION_NAME = /^points_p(\d{4})(\d{2})(\d{2})$/;
/** Serialises partition DDL between replicas. */
const PARTITION_LOCK_KEY = 0x1e7e_0001;

/** `points_p20261127` for the UTC day holding `ms`. */
function partitionOf(ms: number): { name: string; from: Date; to: Date } {
  const from = new Date(Math.floor(ms / DAY_MS) * DAY_MS);
  const day = from.toISOString().slice(0, 10).replace(/-/g, '');
  return { name: `points_p${day}`, from, to: new Date(from.getTime() + DAY_MS) };
}

/** Escapes one value for COPY's text format. */
function copyText(value: string): string {
  return value.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

function copyLine(row: PointRow): string {
  const v = row.value;
  const number = v.number === undefined ? '\\N' : String(v.number);
  const bool = v.bool === undefined ? '\\N' : v.bool ? 't' : 'f';
  const str = v.string === undefined ? '\\N' : copyText(v.string);
  return `${copyText(row.tenantId)}\t${copyText(row.deviceId)}\t${copyText(row.metric)}\t${row.time.toISOString()}\t${copyText(row.messageId)}\t${row.pointIndex}\t${number}\t${bool}\t${str}\n`;
}

/** A stored row's value columns as a sample value. */
export function valueOf(row: { number_value: number | null; bool_value: boolean | null; string_value: string | null }): SampleValue {
  if (row.number_value !== null) return { number: row.number_value };
  if (row.bool_value !== null) return { bool: row.bool_value };
  return { string: row.string_value ?? '' };
}

/** The incoming rollup row's last point comes after the stored one's (time, message id, point index). */
const LATER = '(EXCLUDED.last_time, EXCLUDED.last_message_id COLLATE "C", EXCLUDED.last_point_index) > (r.last_time, r.last_message_id COLLATE "C", r.last_point_index)';

/** How long a message's first receipt is remembered: a copy received later is stored under its own receive time. */
export const RECEIPT_DAYS = 7;
const RECEIPT_PRUNE_EVERY_MS = 3_600_000;

const COLUMNS = 'tenant_id, device_id, metric, time, message_id, point_index, number_value, bool_value, string_value';

/**
 * The PostgreSQL telemetry store: a day-partitioned `points` table written
 * by COPY (straight into the table; when a batch holds rows already stored,
 * through a session-local staging table and `INSERT … ON CONFLICT DO
 * NOTHING` — idempotent on the primary key), plus a small `latest_points`
 * table and the minute/hour/day `rollups` of the rows actually inserted,
 * upserted in the same transaction. History reads the coarsest rollup that
 * divides its buckets and raw points only at the edges; aggregation happens in SQL.
 */
export class PostgresTelemetryStore implements TelemetryStore {
  private readonly knownPartitions = new Set<string>();
  private readonly stagingReady = new WeakSet<PoolClient>();
  private receiptsPrunedAt = 0;

  constructor(private readonly pool: Pool) {}

  async write(rows: PointRow[]): Promise<WriteResult> {
    await this.firstReceipts(rows);
    try {
      return await this.writeOnce(rows);
    } catch (err) {
      // "no partition of relation found": a partition this process thought existed was dropped
      // (retention in another replica); forget what we know and create it again.
      if ((err as { code?: string }).code !== '23514') throw err;
      this.knownPartitions.clear();
      return this.writeOnce(rows);
    }
  }

  private async writeOnce(rows: PointRow[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0 };
    // Duplicates inside the batch, like rows stored before, make the direct COPY fail and take the slow path.
    const batch = rows;
    await this.ensurePartitionsFor(batch.map((r) => r.time.getTime()));
    const data = batch.map(copyLine).join('');
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      try {
        let inserted: PointRow[];
        // Fast path: COPY straight into the partitioned table. Only when some rows
        // are already stored (a redelivery) does it fail with a unique violation;
        // then the batch goes through a staging table and ON CONFLICT DO NOTHING.
        await client.query('SAVEPOINT direct_copy');
        try {
          await pipeline(Readable.from([data]), client.query(copyFrom(`COPY points (${COLUMNS}) FROM STDIN`)));
          inserted = batch;
        } catch (err) {
          if ((err as { code?: string }).code !== PG_ERROR.uniqueViolation) throw err;
          await client.query('ROLLBACK TO SAVEPOINT direct_copy');
          inserted = await this.insertDeduplicated(client, data);
        }
        await this.upsertLatest(client, batch);
        // Only rows this transaction inserted count: a redelivered point is already in its rollups.
        await this.upsertRollups(client, inserted);
        await client.query('COMMIT');
        return { inserted: inserted.length };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      }
    } catch (err) {
      broken = true;
      throw err;
    } finally {
      // A client that failed mid-COPY may be in an unknown protocol state: discard it.
      client.release(broken ? true : undefined);
    }
  }

  /**
   * Gives every point without a time of its own its message's first receive
   * time (`message_receipts`), in place: a copy of the message received later
   * (an MQTT QoS 1 retransmission, a device's replay) then has the same
   * (time, message id, point index) and is stored once. One statement
   * normally; a second when another writer recorded the same message at the
   * same moment (its row was not yet visible to the first).
   */
  private async firstReceipts(rows: PointRow[]): Promise<void> {
    const keyOf = (r: { tenantId: string; deviceId: string; messageId: string }) => `${r.tenantId}\u0000${r.deviceId}\u0000${r.messageId}`;
    const messages = new Map<string, PointRow>();
    for (const r of rows) if (r.untimed && !messages.has(keyOf(r))) messages.set(keyOf(r), r);
    if (messages.size === 0) return;
    const list = [...messages.values()];
    const keys = [list.map((r) => r.tenantId), list.map((r) => r.deviceId), list.map((r) => r.messageId)];
    const first = new Map<string, Date>();
    const found = await this.pool.query<{ tenant_id: string; device_id: string; message_id: string; received_at: Date }>(
      `WITH k AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS k(tenant_id, device_id, message_id, received_at)),
            ins AS (INSERT INTO message_receipts (tenant_id, device_id, message_id, received_at)
                    SELECT * FROM k ORDER BY tenant_id, device_id, message_id ON CONFLICT DO NOTHING
                    RETURNING tenant_id, device_id, message_id, received_at)
       SELECT * FROM ins
       UNION ALL
       SELECT r.tenant_id, r.device_id, r.message_id, r.received_at FROM message_receipts r JOIN k USING (tenant_id, device_id, message_id)`,
      [...keys, list.map((r) => r.time.toISOString())],
    );
    for (const f of found.rows) first.set(keyOf({ tenantId: f.tenant_id, deviceId: f.device_id, messageId: f.message_id }), f.received_at);
    if (first.size < list.length) {
      const again = await this.pool.query<{ tenant_id: string; device_id: string; message_id: string; received_at: Date }>(
        `SELECT r.tenant_id, r.device_id, r.message_id, r.received_at FROM message_receipts r
           JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, device_id, message_id) USING (tenant_id, device_id, message_id)`,
        keys,
      );
      for (const f of again.rows) first.set(keyOf({ tenantId: f.tenant_id, deviceId: f.device_id, messageId: f.message_id }), f.received_at);
    }
    for (const r of rows) if (r.untimed) r.time = first.get(keyOf(r)) ?? r.time;
    if (Date.now() - this.receiptsPrunedAt > RECEIPT_PRUNE_EVERY_MS) {
      this.receiptsPrunedAt = Date.now();
      await this.pool.query(`DELETE FROM message_receipts WHERE received_at < now() - make_interval(days => ${RECEIPT_DAYS})`);
    }
  }

  /** The slow path: COPY into a session-local staging table, then insert what is not stored yet; returns the rows inserted. */
  private async insertDeduplicated(client: PoolClient, data: string): Promise<PointRow[]> {
    if (!this.stagingReady.has(client)) {
      await client.query(`CREATE TEMP TABLE IF NOT EXISTS points_staging (LIKE points) ON COMMIT DELETE ROWS`);
      this.stagingReady.add(client);
    }
    await pipeline(Readable.from([data]), client.query(copyFrom(`COPY points_staging (${COLUMNS}) FROM STDIN`)));
    // Sorted so that concurrent writers take row locks in the same order.
    const result = await client.query(
      `INSERT INTO points (${COLUMNS})
       SELECT ${COLUMNS} FROM points_staging ORDER BY tenant_id, device_id, metric, time, message_id, point_index
       ON CONFLICT DO NOTHING
       RETURNING tenant_id, device_id, metric, time, message_id, point_index, number_value, bool_value`,
    );
    return result.rows.map((r) => ({
      tenantId: r.tenant_id,
      deviceId: r.device_id,
      metric: r.metric,
      time: r.time,
      messageId: r.message_id,
      pointIndex: r.point_index,
      value: r.number_value !== null ? { number: r.number_value } : r.bool_value !== null ? { bool: r.bool_value } : { string: '' },
    }));
  }

  /**
   * Folds newly inserted points into the minute, hour and day rollups: one
   * statement, rows sorted by key (concurrent writers lock them in the same
   * order), merged exactly with what is stored.
   */
  private async upsertRollups(client: PoolClient, inserted: PointRow[]): Promise<void> {
    const rollups = rollupsOf(inserted);
    if (rollups.length === 0) return;
    await client.query(
      `INSERT INTO rollups AS r (tenant_id, device_id, metric, width_s, bucket, count, sum, min, max, last, last_time, last_message_id, last_point_index)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::bigint[], $7::float8[], $8::float8[], $9::float8[],
                            $10::float8[], $11::timestamptz[], $12::text[], $13::int[])
       ON CONFLICT (tenant_id, device_id, metric, width_s, bucket) DO UPDATE SET
         count = r.count + EXCLUDED.count,
         sum = r.sum + EXCLUDED.sum,
         min = least(r.min, EXCLUDED.min),
         max = greatest(r.max, EXCLUDED.max),
         last = CASE WHEN ${LATER} THEN EXCLUDED.last ELSE r.last END,
         last_time = CASE WHEN ${LATER} THEN EXCLUDED.last_time ELSE r.last_time END,
         last_message_id = CASE WHEN ${LATER} THEN EXCLUDED.last_message_id ELSE r.last_message_id END,
         last_point_index = CASE WHEN ${LATER} THEN EXCLUDED.last_point_index ELSE r.last_point_index END`,
      [
        rollups.map((x) => x.tenantId),
        rollups.map((x) => x.deviceId),
        rollups.map((x) => x.metric),
        rollups.map((x) => x.widthMs / 1000),
        rollups.map((x) => new Date(x.bucket)),
        rollups.map((x) => x.count),
        rollups.map((x) => x.sum),
        rollups.map((x) => x.min),
        rollups.map((x) => x.max),
        rollups.map((x) => x.last),
        rollups.map((x) => new Date(x.lastTime)),
        rollups.map((x) => x.lastMessageId),
        rollups.map((x) => x.lastPointIndex),
      ],
    );
  }

  /** Moves each series' latest value forward (never back) — one row per device and metric in the batch. */
  private async upsertLatest(client: PoolClient, rows: PointRow[]): Promise<void> {
    const newest = new Map<string, PointRow>();
    for (const r of rows) {
      const key = `${r.tenantId}\u0000${r.deviceId}\u0000${r.metric}`;
      const seen = newest.get(key);
      if (
        !seen ||
        seen.time.getTime() < r.time.getTime() ||
        (seen.time.getTime() === r.time.getTime() && (seen.messageId < r.messageId || (seen.messageId === r.messageId && seen.pointIndex < r.pointIndex)))
      ) {
        newest.set(key, r);
      }
    }
    // Sorted by key so that concurrent writers lock latest rows in the same order.
    const list = [...newest.values()].sort((a, b) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0));
    await client.query(
      `INSERT INTO latest_points (tenant_id, device_id, metric, time, number_value, bool_value, string_value)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[], $6::bool[], $7::text[])
       ON CONFLICT (tenant_id, device_id, metric) DO UPDATE
         SET time = EXCLUDED.time, number_value = EXCLUDED.number_value,
             bool_value = EXCLUDED.bool_value, string_value = EXCLUDED.string_value
       WHERE latest_points.time <= EXCLUDED.time`,
      [
        list.map((r) => r.tenantId),
        list.map((r) => r.deviceId),
        list.map((r) => r.metric),
        list.map((r) => r.time),
        list.map((r) => r.value.number ?? null),
        list.map((r) => r.value.bool ?? null),
        list.map((r) => r.value.string ?? null),
      ],
    );
  }

  /** Creates the day partitions holding these instants (and caches which exist). */
  async ensurePartitionsFor(times: number[]): Promise<void> {
    const missing = new Map<string, ReturnType<typeof partitionOf>>();
    // A batch spans a day or two: name each day once, not once per row.
    const days = new Set(times.map((t) => Math.floor(t / DAY_MS)));
    for (const day of days) {
      const p = partitionOf(day * DAY_MS);
      if (!this.knownPartitions.has(p.name)) missing.set(p.name, p);
    }
    if (missing.size === 0) return;
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [PARTITION_LOCK_KEY]);
      for (const p of missing.values()) {
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${p.name} PARTITION OF points FOR VALUES FROM ('${p.from.toISOString()}') TO ('${p.to.toISOString()}')`,
        );
      }
      await client.query('COMMIT');
      for (const name of missing.keys()) this.knownPartitions.add(name);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Creates partitions for every day from `from` to `to` (inclusive), e.g. a few days ahead. */
  async ensurePartitions(from: Date, to: Date): Promise<void> {
    const times: number[] = [];
    for (let t = Math.floor(from.getTime() / DAY_MS) * DAY_MS; t <= to.getTime(); t += DAY_MS) times.push(t);
    await this.ensurePartitionsFor(times);
  }

  async latest(tenantId: string, deviceIds: string[], metrics: string[], limit: number): Promise<StoredPoint[]> {
    const { rows } = await this.pool.query(
      `SELECT device_id, metric, time, number_value, bool_value, string_value FROM latest_points
        WHERE tenant_id = $1 AND (cardinality($2::text[]) = 0 OR device_id = ANY($2)) AND (cardinality($3::text[]) = 0 OR metric = ANY($3))
        ORDER BY device_id, metric LIMIT $4`,
      [tenantId, deviceIds, metrics, limit],
    );
    return rows.map((r) => ({ deviceId: r.device_id, metric: r.metric, time: r.time, value: valueOf(r) }));
  }

  async history(query: HistoryQuery): Promise<HistorySeries[]> {
    const rows = await this.bucketRows({ ...query, deviceIds: [query.deviceId] }, query.metrics, query.aggregations.includes('last'));
    const byMetric = new Map<string, HistorySeries>(query.metrics.map((m) => [m, { metric: m, buckets: [] }]));
    for (const r of rows) byMetric.get(r.metric)?.buckets.push(r.bucket);
    return [...byMetric.values()];
  }

  async historyByDevice(query: DevicesHistoryQuery): Promise<DeviceHistorySeries[]> {
    const rows = await this.bucketRows(query, [query.metric], false);
    const byDevice = new Map<string, DeviceHistorySeries>();
    for (const r of rows) {
      let series = byDevice.get(r.deviceId);
      if (!series) byDevice.set(r.deviceId, (series = { deviceId: r.deviceId, buckets: [] }));
      series.buckets.push(r.bucket);
    }
    return [...byDevice.values()];
  }

  /**
   * Buckets per device and metric, oldest first, each from the coarsest rollup
   * that fits and raw points only where no rollup covers (planHistorySpans).
   * `last` needs every bucket's rows sorted (an external sort over large raw
   * ranges), so it is computed only when asked for (NaN otherwise).
   */
  private async bucketRows(
    query: Omit<DevicesHistoryQuery, 'metric'>,
    metrics: string[],
    wantLast: boolean,
  ): Promise<{ deviceId: string; metric: string; bucket: HistoryBucket }[]> {
    const spans = planHistorySpans(query.start.getTime(), query.end.getTime(), query.bucketMs, query.origin.getTime());
    const params: unknown[] = [query.tenantId, query.deviceIds, metrics, query.bucketMs, query.origin];
    const param = (value: unknown) => `$${params.push(value)}`;
    const parts = spans.map((span) => {
      const from = param(new Date(span.from));
      const to = param(new Date(span.to));
      if (span.widthMs === 0) {
        return `SELECT device_id, metric, time AS t, 1::bigint AS count, v AS sum, v AS min, v AS max, v AS last,
                       time AS last_time, message_id AS last_message_id, point_index AS last_point_index
                  FROM (SELECT device_id, metric, time, message_id, point_index, coalesce(number_value, bool_value::int::float8) AS v
                          FROM points
                         WHERE tenant_id = $1 AND device_id = ANY($2) AND metric = ANY($3) AND time >= ${from} AND time < ${to}) s
                 WHERE v IS NOT NULL`;
      }
      return `SELECT device_id, metric, bucket AS t, count, sum, min, max, last, last_time, last_message_id, last_point_index
                FROM rollups
               WHERE tenant_id = $1 AND device_id = ANY($2) AND metric = ANY($3) AND width_s = ${param(span.widthMs / 1000)}
                 AND bucket >= ${from} AND bucket < ${to}`;
    });
    const last = wantLast ? '(array_agg(last ORDER BY last_time DESC, last_message_id COLLATE "C" DESC, last_point_index DESC))[1]' : "'NaN'::float8";
    const { rows } = await this.pool.query(
      `SELECT device_id, metric, date_bin(make_interval(secs => $4::float8 / 1000), t, $5::timestamptz) AS bucket,
              min(min) AS min, max(max) AS max, sum(sum) AS sum, sum(count) AS count, sum(sum) / sum(count)::float8 AS avg,
              ${last} AS last
         FROM (${parts.join(' UNION ALL ')}) p
        GROUP BY device_id, metric, bucket
        ORDER BY device_id, metric, bucket`,
      params,
    );
    return rows.map((r) => {
      const values = {} as Record<AggregationKind, number>;
      for (const kind of ['min', 'max', 'avg', 'sum', 'last'] as const) values[kind] = Number(r[kind]);
      values.count = Number(r.count);
      return { deviceId: r.device_id, metric: r.metric, bucket: { start: r.bucket, count: BigInt(r.count), values } };
    });
  }

  async points(query: PointsQuery): Promise<PointsPage> {
    const a = query.after;
    const { rows } = await this.pool.query(
      `SELECT device_id, metric, time, message_id, point_index, number_value, bool_value, string_value FROM points
        WHERE tenant_id = $1 AND device_id = $2 AND time >= $3 AND time < $4
          AND (cardinality($5::text[]) = 0 OR metric = ANY($5))
          AND ($6::timestamptz IS NULL OR (time, metric, message_id, point_index) > ($6, $7, $8, $9))
        ORDER BY time, metric, message_id, point_index
        LIMIT $10`,
      [query.tenantId, query.deviceId, query.start, query.end, query.metrics, a?.time ?? null, a?.metric ?? '', a?.messageId ?? '', a?.pointIndex ?? 0, query.limit + 1],
    );
    const more = rows.length > query.limit;
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    return {
      points: page.map((r) => ({ deviceId: r.device_id, metric: r.metric, time: r.time, value: valueOf(r) })),
      next: more && last ? { time: last.time, metric: last.metric, messageId: last.message_id, pointIndex: last.point_index } : undefined,
    };
  }

  async dropBefore(before: Date): Promise<{ removed: string[] }> {
    const { rows } = await this.pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE p.relname = 'points' AND n.nspname = current_schema()`,
    );
    const removed: string[] = [];
    for (const { name } of rows) {
      const m = PARTITION_NAME.exec(name);
      if (!m) continue;
      const end = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + DAY_MS;
      if (end > before.getTime()) continue;
      await this.pool.query(`DROP TABLE IF EXISTS ${name}`);
      this.knownPartitions.delete(name);
      removed.push(name);
    }
    await this.pool.query('DELETE FROM latest_points WHERE time < $1', [before]);
    return { removed };
  }

  async deleteTenantBefore(tenantId: string, before: Date, chunkSize = 10_000): Promise<number> {
    let total = 0;
    for (;;) {
      const { rowCount } = await this.pool.query(
        `DELETE FROM points p USING (
           SELECT tenant_id, device_id, metric, time, message_id, point_index FROM points
            WHERE tenant_id = $1 AND time < $2 LIMIT $3) d
          WHERE p.tenant_id = d.tenant_id AND p.device_id = d.device_id AND p.metric = d.metric
            AND p.time = d.time AND p.message_id = d.message_id AND p.point_index = d.point_index`,
        [tenantId, before, chunkSize],
      );
      total += rowCount ?? 0;
      if (!rowCount || rowCount < chunkSize) break;
    }
    await this.pool.query('DELETE FROM latest_points WHERE tenant_id = $1 AND time < $2', [tenantId, before]);
    return total;
  }

  async dropRollupsBefore(before: Date, chunkSize = 50_000): Promise<number> {
    let total = 0;
    for (;;) {
      // Chunked, so that a long-idle retention round does not hold one huge transaction.
      const { rowCount } = await this.pool.query(
        `DELETE FROM rollups WHERE ctid = ANY (ARRAY(SELECT ctid FROM rollups WHERE bucket < $1 LIMIT $2))`,
        [before, chunkSize],
      );
      total += rowCount ?? 0;
      if (!rowCount || rowCount < chunkSize) break;
    }
    return total;
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
