import type { Violations } from '@iot-mesh/runtime';
import { DEFAULT_RANGE_MS } from '../domain/telemetry';

/**
 * Resolves a request's time range: end defaults to now, start to a day
 * before end; start must be before end and, when `maxSpanMs` is given, at
 * most that far from it (violations on field `time_range`).
 */
export function resolveTimeRange(v: Violations, range: { start?: Date; end?: Date } | undefined, maxSpanMs?: number): { start: Date; end: Date } {
  const end = range?.end ?? new Date();
  const start = range?.start ?? new Date(end.getTime() - DEFAULT_RANGE_MS);
  v.check(start.getTime() < end.getTime(), 'time_range', 'start must be before end');
  if (maxSpanMs !== undefined) v.check(end.getTime() - start.getTime() <= maxSpanMs, 'time_range', `spans more than ${Math.floor(maxSpanMs / 86_400_000)} days`);
  return { start, end };
}
