import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkHealth, repoRoot } from '@iot-mesh/runtime';
import { waitForReportedPort } from '../../scripts/reported-port';
import { sleep, waitFor } from './measure';

/** A child process the bench started (a service, the echo server, a load generator). */
export class BenchProcess {
  private exited = false;
  exitDescription = '';

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
    /** Where this process's output begins in the log file (a name started again appends to it). */
    private readonly logOffset = 0,
  ) {
    child.once('exit', (code, signal) => {
      this.exited = true;
      this.exitDescription = signal ? `signal ${signal}` : `code ${code}`;
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return !this.exited;
  }

  /** Everything it logged so far. */
  log(): string {
    try {
      return fs.readFileSync(this.logFile).subarray(this.logOffset).toString('utf8');
    } catch {
      return '';
    }
  }

  /** The last lines of its log, for error messages. */
  tail(lines = 20): string {
    return this.log().trim().split('\n').slice(-lines).join('\n');
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await done;
    clearTimeout(timer);
  }
}

/** A folder for this run's logs and scratch files. */
export const RUN_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-bench-'));

/** Starts a TypeScript entry point (repository-relative) with node + tsx, logging to a file under {@link RUN_DIR}. */
export function startNode(name: string, entry: string, env: Record<string, string>, nodeArgs: string[] = [], args: string[] = []): BenchProcess {
  const logFile = path.join(RUN_DIR, `${name}.log`);
  const out = fs.openSync(logFile, 'a');
  const logOffset = fs.fstatSync(out).size;
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', path.join(repoRoot(), entry), ...args], {
    cwd: repoRoot(),
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  return new BenchProcess(name, child, logFile, logOffset);
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
  const proc = startNode(name, options.entry ?? `services/${name}/src/main.ts`, { GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', LOG_LEVEL: 'info', ...env }, options.nodeArgs);
  let port = 0;
  let address = '';
  try {
    const timeoutMs = options.timeoutMs ?? 60_000;
    port = await waitForReportedPort(() => proc.log(), 'grpc listening', { timeoutMs, failed: () => (proc.running ? undefined : `${name} exited (${proc.exitDescription})`) });
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
    await proc.stop();
    throw new Error(`${(err as Error).message}\n${proc.tail()}`);
  }
  return { process: proc, address, port };
}

/** Stops processes in reverse order, ignoring failures. */
export async function stopAll(processes: Array<BenchProcess | undefined>): Promise<void> {
  for (const p of [...processes].reverse()) await p?.stop().catch(() => undefined);
  await sleep(10);
}
