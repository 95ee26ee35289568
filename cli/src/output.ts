import { stringify } from 'csv-stringify/sync';

/** The output formats every command accepts with `-o/--output`. */
export const OUTPUT_FORMATS = ['table', 'json', 'csv'] as const;

/** One of {@link OUTPUT_FORMATS}. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** One column of a resource's table and CSV output. */
export interface Column<T> {
  header: string;
  value(item: T): string;
}

/** How one kind of resource prints: its columns, and its canonical proto3 JSON (ts-proto `toJSON`). */
export interface View<T> {
  columns: Column<T>[];
  toJson(item: T): unknown;
}

/** Where results go; stdout unless a test or an export says otherwise. */
export interface Out {
  write(text: string): void;
}

const stdout: Out = { write: (text) => void process.stdout.write(text) };

/** A timestamp as ISO 8601, empty when unset. */
export function formatTime(t: Date | undefined): string {
  return t ? t.toISOString() : '';
}

/** Labels as `k=v,k=v` (sorted by key, so output is stable). */
export function formatLabels(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

/** Columns aligned with two spaces between them, header first. */
export function alignedTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** Prints a list: a table with a header row, CSV with a header row, or a JSON array. */
export function printList<T>(format: OutputFormat, view: View<T>, items: T[], out: Out = stdout): void {
  if (format === 'json') return out.write(JSON.stringify(items.map(view.toJson), null, 2) + '\n');
  const headers = view.columns.map((c) => c.header);
  const rows = items.map((item) => view.columns.map((c) => c.value(item)));
  out.write(format === 'csv' ? stringify([headers, ...rows]) : alignedTable(headers, rows));
}

/** Prints one resource: `FIELD  value` lines as a table, one CSV row with a header, or a JSON object. */
export function printOne<T>(format: OutputFormat, view: View<T>, item: T, out: Out = stdout): void {
  if (format === 'json') return out.write(JSON.stringify(view.toJson(item), null, 2) + '\n');
  if (format === 'csv') return printList(format, view, [item], out);
  const width = Math.max(...view.columns.map((c) => c.header.length));
  out.write(view.columns.map((c) => `${c.header.padEnd(width)}  ${c.value(item)}`.trimEnd()).join('\n') + '\n');
}

/** Prints a confirmation (`deleted device pump-1`) in table/CSV mode, or `{}`-shaped JSON for scripts. */
export function printDone(format: OutputFormat, message: string, json: unknown, out: Out = stdout): void {
  out.write(format === 'json' ? JSON.stringify(json, null, 2) + '\n' : `${message}\n`);
}
