import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkHealth, repoRoot } from '@iot-mesh/runtime';
import { waitForReportedPort } from '../../scripts/reported-port';
import { ManagedProcess } from '../../scripts/up-process';
import { sleep, waitFor } from './measure';

/**
 * A child process the bench started (a service, the echo server, a load
 * generator): the up-command's managed process, logging to
 * `<RUN_DIR>/<name>.log` and staying in the bench's process group.
 */
export type BenchProcess = ManagedProcess;

/** A folder for this run's logs and scratch files. */
export const RUN_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-bench-'));

/** How long a stopped process may take before it is killed. */
export const STOP_GRACE_MS = 5000;

/**
 * The grace when stopping the platform's processes: longer while profiling,
 * since node writes a --cpu-prof profile only on a clean exit, and a
 * service killed after 5 s on a loaded machine left none.
 */
function platformGraceMs(): number {
  return process.env.BENCH_PROFILE === '1' ? 60_000 : STOP_GRACE_MS;
}

/** Starts a TypeScript entry point (repository-relative) with node + tsx, logging to a file under {@link RUN_DIR}. */
export async function startNode(name: string, entry: string, env: Record<string, string>, nodeArgs: string[] = [], args: string[] = []): Promise<BenchProcess> {
  const proc = new ManagedProcess(
    {
      name,
      command: process.execPath,
      args: [...nodeArgs, '--import', 'tsx', path.join(repoRoot(), entry), ...args],
      cwd: repoRoot(),
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      detached: false,
    },
    { logsDir: RUN_DIR, runDir: path.join(RUN_DIR, 'run') },
  );
  await proc.start();
  return proc;
}

/** A gRPC service of ours running as its own process. */
export interface ServiceProcess {
  process: BenchProcess;
  /** `127.0.0.1:<port>` */
  address: string;
  port: number;
}

/**
 * Starts one of the services (`services/<name>/src/main.ts`) as a child
 * process with the real runtime and waits until its health check says
 * SERVING (dependencies connected, migrations applied). It binds port 0 and
 * logs the port it bound (at info, so its log level is info).
 */
export async function startService(name: string, env: Record<string, string>, options: { nodeArgs?: string[]; timeoutMs?: number; entry?: string } = {}): Promise<ServiceProcess> {
  const proc = await startNode(name, options.entry ?? `services/${name}/src/main.ts`, { GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', LOG_LEVEL: 'info', ...env }, options.nodeArgs);
  let port = 0;
  let address = '';
  try {
    const timeoutMs = options.timeoutMs ?? 60_000;
    port = await waitForReportedPort(() => proc.output(), 'grpc listening', { timeoutMs, failed: () => (proc.running ? undefined : `${name} exited (${proc.exitDescription})`) });
    address = `127.0.0.1:${port}`;
    await waitFor(
      `${name} to serve`,
      async () => {
        if (!proc.running) throw new Error(`${name} exited (${proc.exitDescription}):\n${proc.tail()}`);
        return (await checkHealth(address, '', 1000).catch(() => 'UNKNOWN')) === 'SERVING';
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    await proc.stop(STOP_GRACE_MS);
    throw new Error(`${(err as Error).message}\n${proc.tail()}`);
  }
  return { process: proc, address, port };
}

/** Stops processes in reverse order, ignoring failures. */
export async function stopAll(processes: Array<BenchProcess | undefined>): Promise<void> {
  for (const p of [...processes].reverse()) await p?.stop(platformGraceMs()).catch(() => undefined);
  await sleep(10);
}
