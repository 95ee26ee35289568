import QueryStream from 'pg-query-stream';
import type { Pool } from '@iot-mesh/runtime';
import { valueOf } from './postgres-store';
import type { PointStreamQuery, PointStreamSource, StoredPoint } from './telemetry-store';

/** Rows the cursor fetches per round trip: large enough to amortise the trip, small enough to stay flat. */
const CURSOR_BATCH = 2000;

/** device_id, metric, time (epoch ms), number_value, bool_value, string_value. */
type PointRowColumns = [string, string, number, number | null, boolean | null, string | null];

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
          // Rows as arrays and the time as epoch milliseconds: parsing a million timestamp strings and row objects costs more than the query.
          `SELECT device_id, metric, (extract(epoch FROM time) * 1000)::float8, number_value, bool_value, string_value FROM points
            WHERE tenant_id = $1 AND device_id = ANY($2) AND time >= $3 AND time < $4
              AND (cardinality($5::text[]) = 0 OR metric = ANY($5))
            ORDER BY device_id, metric, time, message_id, point_index`,
          [query.tenantId, query.deviceIds, query.start, query.end, query.metrics],
          { batchSize: CURSOR_BATCH, rowMode: 'array' },
        ),
      );
      let batch: StoredPoint[] = [];
      for await (const row of stream as AsyncIterable<PointRowColumns>) {
        batch.push({ deviceId: row[0], metric: row[1], time: new Date(row[2]), value: valueOf({ number_value: row[3], bool_value: row[4], string_value: row[5] }) });
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
