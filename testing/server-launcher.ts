import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ServerLauncher } from '../scripts/local-servers';
import { ManagedProcess, ProcessSpec } from '../scripts/up-process';

/**
 * Runs the servers of a test (or of a whole test run) with the same starters
 * as the up-command (scripts/local-servers.ts): each child logs to
 * `<dir>/logs/<name>.log`, stays in jest's process group (a Ctrl-C ends it
 * too), and `stopAll()` stops them in reverse start order.
 */
export class TestLauncher implements ServerLauncher {
  private readonly procs: ManagedProcess[] = [];
  private readonly dirs: { logsDir: string; runDir: string };

  /** `dir`: the folder the servers' files go in (default: a new temp folder). */
  constructor(readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-servers-'))) {
    this.dirs = { logsDir: path.join(dir, 'logs'), runDir: path.join(dir, 'run') };
  }

  /** Starts a child (not detached) and keeps it for {@link stopAll}. */
  async spawn(spec: ProcessSpec): Promise<ManagedProcess> {
    const proc = new ManagedProcess({ detached: false, ...spec }, this.dirs);
    await proc.start();
    this.procs.push(proc);
    return proc;
  }

  /** Runs a one-off command to its end; throws with its log's last lines unless it exits 0. */
  async run(spec: ProcessSpec): Promise<void> {
    const proc = new ManagedProcess({ detached: false, ...spec }, this.dirs);
    await proc.start();
    await proc.exited();
    if (proc.exitDescription !== 'exit code 0') throw new Error(`${spec.name} failed (${proc.exitDescription}):\n${proc.tail()}`);
  }

  /** Runs `start`; on failure adds the last log lines of every child to the error. */
  async explain<T>(start: () => Promise<T>): Promise<T> {
    try {
      return await start();
    } catch (err) {
      const tails = this.procs.map((p) => `--- ${p.logFile}\n${p.tail()}`).join('\n');
      throw new Error(`${(err as Error).message}\n${tails}`);
    }
  }

  /** Stops every child, newest first (SIGKILL after `timeoutMs`). */
  async stopAll(timeoutMs = 10_000): Promise<void> {
    for (const proc of this.procs.splice(0).reverse()) await proc.stop(timeoutMs);
  }

  /** Stops every child and removes the folder. */
  async destroy(): Promise<void> {
    await this.stopAll();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
