import type { Timestamp } from '@bufbuild/protobuf/wkt';
import { create } from '@bufbuild/protobuf';
import { timestampDate, TimestampSchema } from '@bufbuild/protobuf/wkt';

/** A timestamp as local date and time, or a dash. */
export function formatTime(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toLocaleString() : '—';
}

/** Seconds since the epoch, as charts take them. */
export function epochSeconds(ts: Timestamp | undefined): number {
  return ts ? Number(ts.seconds) + ts.nanos / 1e9 : Date.now() / 1000;
}

/** Pretty JSON for state and payloads. */
export function pretty(value: unknown): string {
  return JSON.stringify(value ?? {}, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

/** The entries of a comma-separated field, trimmed, empty ones left out. */
export function commaList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** An expiry `hours` (a form field) from now, or none when the field is empty. */
export function hoursFromNow(hours: string): Timestamp | undefined {
  return hours ? create(TimestampSchema, { seconds: BigInt(Math.floor(Date.now() / 1000 + Number(hours) * 3600)), nanos: 0 }) : undefined;
}
