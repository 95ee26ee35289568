import { FaultKind } from './faults';

/** Counters of a fleet run; every virtual device adds to the same instance. */
export class FleetStats {
  readonly startedAt = Date.now();
  devices = 0;
  online = 0;
  connects = 0;
  reconnects = 0;
  disconnects = 0;
  connectFailures = 0;
  /** Telemetry messages handed to the transport. */
  sent = 0;
  sentPoints = 0;
  sentBytes = 0;
  /** Messages really acknowledged: MQTT QoS 1 PUBACKs; NATS, see `NatsLink` (read by the server on a connection that stayed up). */
  acked = 0;
  /** Sent, unacknowledged: may or may not have arrived (MQTT QoS 0, NATS across a reconnect, failed publishes). */
  unacknowledged = 0;
  stateReports = 0;
  commands = 0;
  desiredUpdates = 0;
  /** Errors by kind: connect, publish, denied (permission violation), other. */
  errors: Record<string, number> = {};
  faults: Partial<Record<FaultKind, number>> = {};
  /** Time (ms) from the first connect attempt until every device had connected once. */
  allConnectedMs?: number;

  error(kind: string): void {
    this.errors[kind] = (this.errors[kind] ?? 0) + 1;
  }

  get errorCount(): number {
    return Object.values(this.errors).reduce((a, b) => a + b, 0);
  }
}

/** A point-in-time copy of the counters, to compute rates between two of them. */
export interface StatsSnapshot {
  at: number;
  sent: number;
  sentPoints: number;
  acked: number;
}

export function snapshot(stats: FleetStats): StatsSnapshot {
  return { at: Date.now(), sent: stats.sent, sentPoints: stats.sentPoints, acked: stats.acked };
}

/** `12,345` */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** `1.2 MB` */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** One progress line: rates since the previous snapshot, totals since the start. */
export function progressLine(stats: FleetStats, previous: StatsSnapshot, current: StatsSnapshot): string {
  const seconds = Math.max(0.001, (current.at - previous.at) / 1000);
  const elapsed = Math.round((current.at - stats.startedAt) / 1000);
  const faults = Object.values(stats.faults).reduce((a, b) => a + (b ?? 0), 0);
  return [
    `${elapsed}s`,
    `online ${stats.online}/${stats.devices}`,
    `msgs ${formatCount((current.sent - previous.sent) / seconds)}/s`,
    `points ${formatCount((current.sentPoints - previous.sentPoints) / seconds)}/s`,
    `acked ${formatCount(stats.acked)}/${formatCount(stats.sent)}`,
    ...(stats.unacknowledged ? [`unacked ${formatCount(stats.unacknowledged)}`] : []),
    `errors ${formatCount(stats.errorCount)}`,
    `reconnects ${formatCount(stats.reconnects)}`,
    ...(faults ? [`faults ${formatCount(faults)}`] : []),
    ...(stats.commands || stats.desiredUpdates ? [`cmds ${stats.commands}`, `desired ${stats.desiredUpdates}`] : []),
  ].join('  ');
}

/** Renders rows as an aligned text table; the first row is the header. */
export function renderTable(rows: string[][]): string {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length)));
  const line = (r: string[]) => r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join('  ');
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** The end-of-run summary table. */
export function summaryTable(stats: FleetStats, endedAt = Date.now()): string {
  const seconds = Math.max(0.001, (endedAt - stats.startedAt) / 1000);
  const rows: string[][] = [
    ['', 'total', 'per second'],
    ['devices', formatCount(stats.devices), ''],
    ['telemetry messages', formatCount(stats.sent), formatCount(stats.sent / seconds)],
    ['points', formatCount(stats.sentPoints), formatCount(stats.sentPoints / seconds)],
    ['bytes', formatBytes(stats.sentBytes), formatBytes(stats.sentBytes / seconds)],
    ['acknowledged', formatCount(stats.acked), formatCount(stats.acked / seconds)],
    ['sent, unacknowledged', formatCount(stats.unacknowledged), ''],
    ['state reports', formatCount(stats.stateReports), ''],
    ['commands answered', formatCount(stats.commands), ''],
    ['desired-state updates', formatCount(stats.desiredUpdates), ''],
    ['connects', formatCount(stats.connects), ''],
    ['reconnects', formatCount(stats.reconnects), ''],
    ['connect failures', formatCount(stats.connectFailures), ''],
  ];
  if (stats.allConnectedMs !== undefined) rows.push(['time to connect all (ms)', formatCount(stats.allConnectedMs), '']);
  for (const [kind, n] of Object.entries(stats.faults)) rows.push([`fault: ${kind}`, formatCount(n ?? 0), '']);
  for (const [kind, n] of Object.entries(stats.errors)) rows.push([`error: ${kind}`, formatCount(n), '']);
  rows.push(['duration (s)', seconds.toFixed(1), '']);
  return renderTable(rows);
}
