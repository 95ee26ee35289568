import QueryStream from 'pg-query-stream';
import type { Pool } from '@iot-mesh/runtime';
import { valueOf } from './postgres-store';
import type { PointStreamQuery, PointStreamSource, StoredPoint } from './telemetry-store';

/** Rows the cursor fetches per round trip: large enough to amortise the trip, small enough to stay flat. */
const CURSOR_BATCH = 2000;

interface PointRowColumns {
  device_id: string;
  metric: string;
  time: Date;
  number_value: number | null;
  bool_value: boolean | null;
  string_value: string | null;
}

/**
 * Export reads from the PostgreSQL `points` table through a server-side cursor
 * (pg-query-stream): rows come in batches as the consumer asks for them, in the
 * primary key's order (device, metric, time), so the database walks the index
 * instead of sorting and neither side holds the range in memory.
 */
export class PostgresPointStream implements PointStreamSource {
  constructor(private readonly pool: Pool) {}

  async *streamPoints(query: PointStreamQuery): AsyncIterable<StoredPoint[]> {
    const client = await this.pool.connect();
    let finished = false;
    try {
      const stream = client.query(
        new QueryStream(
          `SELECT device_id, metric, time, number_value, bool_value, string_value FROM points
            WHERE tenant_id = $1 AND device_id = ANY($2) AND time >= $3 AND time < $4
              AND (cardinality($5::text[]) = 0 OR metric = ANY($5))
            ORDER BY device_id, metric, time, message_id, point_index`,
          [query.tenantId, query.deviceIds, query.start, query.end, query.metrics],
          { batchSize: CURSOR_BATCH },
        ),
      );
      let batch: StoredPoint[] = [];
      for await (const row of stream as AsyncIterable<PointRowColumns>) {
        batch.push({ deviceId: row.device_id, metric: row.metric, time: row.time, value: valueOf(row) });
        if (batch.length === CURSOR_BATCH) {
          yield batch;
          batch = [];
        }
      }
      if (batch.length) yield batch;
      finished = true;
    } finally {
      // A cursor abandoned midway (the client went away) leaves the connection mid-protocol: discard it.
      client.release(finished ? undefined : true);
    }
  }
}
