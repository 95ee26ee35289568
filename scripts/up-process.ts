import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** How to start one long-running child of the up-command. */
export interface ProcessSpec {
  /** Short name; also the log file (`<logsDir>/<name>.log`) and pid file name. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run as this user and group (root starting PostgreSQL as `postgres`). */
  uid?: number;
  gid?: number;
  /** The signal that asks for a clean stop; SIGTERM unless the program prefers another. */
  stopSignal?: NodeJS.Signals;
  /**
   * Own process group (default true): a Ctrl-C in the terminal then reaches
   * only the up-command, which stops its children in order. Test runs say
   * false, so a Ctrl-C of jest ends their servers too.
   */
  detached?: boolean;
}

/** Where the up-command keeps logs and pid files. */
export interface ProcessDirs {
  logsDir: string;
  runDir: string;
}

/** Whether a pid belongs to a live process. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function commandLineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

async function waitUntilGone(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/**
 * A child process whose output goes to its own log file. Children run in
 * their own process group, so a Ctrl-C in the terminal reaches only the
 * up-command, which then stops them in reverse start order. A pid file lets
 * the next run stop what a killed up-command left behind.
 */
export class ManagedProcess {
  readonly logFile: string;
  private readonly pidFile: string;
  /** Where this start's output begins in the log file (which keeps earlier runs). */
  private logOffset = 0;
  private child?: ChildProcess;
  private exitInfo?: { code: number | null; signal: NodeJS.Signals | null };
  private readonly exitWaiters: Array<() => void> = [];
  private stopping = false;
  /** Called once if the process exits without having been asked to stop. */
  onUnexpectedExit?: (description: string) => void;

  constructor(readonly spec: ProcessSpec, dirs: ProcessDirs) {
    this.logFile = path.join(dirs.logsDir, `${spec.name}.log`);
    this.pidFile = path.join(dirs.runDir, `${spec.name}.pid`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitInfo === undefined;
  }

  /** How the process ended, for messages: `exit code 1`, `signal SIGKILL`. */
  get exitDescription(): string {
    if (!this.exitInfo) return 'running';
    return this.exitInfo.signal ? `signal ${this.exitInfo.signal}` : `exit code ${this.exitInfo.code}`;
  }

  /**
   * Stops a process that an earlier, killed run left behind (named by the pid
   * file and still running the same program), so its ports are free again.
   * Returns true when there was one.
   */
  async stopLeftover(timeoutMs: number): Promise<boolean> {
    if (!fs.existsSync(this.pidFile)) return false;
    const pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim());
    fs.rmSync(this.pidFile, { force: true });
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return false;
    const program = path.basename(this.spec.command);
    if (!commandLineOf(pid).includes(program)) return false;
    process.kill(pid, this.spec.stopSignal ?? 'SIGTERM');
    if (!(await waitUntilGone(pid, timeoutMs))) {
      process.kill(pid, 'SIGKILL');
      await waitUntilGone(pid, 2000);
    }
    return true;
  }

  /** Spawns the process; resolves once it has a pid (not once it is ready). */
  async start(): Promise<void> {
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    fs.mkdirSync(path.dirname(this.pidFile), { recursive: true });
    const out = fs.openSync(this.logFile, 'a');
    this.logOffset = fs.fstatSync(out).size;
    fs.writeSync(out, `\n--- ${new Date().toISOString()} starting ${this.spec.command} ${this.spec.args.join(' ')}\n`);
    if (this.spec.uid !== undefined) fs.fchownSync(out, this.spec.uid, this.spec.gid ?? -1);
    try {
      const child = spawn(this.spec.command, this.spec.args, {
        cwd: this.spec.cwd,
        env: this.spec.env ?? process.env,
        stdio: ['ignore', out, out],
        detached: this.spec.detached ?? true,
        uid: this.spec.uid,
        gid: this.spec.gid,
      });
      this.child = child;
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        fs.rmSync(this.pidFile, { force: true });
        for (const waiter of this.exitWaiters.splice(0)) waiter();
        if (!this.stopping) this.onUnexpectedExit?.(this.exitDescription);
      });
      fs.writeFileSync(this.pidFile, `${child.pid}\n`);
    } finally {
      fs.closeSync(out);
    }
  }

  /** Resolves when the process has exited (at once if it has). */
  exited(): Promise<void> {
    if (!this.child || this.exitInfo) return Promise.resolve();
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }

  /**
   * Asks the process to stop with its stop signal and waits; kills it after
   * `timeoutMs`. Returns true when it stopped by itself with exit code 0 (or
   * by the stop signal it was sent).
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    const child = this.child;
    if (!child || this.exitInfo) return this.exitedCleanly();
    const signal = this.spec.stopSignal ?? 'SIGTERM';
    child.kill(signal);
    const timedOut = await Promise.race([
      this.exited().then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), timeoutMs).unref()),
    ]);
    if (timedOut) {
      child.kill('SIGKILL');
      await this.exited();
      return false;
    }
    return this.exitedCleanly();
  }

  /** Kills the process and everything in its process group at once (a second Ctrl-C). */
  kill(): void {
    this.stopping = true;
    const pid = this.child?.pid;
    if (!pid || this.exitInfo) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      this.child?.kill('SIGKILL');
    }
  }

  private exitedCleanly(): boolean {
    if (!this.exitInfo) return false;
    return this.exitInfo.code === 0 || this.exitInfo.signal === (this.spec.stopSignal ?? 'SIGTERM');
  }

  /** What the process has logged since it was started (not the earlier runs the file keeps). */
  output(): string {
    try {
      return fs.readFileSync(this.logFile).subarray(this.logOffset).toString('utf8');
    } catch {
      return '';
    }
  }

  /** The last lines of the log file, for start-up failure messages. */
  tail(lines = 20): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
