/**
 * Whether a failed telemetry write is worth retrying as it is (`transient`:
 * the database is away, busy or timed out — nothing is wrong with the rows)
 * or is the rows' own fault (`permanent`: the same rows fail the same way
 * every time, so the writer splits the batch to find them).
 */
export type StoreErrorKind = 'transient' | 'permanent';

/**
 * SQLSTATE classes and codes that say "try again": connection exceptions
 * (08), insufficient resources (53), operator intervention (57P: shutdown,
 * crash, cannot connect now; 57014: statement timeout), serialization
 * failure and deadlock (40001, 40P01), lock not available (55P03), a
 * database not accepting connections (55000, e.g. ALLOW_CONNECTIONS false),
 * and the connection refused by authentication or a missing database (28,
 * 3D: configuration, not data).
 */
const TRANSIENT_SQLSTATE = /^(08|53|57P|28|3D)|^(57014|40001|40P01|55P03|55000)$/;

/** Node's own network error codes (ECONNREFUSED, ETIMEDOUT, EPIPE…). */
const SYSTEM_ERROR = /^E[A-Z]+$/;

/** Messages of connection-level failures that carry no code (pg's "Connection terminated", pool timeouts, MongoDB network errors). */
const CONNECTION_MESSAGE = /connection|connect|timeout|timed out|terminated|socket|network|ECONN/i;

/** The SQLSTATE of a PostgreSQL error, if it is one. */
export function sqlstateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Classifies a telemetry store error (see {@link StoreErrorKind}). */
export function classifyStoreError(err: unknown): StoreErrorKind {
  const sqlstate = sqlstateOf(err);
  if (sqlstate) return TRANSIENT_SQLSTATE.test(sqlstate) ? 'transient' : 'permanent';
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && SYSTEM_ERROR.test(code)) return 'transient';
  const name = (err as Error)?.name ?? '';
  if (/^Mongo(Network|ServerSelection|NotConnected|Pool|Topology)/.test(name)) return 'transient';
  if ((err as { hasErrorLabel?: (l: string) => boolean })?.hasErrorLabel?.('RetryableWriteError')) return 'transient';
  return CONNECTION_MESSAGE.test((err as Error)?.message ?? '') ? 'transient' : 'permanent';
}
