import { decodePageToken, encodePageToken, errors } from '@iot-mesh/runtime';
import type { Cursor } from '../store/sql';

/** One page of a list and the token of the next ('' on the last page). */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** The keyset cursor in a page token made by {@link pageOf}; INVALID_ARGUMENT when the token is not one. */
export function cursorOf(token: string | undefined): Cursor | undefined {
  const cursor = decodePageToken(token);
  if (!cursor) return undefined;
  if (cursor.length !== 2 || typeof cursor[0] !== 'string' || typeof cursor[1] !== 'string' || Number.isNaN(Date.parse(cursor[0]))) {
    throw errors.invalidArgument([{ field: 'page.page_token', description: 'is not a token this server issued' }]);
  }
  return cursor as Cursor;
}

/**
 * The first `limit` of `rows` (fetched as limit + 1, so one more row means
 * another page) and a token with the (time, id) of the last one.
 */
export function pageOf<T extends { id: string }>(rows: T[], limit: number, timeOf: (row: T) => Date): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextPageToken: rows.length > limit && last ? encodePageToken([timeOf(last).toISOString(), last.id]) : '' };
}

/** The page order of rows listed by creation. */
export const byCreateTime = (row: { createTime: Date }): Date => row.createTime;
