/**
 * The one place tests learn where PostgreSQL, Redis and NATS are. The jest
 * global setup (testing/global-setup.ts) sets TEST_DATABASE_URL,
 * TEST_REDIS_URL and TEST_NATS_URL for every run: the machine's standard
 * servers when they answer, else private ones it started. Set them yourself
 * to use other servers; IOT_TEST_STANDARD_SERVICES=off makes the setup start
 * private servers even where the standard ones answer.
 */

/** The machine's standard servers (trust auth, user postgres), tried first. */
export const STANDARD_SERVICES = {
  postgres: { port: 5432, url: 'postgres://postgres@127.0.0.1:5432/postgres' },
  redis: { port: 6379, url: 'redis://127.0.0.1:6379' },
  nats: { port: 4222, url: 'nats://127.0.0.1:4222' },
} as const;

/** The variable naming each server for the test files. */
export const TEST_SERVICE_VARIABLES = { postgres: 'TEST_DATABASE_URL', redis: 'TEST_REDIS_URL', nats: 'TEST_NATS_URL' } as const;

/**
 * The server tests create their databases on (its `postgres` database, a
 * superuser), read at each call: a harness that starts its own PostgreSQL
 * (the fault rig) sets TEST_DATABASE_URL after this module may have loaded.
 */
export function testPgAdminUrl(): string {
  return process.env.TEST_DATABASE_URL ?? STANDARD_SERVICES.postgres.url;
}

/** The Redis tests share (each test keeps its keys under its own prefix). */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? STANDARD_SERVICES.redis.url;

/** The open NATS server with JetStream that tests share (private servers come from testing/nats-server.ts). */
export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? STANDARD_SERVICES.nats.url;

/** DATABASE_URL, REDIS_URL and NATS_URL for a service under test, pointing at the test servers (read now, not at import). */
export function testServiceEnv(environment: NodeJS.ProcessEnv = process.env): Record<'DATABASE_URL' | 'REDIS_URL' | 'NATS_URL', string> {
  return {
    DATABASE_URL: environment.TEST_DATABASE_URL ?? STANDARD_SERVICES.postgres.url,
    REDIS_URL: environment.TEST_REDIS_URL ?? STANDARD_SERVICES.redis.url,
    NATS_URL: environment.TEST_NATS_URL ?? STANDARD_SERVICES.nats.url,
  };
}
