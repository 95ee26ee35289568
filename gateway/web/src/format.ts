import type { Timestamp } from '@bufbuild/protobuf/wkt';
import { timestampDate } from '@bufbuild/protobuf/wkt';

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
