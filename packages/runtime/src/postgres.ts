import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Pool, PoolClient } from 'pg';
import { Logger, redactUrl } from './logger';

export type { Pool, PoolClient };

/** PostgreSQL SQLSTATEs the services act on (a driver error's `code`). */
export const PG_ERROR = { uniqueViolation: '23505', foreignKeyViolation: '23503' } as const;

/** A connection pool whose sessions use `schema` first on the search path. */
export function createPool(url: string, schema: string, log: Logger, max = 10): Pool {
  const pool = new Pool({
    connectionString: url,
    max,
    options: `-c search_path=${schema},public`,
    connectionTimeoutMillis: 5000,
    application_name: `iot-${schema}`,
  });
  // An idle client losing its connection must not crash the process.
  pool.on('error', (err) => log.warn({ err: err.message, db: redactUrl(url) }, 'postgres client error'));
  // Nor one checked out (pg-pool listens only while idle): a server shutting down between two queries of a
  // transaction emitted an unhandled 'error' (57P01) and killed monitoring in the fault suite. The next query
  // fails and the pool drops the client on release (it is no longer queryable).
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** Runs `fn` inside a transaction; commits when it resolves, rolls back when it throws. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** One versioned SQL migration file: `0001_create_devices.sql`. */
export interface Migration {
  file: string;
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

const MIGRATION_FILE = /^(\d{4,})_([a-z0-9_]+)\.sql$/;

/** Reads the migrations of a folder, ordered by version. */
export function readMigrations(dir: string): Migration[] {
  if (!fs.existsSync(dir)) return [];
  const migrations = fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = MIGRATION_FILE.exec(file);
      if (!match) throw new Error(`migration file ${file} must be named NNNN_name.sql`);
      const sql = fs.readFileSync(path.join(dir, file), 'utf8');
      return { file, version: Number(match[1]), name: match[2], sql, checksum: crypto.createHash('sha256').update(sql).digest('hex') };
    })
    .sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i].version === migrations[i - 1].version) throw new Error(`two migrations have version ${migrations[i].version}`);
  }
  return migrations;
}

/**
 * Applies the migrations of `dir` that `schema` has not seen, each in its own
 * transaction, under an advisory lock so concurrent replicas do not race.
 * Refuses to run when a migration that was already applied has been edited.
 * Returns the versions applied now.
 */
export async function migrate(pool: Pool, schema: string, dir: string, log: Logger): Promise<number[]> {
  const migrations = readMigrations(dir);
  const client = await pool.connect();
  const lockKey = crypto.createHash('sha256').update(`iot-migrate:${schema}`).digest().readInt32BE(0);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [lockKey]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS "${schema}".schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ version: number; checksum: string }>(`SELECT version, checksum FROM "${schema}".schema_migrations`);
    const applied = new Map(rows.map((r) => [r.version, r.checksum]));
    const done: number[] = [];
    for (const migration of migrations) {
      const checksum = applied.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(`migration ${migration.file} of schema ${schema} was edited after it was applied; add a new migration instead`);
        }
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(`SET LOCAL search_path TO "${schema}", public`);
        await client.query(migration.sql);
        await client.query(`INSERT INTO "${schema}".schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`migration ${migration.file} failed: ${(err as Error).message}`, { cause: err });
      }
      log.info({ schema, version: migration.version, name: migration.name }, 'migration applied');
      done.push(migration.version);
    }
    return done;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [lockKey]).catch(() => undefined);
    client.release();
  }
}
