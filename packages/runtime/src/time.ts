/** The one conversion between `google.protobuf.Duration` / `Timestamp` and milliseconds. */

/** A `google.protobuf.Duration` as ts-proto generates it (int64 seconds as bigint). */
export interface DurationValue {
  seconds: bigint;
  nanos: number;
}

/** Milliseconds of a Duration (sub-millisecond nanos are dropped); undefined when the field is unset. */
export function durationToMs(d: DurationValue | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.trunc(d.nanos / 1e6);
}

/** A Duration of `ms` milliseconds (whole milliseconds; negative values keep one sign throughout). */
export function msToDuration(ms: number): DurationValue {
  const whole = Math.trunc(ms);
  const seconds = Math.trunc(whole / 1000);
  return { seconds: BigInt(seconds), nanos: (whole - seconds * 1000) * 1e6 };
}

/** Milliseconds since the epoch of a Timestamp (ts-proto maps Timestamp to Date); undefined when unset. */
export function timestampToMs(t: Date | undefined): number | undefined {
  return t ? t.getTime() : undefined;
}
