import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { ServiceError as GrpcError, status } from '@grpc/grpc-js';
import { TwinServiceClient } from '../../../gen/ts/iot/device/v1/twin';
import { checkHealth, insecureClient, unary } from '../src';
import { TestNatsServer } from '../../../testing/nats-server';
import { freePort } from '../../../testing/ports';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';

const FIXTURE = path.join(__dirname, 'fixtures', 'echo-service.ts');

/** Polls until `probe` returns `expected` (or throws after `timeoutMs`). */
async function eventually<T>(probe: () => Promise<T>, expected: T, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await probe();
      if (last === expected) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`expected ${String(expected)}, last saw ${String(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

jest.setTimeout(180_000);

describe('service process lifecycle', () => {
  let db: TestDatabase;
  let nats: TestNatsServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    nats = await TestNatsServer.start();
  });
  afterAll(async () => {
    await nats.stop();
    await db.drop();
  });

  async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; address: string; output: () => string }> {
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
      env: { ...process.env, GRPC_PORT: String(port), DATABASE_URL: db.url, NATS_URL: nats.url, HEALTH_INTERVAL_MS: '200', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    return { child, address: `127.0.0.1:${port}`, output: () => out };
  }

  it('is NOT_SERVING while a dependency is down and SERVING once it is up', async () => {
    const redisPort = await freePort();
    const { child, address } = await startProcess({ REDIS_URL: `redis://127.0.0.1:${redisPort}` });
    try {
      await eventually(() => checkHealth(address), 'NOT_SERVING');
      // Still not serving a moment later: Redis has not appeared.
      await new Promise((r) => setTimeout(r, 500));
      expect(await checkHealth(address)).toBe('NOT_SERVING');
      const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      try {
        await eventually(() => checkHealth(address), 'SERVING');
      } finally {
        redis.kill('SIGTERM');
        await exitOf(redis);
      }
    } finally {
      child.kill('SIGTERM');
      expect((await exitOf(child)).code).toBe(0);
    }
  });

  it('goes NOT_SERVING when NATS dies and SERVING again when it returns', async () => {
    const { child, address } = await startProcess({});
    try {
      await eventually(() => checkHealth(address), 'SERVING');
      await nats.kill();
      await eventually(() => checkHealth(address), 'NOT_SERVING');
      await nats.restart();
      await eventually(() => checkHealth(address), 'SERVING');
    } finally {
      child.kill('SIGTERM');
      await exitOf(child);
    }
  });

  it('on SIGTERM finishes in-flight calls, refuses new ones and exits 0', async () => {
    const { child, address, output } = await startProcess({ SHUTDOWN_GRACE_MS: '5000' });
    await eventually(() => checkHealth(address), 'SERVING');
    const client = insecureClient(TwinServiceClient, address);
    await unary(client, client.updateDesired, { deviceId: 'slow', desired: { body: 'x' }, expectedVersion: 0n });
    const inFlight = unary(client, client.getTwin, { deviceId: 'slow' }, { deadlineMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    const exited = exitOf(child);
    child.kill('SIGTERM');
    // The call that was running completes normally.
    expect((await inFlight).twin?.deviceId).toBe('slow');
    expect(await exited).toEqual({ code: 0, signal: null });
    const refused = (await unary(client, client.getTwin, { deviceId: 'slow' }, { deadlineMs: 1000 }).catch((e: GrpcError) => e)) as GrpcError;
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(refused.code);
    client.close();
    expect(output()).toContain('"msg":"stopped"');
  });

  it('exits 0 on SIGINT as well', async () => {
    const { child, address } = await startProcess({});
    await eventually(() => checkHealth(address), 'SERVING');
    const exited = exitOf(child);
    child.kill('SIGINT');
    expect(await exited).toEqual({ code: 0, signal: null });
  });
});
