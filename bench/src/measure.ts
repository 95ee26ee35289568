import fs from 'node:fs';

/** Latency samples in milliseconds, with percentiles computed on demand. */
export class Latencies {
  private values = new Float64Array(1024);
  private length = 0;
  private sorted = true;

  add(ms: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = ms;
    this.sorted = false;
  }

  get count(): number {
    return this.length;
  }

  /** The p-th percentile (0–100), nearest-rank; NaN when empty. */
  percentile(p: number): number {
    if (this.length === 0) return NaN;
    if (!this.sorted) {
      this.values.subarray(0, this.length).sort();
      this.sorted = true;
    }
    const rank = Math.min(this.length - 1, Math.max(0, Math.ceil((p / 100) * this.length) - 1));
    return this.values[rank];
  }

  get max(): number {
    return this.percentile(100);
  }

  summary(): { count: number; p50: number; p95: number; p99: number; max: number } {
    return { count: this.count, p50: this.percentile(50), p95: this.percentile(95), p99: this.percentile(99), max: this.max };
  }
}

/** Milliseconds since an arbitrary origin, with sub-millisecond resolution. */
export function nowMs(): number {
  return performance.now();
}

/** Resident memory of a process: current and peak (kB from /proc, as bytes); undefined when it is gone. */
export function processMemory(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, seconds) a process has used so far; undefined when it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the command name.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Samples a value periodically and keeps its maximum (e.g. the memory of a process during a run). */
export class PeakSampler {
  readonly peaks = new Map<string, number>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly probes: Record<string, () => number | undefined>, intervalMs = 250) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): void {
    for (const [name, probe] of Object.entries(this.probes)) {
      const v = probe();
      if (v !== undefined && v > (this.peaks.get(name) ?? -Infinity)) this.peaks.set(name, v);
    }
  }

  stop(): Map<string, number> {
    clearInterval(this.timer);
    this.sample();
    return this.peaks;
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` until it returns true, or throws after `timeoutMs` naming `what`. */
export async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 200): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Runs `worker` with `concurrency` calls in flight for `durationMs` (closed
 * loop: each slot starts its next call when the previous one ends) and
 * records every call's latency. Errors are counted, not thrown.
 */
export async function closedLoop(concurrency: number, durationMs: number, call: () => Promise<unknown>): Promise<{ latencies: Latencies; seconds: number; errors: number; firstError?: string }> {
  const latencies = new Latencies();
  let errors = 0;
  let firstError: string | undefined;
  const started = nowMs();
  const until = started + durationMs;
  const slot = async () => {
    while (nowMs() < until) {
      const t = nowMs();
      try {
        await call();
        latencies.add(nowMs() - t);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, slot));
  return { latencies, seconds: (nowMs() - started) / 1000, errors, firstError };
}
