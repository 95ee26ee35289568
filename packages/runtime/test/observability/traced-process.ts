import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { repoPath } from '../../src/repo-paths';
import { PortReport, waitForReportedPort } from '../../../../scripts/reported-port';
import { testServiceEnv } from '../../../../testing/test-services';

/** The side-effect entry every traced process loads first. */
export const TRACING_ENTRY = repoPath('packages', 'runtime', 'src', 'observability', 'tracing-entry.ts');

/** A TypeScript entry point run in its own Node process with tracing, as production runs the built JavaScript. */
export interface TracedProcess {
  child: ChildProcess;
  /** stdout so far (pino JSON lines). */
  output(): string;
  /** The port the process reported (default its `grpc listening` line: it binds port 0 and logs what it bound); rejects if it exits first. */
  reportedPort(report?: PortReport): Promise<number>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
}

/**
 * Starts `node --require tsx/cjs --require <tracing-entry> <script> [args]`
 * with the test run's PostgreSQL, Redis and NATS (testing/test-services.ts)
 * and the given environment.
 */
export function startTracedProcess(script: string, environment: Record<string, string>, args: string[] = []): TracedProcess {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', '--require', TRACING_ENTRY, script, ...args], {
    cwd: repoPath(),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...testServiceEnv(), ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`${path.basename(script)} exited ${code}:\n${stderr}\n`);
      resolve(code);
    }),
  );
  return {
    child,
    output: () => stdout,
    reportedPort: (report = 'grpc listening') =>
      waitForReportedPort(() => stdout, report, {
        timeoutMs: 60_000,
        failed: () => (child.exitCode !== null || child.signalCode !== null ? `${path.basename(script)} exited (${child.exitCode ?? child.signalCode}):\n${stdout}${stderr}` : undefined),
      }),
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** OTEL_* variables exporting to `endpoint` as OTLP/JSON, quickly. */
export function otelEnv(endpoint: string, serviceName: string): Record<string, string> {
  return {
    OTEL_SERVICE_NAME: serviceName,
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
}
