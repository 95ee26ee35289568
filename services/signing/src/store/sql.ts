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

/** `ORDER BY` of every create-time-ordered list. */
export const PAGE_ORDER = `ORDER BY ${PAGE_KEY}`;

/** The ` AND …` condition of rows after `cursor` (nothing without one); pushes its parameters. */
export function after(cursor: Cursor | undefined, params: unknown[]): string {
  if (!cursor) return '';
  params.push(cursor[0], cursor[1]);
  return ` AND (${PAGE_KEY}) > ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
}
