import { Client, Pool } from 'pg';

/** Where the rows go: a database URL (a client is opened and closed here), or an open client or pool. */
export type FleetDatabase = string | Pick<Client | Pool, 'query'>;

/** Runs `work` on the given client or pool, or on a client of its own opened on the URL and closed after. */
async function withDatabase(database: FleetDatabase, work: (db: Exclude<FleetDatabase, string>) => Promise<unknown>): Promise<void> {
  if (typeof database !== 'string') {
    await work(database);
    return;
  }
  const client = new Client({ connectionString: database });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

/** The id prefix of every seeded device (`fleet-1` … `fleet-<count>`), so they can be told apart and removed. */
export const FLEET_ID_PREFIX = 'fleet-';

/** The label values the seeded fleet spreads over: `site-0` … `site-9`, `tier-0` … `tier-3`. */
export const FLEET_SITES = 10;
export const FLEET_TIERS = 4;

/**
 * The name of seeded device `n` (1-based): `device ` and a six-digit number,
 * a permutation of 0 … count-1 (7919 is prime, so coprime with any count
 * that is not a multiple of it), so names are unique and not in creation order.
 */
export function fleetDeviceName(n: number, count: number): string {
  return `device ${String((n * 7919) % count).padStart(6, '0')}`;
}

/**
 * Writes `count` device rows for `tenantId` straight into the registry's
 * table (device.devices) in one INSERT … generate_series, then VACUUM
 * ANALYZE (as autovacuum would have by then: it sets the visibility map, so
 * counts can be index-only scans). This is for reading a large fleet, not
 * for creating one: no credentials, no events, no quota. The fleet: ids
 * `fleet-<n>`, names from {@link fleetDeviceName}, type `pump` for every
 * third device and `meter` otherwise, labels `site=site-<n % 10>` and
 * `tier=tier-<n % 4>`, a tenth online, two thirds seen at times spread over
 * the last day (the rest never). Returns the seconds the writing took.
 */
export async function seedDevices(database: FleetDatabase, tenantId: string, count: number): Promise<number> {
  const started = performance.now();
  await withDatabase(database, async (db) => {
    await db.query(
      `INSERT INTO device.devices (tenant_id, id, name, type, labels, status, last_seen_time)
       SELECT $1, $3 || n, 'device ' || lpad(((n * 7919) % $2)::text, 6, '0'), CASE WHEN n % 3 = 0 THEN 'pump' ELSE 'meter' END,
              jsonb_build_object('site', 'site-' || (n % ${FLEET_SITES}), 'tier', 'tier-' || (n % ${FLEET_TIERS})),
              CASE WHEN n % 10 = 0 THEN 'online' ELSE 'offline' END,
              CASE WHEN n % 3 = 2 THEN NULL ELSE now() - ((n * 37) % 86400) * interval '1 second' END
         FROM generate_series(1, $2) AS n`,
      [tenantId, count, FLEET_ID_PREFIX],
    );
    await db.query('VACUUM ANALYZE device.devices');
  });
  return (performance.now() - started) / 1000;
}

/** Removes the devices {@link seedDevices} wrote for `tenantId`. */
export async function removeSeededDevices(database: FleetDatabase, tenantId: string): Promise<void> {
  await withDatabase(database, (db) => db.query(`DELETE FROM device.devices WHERE tenant_id = $1 AND id LIKE $2 || '%'`, [tenantId, FLEET_ID_PREFIX]));
}
