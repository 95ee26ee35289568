import { InvalidArgumentError } from 'commander';

/*
 * Parsers of option values. They throw commander's InvalidArgumentError so a
 * malformed value is a usage error (exit code 1) reported before anything is
 * sent, naming the option.
 */

/** Adds one `key=value` label to those already given (`--label a=1 --label b=2`); refuses a value without `=` or with an empty key. */
export function collectLabel(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`expected key=value, got ${JSON.stringify(value)}`);
  const key = value.slice(0, at).trim();
  if (!key) throw new InvalidArgumentError(`the key of ${JSON.stringify(value)} is empty`);
  return { ...previous, [key]: value.slice(at + 1) };
}

/** Collects a repeatable option into a list (`--metric a --metric b`, or `--metric a,b`). */
export function collectList(value: string, previous: string[] | undefined): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('is empty');
  return [...(previous ?? []), ...items];
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a duration such as `500ms`, `30s`, `15m`, `24h`, `7d` (also combined: `1h30m`). */
export function parseDuration(value: string): number {
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) {
    throw new InvalidArgumentError(`expected a duration such as 30s, 15m, 24h, 7d, got ${JSON.stringify(value)}`);
  }
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * UNIT_MS[unit], 0);
}

/** A positive whole number. */
export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive whole number, got ${JSON.stringify(value)}`);
  return n;
}

/** A number (thresholds). */
export function parseNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * A point in time: `now`, an ISO 8601 time (`2026-11-30T12:00:00Z`, a date
 * alone is midnight UTC), or a duration meaning that long ago (`15m`, `24h`,
 * `7d`).
 */
export function parseTime(value: string, now = Date.now()): Date {
  if (value === 'now') return new Date(now);
  if (/^\d+(?:\.\d+)?(ms|s|m|h|d)/.test(value)) return new Date(now - parseDuration(value));
  const ms = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(ms)) {
    throw new InvalidArgumentError(`expected now, an ISO 8601 time or a duration ago (24h), got ${JSON.stringify(value)}`);
  }
  return new Date(ms);
}

/**
 * The command-line names of a generated enum: `enumChoices(DeviceStatus,
 * 'DEVICE_STATUS_')` → `{ online: 1, offline: 2 }` (UNSPECIFIED and
 * UNRECOGNIZED are never offered).
 */
export function enumChoices<E extends Record<string, string | number>>(enumObject: E, prefix: string): Record<string, E[keyof E]> {
  const choices: Record<string, E[keyof E]> = {};
  for (const [name, value] of Object.entries(enumObject)) {
    if (typeof value !== 'number' || !name.startsWith(prefix) || name.endsWith('_UNSPECIFIED')) continue;
    choices[name.slice(prefix.length).toLowerCase().replace(/_/g, '-')] = value as E[keyof E];
  }
  return choices;
}

/** The command-line name of an enum value (`DEVICE_STATUS_ONLINE` → `online`); empty for UNSPECIFIED. */
export function enumLabel(jsonName: string, prefix: string): string {
  if (jsonName.endsWith('_UNSPECIFIED')) return '';
  return jsonName.startsWith(prefix) ? jsonName.slice(prefix.length).toLowerCase().replace(/_/g, '-') : jsonName.toLowerCase();
}
