import { waitUntil } from './up-wait';

/**
 * What a process says when it has bound its port: the `msg` a pino JSON line
 * starts with (its `port` field is read), or a pattern whose first group is
 * the port (for programs of others, such as Prometheus' `msg="Listening on"
 * address=127.0.0.1:<port>`).
 */
export type PortReport = string | RegExp;

/**
 * The port of the first report in `log`, or undefined. Our processes bind
 * port 0 when told to and log what they bound: the runtime `grpc listening`
 * and `metrics at /metrics`, signing `http listening`, the gateway `gateway
 * listening`, the bench's echo server `grpc listening`.
 */
export function reportedPort(log: string, report: PortReport): number | undefined {
  if (report instanceof RegExp) {
    const match = report.exec(log);
    return match ? Number(match[1]) : undefined;
  }
  for (const line of log.split('\n')) {
    if (!line.includes(report)) continue;
    try {
      const entry = JSON.parse(line) as { msg?: unknown; port?: unknown };
      if (typeof entry.msg === 'string' && entry.msg.startsWith(report) && typeof entry.port === 'number') return entry.port;
    } catch {
      // Not a JSON line (a stack trace, tsx's own output): keep looking.
    }
  }
  return undefined;
}

/**
 * Waits until a child's output so far (`read()`: its captured output, or its
 * log file) reports the port it bound, so the child binds port 0 itself
 * instead of being handed one picked and released before it could bind it.
 * Rejects after `timeoutMs`, on abort, or when `failed()` gives a reason (the
 * child exited). The child must log at `info` or lower for the line to appear.
 */
export async function waitForReportedPort(
  read: () => string,
  report: PortReport,
  options: { timeoutMs: number; failed?: () => string | undefined; signal?: AbortSignal },
): Promise<number> {
  let port: number | undefined;
  await waitUntil(`no report of a bound port (${String(report)})`, async () => (port = reportedPort(read(), report)) !== undefined, { intervalMs: 50, ...options });
  return port!;
}

/**
 * A port of a process the up-command started: `configured` itself, or, when
 * that is 0, the port the process bound and reported in its log (which needs
 * its LOG_LEVEL at info or lower). Gives up with the up-command's start
 * timeout, on Ctrl-C, or when the process exits.
 */
export async function reportedPortOf(
  proc: { output(): string; running: boolean; exitDescription: string },
  configured: number,
  report: PortReport,
  ctx: { config: { UP_START_TIMEOUT_MS: number }; signal: AbortSignal },
): Promise<number> {
  if (configured !== 0) return configured;
  return waitForReportedPort(() => proc.output(), report, {
    timeoutMs: ctx.config.UP_START_TIMEOUT_MS,
    signal: ctx.signal,
    failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`),
  });
}
