import path from 'node:path';

/** One line of the status table. */
export interface StatusRow {
  /** What runs: `nats`, `postgres`, `signing`… */
  name: string;
  /** `started`, `external` (configured, not started here), `SERVING`, `done`… */
  state: string;
  /** Where to reach it: a URL or host:port. */
  address: string;
  pid?: number;
  /** Log file, or a short remark. */
  detail?: string;
}

/** Renders rows as an aligned plain-text table with a header. */
export function formatStatus(rows: StatusRow[]): string {
  const header = ['COMPONENT', 'STATE', 'ADDRESS', 'PID', 'LOG / DETAIL'];
  const cells = rows.map((r) => [r.name, r.state, r.address, r.pid === undefined ? '-' : String(r.pid), r.detail ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), ...cells.map(line)].join('\n');
}

/** Parses a table printed by {@link formatStatus} back into rows (the up-command's test reads it). */
export function parseStatus(text: string): StatusRow[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith('COMPONENT'));
  if (start < 0) return [];
  const rows: StatusRow[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!line.trim()) break;
    const [name, state, address, pid, ...detail] = line.trim().split(/\s{2,}/);
    rows.push({ name, state, address, pid: pid === '-' ? undefined : Number(pid), detail: detail.join('  ') || undefined });
  }
  return rows;
}

/** A path as the user would type it: relative when under the working directory, absolute otherwise. */
export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}
