import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { ServiceError as GrpcError, status } from '@grpc/grpc-js';
import { TwinServiceClient } from '../../../gen/ts/iot/device/v1/twin';
import { checkHealth, insecureClient, unary } from '../src';
import { startRedis } from '../../../scripts/local-servers';
import { TestNatsServer } from '../../../testing/nats-server';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { TestLauncher } from '../../../testing/server-launcher';
import { testServiceEnv } from '../../../testing/test-services';

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

  /** Starts the fixture on GRPC_PORT=0 and reads the port it bound from its own log. */
  async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; address: string; output: () => string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
      env: { ...process.env, ...testServiceEnv(), GRPC_PORT: '0', DATABASE_URL: db.url, NATS_URL: nats.url, HEALTH_INTERVAL_MS: '200', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const port = new Promise<number>((resolve, reject) => {
      const onData = (c: Buffer) => {
        out += c.toString();
        const listening = /"port":(\d+)[^\n]*"msg":"grpc listening/.exec(out);
        if (listening) resolve(Number(listening[1]));
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`the fixture exited (${code}) before listening:\n${out}`)));
    });
    return { child, address: `127.0.0.1:${await port}`, output: () => out };
  }

  it('is NOT_SERVING while a dependency is down and SERVING once it is up', async () => {
    // Redis binds its own port first, then stops: the service is pointed at where Redis will come back.
    const launcher = new TestLauncher();
    try {
      const first = await startRedis(launcher, { dir: launcher.dir, timeoutMs: 20_000 });
      await first.proc.stop(10_000);
      const { child, address } = await startProcess({ REDIS_URL: first.url });
      try {
        await eventually(() => checkHealth(address), 'NOT_SERVING');
        // Still not serving a moment later: Redis has not appeared.
        await new Promise((r) => setTimeout(r, 500));
        expect(await checkHealth(address)).toBe('NOT_SERVING');
        await startRedis(launcher, { dir: launcher.dir, port: first.port, timeoutMs: 20_000 });
        await eventually(() => checkHealth(address), 'SERVING');
      } finally {
        child.kill('SIGTERM');
        expect((await exitOf(child)).code).toBe(0);
      }
    } finally {
      await launcher.destroy();
    }
  });

  it('goes NOT_SERVING when NATS dies, stays up, and is SERVING again when NATS returns', async () => {
    const { child, address } = await startProcess({});
    const exited = exitOf(child);
    try {
      await eventually(() => checkHealth(address), 'SERVING');
      await nats.kill();
      await eventually(() => checkHealth(address), 'NOT_SERVING');
      // The loss of NATS is waited out, not fatal: still running, still NOT_SERVING a moment later.
      await new Promise((r) => setTimeout(r, 500));
      expect(child.exitCode).toBeNull();
      expect(await checkHealth(address)).toBe('NOT_SERVING');
      await nats.restart();
      await eventually(() => checkHealth(address), 'SERVING');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toEqual({ code: 0, signal: null });
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
