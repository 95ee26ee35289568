import type { Pool, PoolClient } from '@iot-mesh/runtime';

/** A connection the repositories run on: the pool, or one client inside a transaction. */
export type Db = Pool | PoolClient;

/** A keyset cursor: the (create_time, id) of the last row of a page, time as ISO 8601. */
export type Cursor = [string, string];

/**
 * Page order and keyset condition "after (create_time, id)". Cursors carry
 * JavaScript dates (milliseconds) while PostgreSQL keeps microseconds, so
 * both order and comparison use the time truncated to milliseconds.
 */
const PAGE_KEY = "date_trunc('milliseconds', create_time), id";

/**
 * One page of a create-time-ordered list: `select` (a query ending in its
 * WHERE conditions, with `params`) restricted to rows after `cursor`, oldest
 * first, at most `limit` rows.
 */
export async function listAfter<T>(db: Db, select: string, params: unknown[], cursor: Cursor | undefined, limit: number, rowOf: (row: any) => T): Promise<T[]> {
  const all = [...params];
  let where = '';
  if (cursor) {
    all.push(cursor[0], cursor[1]);
    where = ` AND (${PAGE_KEY}) > ($${all.length - 1}::timestamptz, $${all.length}::uuid)`;
  }
  all.push(limit);
  const { rows } = await db.query(`${select}${where} ORDER BY ${PAGE_KEY} LIMIT $${all.length}`, all);
  return rows.map(rowOf);
}
