import path from 'node:path';
import { TwinServiceClient } from '../../../gen/ts/iot/device/v1/twin';
import { checkHealth, DEPENDENCIES_HEALTH_SERVICE, dependencyHealthService, insecureClient, unary } from '../src';
import { startRedis } from '../../../scripts/local-servers';
import { waitForReportedPort } from '../../../scripts/reported-port';
import { waitUntil } from '../../../scripts/up-wait';
import { TestNatsServer } from '../../../testing/nats-server';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { TestLauncher } from '../../../testing/server-launcher';
import { testServiceEnv } from '../../../testing/test-services';

const FIXTURE = path.join(__dirname, 'fixtures', 'echo-service.ts');

jest.setTimeout(120_000);

/** The value of `iot_dependency_up{dependency,required}` on a /metrics page, or undefined. */
function dependencyUp(page: string, dependency: string, required: boolean): number | undefined {
  const line = page.split('\n').find((l) => l.startsWith(`iot_dependency_up{dependency="${dependency}",required="${required}"}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('health tells degraded from not serving', () => {
  let db: TestDatabase;
  let nats: TestNatsServer;
  let launcher: TestLauncher;

  beforeAll(async () => {
    db = await createTestDatabase();
    nats = await TestNatsServer.start();
    launcher = new TestLauncher();
  });
  afterAll(async () => {
    await launcher?.destroy();
    await nats?.stop();
    await db?.drop();
  });

  /** Starts the echo fixture against `redisUrl`; resolves with its gRPC address and metrics port once it logged both. */
  async function startEcho(name: string, redisUrl: string) {
    const service = await launcher.spawn({
      name,
      command: process.execPath,
      args: ['--import', 'tsx', FIXTURE],
      env: {
        ...process.env, ...testServiceEnv(), GRPC_PORT: '0', METRICS_PORT: '0', DATABASE_URL: db.url, NATS_URL: nats.url, REDIS_URL: redisUrl,
        HEALTH_INTERVAL_MS: '200', LOG_LEVEL: 'info',
      },
    });
    const failed = () => (service.running ? undefined : `exited (${service.exitDescription})`);
    const grpcPort = await waitForReportedPort(() => service.output(), 'grpc listening', { timeoutMs: 30_000, failed });
    const metricsPort = await waitForReportedPort(() => service.output(), 'metrics at /metrics', { timeoutMs: 30_000, failed });
    const until = (what: string, probe: () => Promise<boolean>) => waitUntil(what, probe, { timeoutMs: 30_000, failed });
    return { service, address: `127.0.0.1:${grpcPort}`, metricsPort, until };
  }

  it('stays SERVING while only Redis is down, reports it as degraded, and recovers', async () => {
    const redis = await startRedis(launcher, { dir: path.join(launcher.dir, 'redis'), timeoutMs: 20_000 });
    const { service, address, metricsPort, until } = await startEcho('echo', redis.url);
    const metricsPage = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const client = insecureClient(TwinServiceClient, address);
    try {
      await until('SERVING with every dependency up', async () => (await checkHealth(address, DEPENDENCIES_HEALTH_SERVICE)) === 'SERVING');
      expect(await checkHealth(address)).toBe('SERVING');
      let page = await metricsPage();
      expect(dependencyUp(page, 'redis', false)).toBe(1);
      expect(dependencyUp(page, 'postgres', true)).toBe(1);
      expect(dependencyUp(page, 'nats', true)).toBe(1);

      await redis.proc.stop(10_000);
      await until('redis seen down', async () => (await checkHealth(address, dependencyHealthService('redis'))) === 'NOT_SERVING');
      // Degraded, not out: the server and its business services stay SERVING, calls are answered.
      expect(await checkHealth(address)).toBe('SERVING');
      expect(await checkHealth(address, 'iot.device.v1.TwinService')).toBe('SERVING');
      expect(await checkHealth(address, DEPENDENCIES_HEALTH_SERVICE)).toBe('NOT_SERVING');
      expect(await checkHealth(address, dependencyHealthService('postgres'))).toBe('SERVING');
      expect((await unary(client, client.updateDesired, { deviceId: 'deg', desired: { body: 'x' }, expectedVersion: 0n })).twin?.deviceId).toBe('deg');
      page = await metricsPage();
      expect(dependencyUp(page, 'redis', false)).toBe(0);
      expect(dependencyUp(page, 'postgres', true)).toBe(1);
      expect(service.output()).toMatch(/"dependency":"redis","required":false[^\n]*"msg":"dependency unavailable: degraded, still serving"/);

      await startRedis(launcher, { dir: path.join(launcher.dir, 'redis'), port: redis.port, timeoutMs: 20_000 });
      await until('redis seen back', async () => (await checkHealth(address, DEPENDENCIES_HEALTH_SERVICE)) === 'SERVING');
      expect(dependencyUp(await metricsPage(), 'redis', false)).toBe(1);
      expect(service.output()).toMatch(/"dependency":"redis"[^\n]*"msg":"dependency available again"/);
    } finally {
      client.close();
      await service.stop(10_000);
    }
  });

  it('goes NOT_SERVING when a required dependency (NATS) is down', async () => {
    const redis = await startRedis(launcher, { dir: path.join(launcher.dir, 'redis2'), timeoutMs: 20_000 });
    const { service, address, until } = await startEcho('echo-nats', redis.url);
    try {
      await until('SERVING', async () => (await checkHealth(address)) === 'SERVING');
      await nats.kill();
      await until('NOT_SERVING without NATS', async () => (await checkHealth(address)) === 'NOT_SERVING');
      expect(await checkHealth(address, dependencyHealthService('nats'))).toBe('NOT_SERVING');
      expect(service.output()).toMatch(/"dependency":"nats","required":true[^\n]*"msg":"dependency unavailable: not serving"/);
      await nats.restart();
      await until('SERVING again', async () => (await checkHealth(address)) === 'SERVING');
    } finally {
      await service.stop(10_000);
    }
  });
});
