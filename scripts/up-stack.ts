import fs from 'node:fs';
import path from 'node:path';
import { UpConfig } from './up-config';
import { ManagedProcess, ProcessSpec } from './up-process';
import { displayPath, formatStatus, StatusRow } from './up-status';
import { StartAborted } from './up-wait';

/** What a component gets while it starts. */
export interface UpContext {
  config: UpConfig;
  /**
   * Variables handed to every child started after this point. Components
   * add what later ones need: DATABASE_URL, REDIS_URL, NATS_URL, NATS_CREDS…
   */
  env: Record<string, string>;
  /** gRPC addresses of the services started so far, by name (`signing` → `127.0.0.1:50051`). */
  addresses: Record<string, string>;
  /** Aborted by Ctrl-C during start-up; long waits should pass it on. */
  signal: AbortSignal;
  /** Starts a supervised child: own log file, stopped in reverse order on shutdown. */
  spawn(spec: ProcessSpec): Promise<ManagedProcess>;
  /** Runs a one-off command (initdb, a setup step) to its end, output to its log file; throws unless it exits 0. */
  run(spec: ProcessSpec): Promise<void>;
  /** Runs something at shutdown (after the children started later have stopped). */
  onStop(name: string, stop: () => Promise<boolean>): void;
  /** Prints a progress line. */
  say(line: string): void;
}

/** What a started component reports for the status table. */
export interface Started {
  rows: StatusRow[];
  /** Lines printed under the table (URLs, logins). */
  notes?: string[];
}

/** One piece of the local platform. */
export interface Component {
  name: string;
  start(ctx: UpContext): Promise<Started>;
}

interface Stopper {
  name: string;
  stop(): Promise<boolean>;
}

/**
 * Starts `components` in order, prints the status table, waits for Ctrl-C /
 * SIGTERM (or a child dying) and stops everything in reverse order.
 * Resolves with the exit code: 0 after a clean run and stop.
 */
export async function runStack(components: Component[], config: UpConfig, out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  for (const dir of [config.dataDir, config.logsDir, config.runDir, config.secretsDir]) fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(config.secretsDir, 0o700);
  // Servers started as another user (PostgreSQL when we are root) must reach their folders.
  if (process.getuid?.() === 0) fs.chmodSync(config.dataDir, 0o755);

  const stoppers: Stopper[] = [];
  const aborter = new AbortController();
  let failure: string | undefined;
  let wake: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (wake = resolve));
  let signals = 0;

  const requestStop = (reason: string) => {
    if (aborter.signal.aborted) return;
    out(`\n${reason}: stopping everything…`);
    aborter.abort();
    wake();
  };
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals === 1) {
      firstSignalAt = Date.now();
      return requestStop(`${signal} received`);
    }
    // `npm run up` forwards the terminal's Ctrl-C, which reached us too: one press, two signals.
    if (Date.now() - firstSignalAt < 1000) return;
    out(`${signal} again: killing what is left`);
    for (const proc of processes) proc.kill();
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const processes: ManagedProcess[] = [];
  const ctx: UpContext = {
    config,
    env: {},
    addresses: {},
    signal: aborter.signal,
    say: (line) => out(line),
    onStop: (name, stop) => void stoppers.push({ name, stop }),
    async run(spec) {
      const proc = new ManagedProcess(spec, config);
      await proc.start();
      const stopOnAbort = () => void proc.stop(config.UP_STOP_TIMEOUT_MS);
      aborter.signal.addEventListener('abort', stopOnAbort);
      await proc.exited();
      aborter.signal.removeEventListener('abort', stopOnAbort);
      if (aborter.signal.aborted) throw new StartAborted();
      if (proc.exitDescription !== 'exit code 0') throw new Error(`${spec.name} failed (${proc.exitDescription}); last lines of ${proc.logFile}:\n${proc.tail()}`);
    },
    async spawn(spec) {
      const proc = new ManagedProcess(spec, config);
      if (await proc.stopLeftover(config.UP_STOP_TIMEOUT_MS)) out(`  stopped a ${spec.name} left running by an earlier run`);
      proc.onUnexpectedExit = (how) => {
        failure ??= `${spec.name} exited unexpectedly (${how}); see ${displayPath(proc.logFile)}`;
        requestStop(failure);
      };
      await proc.start();
      processes.push(proc);
      stoppers.push({ name: spec.name, stop: () => proc.stop(config.UP_STOP_TIMEOUT_MS) });
      return proc;
    },
  };

  const rows: StatusRow[] = [];
  const notes: string[] = [];
  try {
    for (const component of components) {
      if (aborter.signal.aborted) throw new StartAborted();
      const begun = Date.now();
      out(`starting ${component.name}…`);
      const started = await component.start(ctx);
      rows.push(...started.rows);
      notes.push(...(started.notes ?? []));
      out(`  ${component.name} ready (${((Date.now() - begun) / 1000).toFixed(1)} s)`);
    }
    if (!aborter.signal.aborted) {
      out('');
      out(formatStatus(rows));
      out('');
      for (const note of notes) out(note);
      out(`Data in ${config.dataDir}, logs in ${config.logsDir}`);
      out('iot-mesh is up. Press Ctrl-C to stop everything.');
      await finished;
    }
  } catch (err) {
    if (!(err instanceof StartAborted)) {
      failure ??= (err as Error).message;
      out(`\nstart-up failed: ${failure}`);
      const culprit = processes.find((p) => failure!.includes(p.spec.name) && p.tail());
      if (culprit) out(`last lines of ${culprit.logFile}:\n${culprit.tail()}`);
    }
  }

  let clean = true;
  for (const stopper of stoppers.reverse()) {
    const ok = await stopper.stop().catch(() => false);
    out(`  stopped ${stopper.name}${ok ? '' : ' (not cleanly)'}`);
    clean &&= ok;
  }
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
  out(failure ? 'stopped after a failure.' : clean ? 'all stopped.' : 'stopped, but not every piece stopped cleanly.');
  return failure || !clean ? 1 : 0;
}

/**
 * Starts several components at the same time (they must not depend on each
 * other) and reports them as one step; their rows keep the given order.
 */
export function together(name: string, parts: Component[]): Component {
  return {
    name,
    async start(ctx) {
      const results = await Promise.allSettled(parts.map((part) => part.start(ctx)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const started = results.map((r) => (r as PromiseFulfilledResult<Started>).value);
      return { rows: started.flatMap((s) => s.rows), notes: started.flatMap((s) => s.notes ?? []) };
    },
  };
}
