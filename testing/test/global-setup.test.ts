import { connect } from 'nats';
import Redis from 'ioredis';
import { Client } from 'pg';
import { portAnswers } from '../../scripts/up-wait';
import { prepareTestServers } from '../global-setup';
import { TestLauncher } from '../server-launcher';
import { STANDARD_SERVICES, TEST_SERVICE_VARIABLES } from '../test-services';

/** Checks PostgreSQL, Redis and NATS (with JetStream) answer at the URLs. */
async function expectAnswering(urls: { postgres: string; redis: string; nats: string }): Promise<void> {
  const pg = new Client({ connectionString: urls.postgres });
  await pg.connect();
  expect((await pg.query<{ ok: number }>('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  await pg.end();
  const redis = new Redis(urls.redis, { maxRetriesPerRequest: 1 });
  expect(await redis.ping()).toBe('PONG');
  redis.disconnect();
  const nc = await connect({ servers: urls.nats, reconnect: false });
  expect((await (await nc.jetstreamManager()).getAccountInfo()).limits).toBeDefined();
  await nc.close();
}

const urlsFrom = (env: NodeJS.ProcessEnv) => ({ postgres: env.TEST_DATABASE_URL!, redis: env.TEST_REDIS_URL!, nats: env.TEST_NATS_URL! });

describe('the test run\'s servers (testing/global-setup.ts)', () => {
  test('this run\'s PostgreSQL, Redis and NATS answer where TEST_DATABASE_URL, TEST_REDIS_URL and TEST_NATS_URL say', async () => {
    await expectAnswering(urlsFrom(process.env));
  });

  test('IOT_TEST_STANDARD_SERVICES=off starts private servers on ports of their own, and stopping them frees those ports', async () => {
    const saved = { ...process.env };
    let launcher: TestLauncher | undefined;
    try {
      for (const variable of Object.values(TEST_SERVICE_VARIABLES)) delete process.env[variable];
      process.env.IOT_TEST_STANDARD_SERVICES = 'off';
      launcher = await prepareTestServers();
      expect(launcher).toBeDefined();
      const urls = urlsFrom(process.env);
      const ports = Object.values(urls).map((url) => Number(new URL(url).port));
      expect(ports).not.toContain(STANDARD_SERVICES.postgres.port);
      expect(ports).not.toContain(STANDARD_SERVICES.redis.port);
      expect(ports).not.toContain(STANDARD_SERVICES.nats.port);
      expect(process.env.REDIS_URL).toBe(urls.redis);
      await expectAnswering(urls);
      await launcher!.destroy();
      for (const port of ports) expect(await portAnswers(port)).toBe(false);
    } finally {
      await launcher?.destroy();
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  }, 120_000);
});
