import { errors, FieldViolation } from './errors';

/**
 * A metric name: letters, digits, '_', '.', '-', at most 128 characters. One pattern for the metrics a
 * device type declares and those monitoring takes from devices and queries, so every declared metric can be sent.
 */
export const METRIC_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Collects field violations of one request so the client learns about all of
 * them at once; {@link Violations.throwIfAny} raises INVALID_ARGUMENT with a
 * `google.rpc.BadRequest` detail.
 */
export class Violations {
  private readonly list: FieldViolation[] = [];

  /** Records a violation of `field` unless `ok` holds. Returns `ok`. */
  check(ok: boolean, field: string, description: string): boolean {
    if (!ok) this.list.push({ field, description });
    return ok;
  }

  /** Records that a required string field is empty. */
  required(value: string | undefined | null, field: string): boolean {
    return this.check(typeof value === 'string' && value.length > 0, field, 'is required');
  }

  /** Records a violation when a string is longer than `max` characters. */
  maxLength(value: string | undefined, max: number, field: string): boolean {
    return this.check(value === undefined || value.length <= max, field, `must be at most ${max} characters`);
  }

  /** Records a violation when a non-empty value does not match `pattern`. */
  matches(value: string | undefined, pattern: RegExp, field: string, description: string): boolean {
    return this.check(!value || pattern.test(value), field, description);
  }

  add(field: string, description: string): void {
    this.list.push({ field, description });
  }

  get count(): number {
    return this.list.length;
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw errors.invalidArgument([...this.list]);
  }
}

/** Clamps a requested page size into [1, max], using `fallback` for 0 or less. */
export function pageSize(requested: number | undefined, fallback = 50, max = 1000): number {
  if (!requested || requested <= 0) return fallback;
  return Math.min(requested, max);
}

/** Encodes a keyset cursor as an opaque page token. */
export function encodePageToken(cursor: unknown[]): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

/** Decodes a page token made by {@link encodePageToken}; INVALID_ARGUMENT when it is not one. */
export function decodePageToken(token: string | undefined, field = 'page.page_token'): unknown[] | undefined {
  if (!token) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(value)) return value;
  } catch {
    // fall through to the error below
  }
  throw errors.invalidArgument([{ field, description: 'is not a token this server issued' }]);
}

/** `deviceTypeId` → `device_type_id`: ts-proto's property names back to the proto field names clients know. */
function protoName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The years a `google.protobuf.Timestamp` may name (its own documented range, inside PostgreSQL's). */
const TIMESTAMP_MIN_MS = Date.UTC(1, 0, 1);
const TIMESTAMP_MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * A violation for every value of a decoded request that no store of the
 * platform can hold: a string (message fields, list items, map keys and
 * values, `Struct` contents) that holds U+0000 — Protobuf allows it, but
 * PostgreSQL can store it neither in `text` nor in `jsonb`, and no name, label
 * or payload of the platform means it — and a timestamp outside
 * 0001-01-01..9999-12-31 (the range `google.protobuf.Timestamp` documents;
 * larger seconds decode to an invalid date). Such a request is refused before
 * any handler runs, instead of failing in the database without naming its field.
 */
export function unstorableValueViolations(request: unknown, limit = 20): FieldViolation[] {
  const found: FieldViolation[] = [];
  const pending: { value: unknown; path: string }[] = [{ value: request, path: '' }];
  const at = (path: string, key: string) => (path ? `${path}.${key}` : key);
  while (pending.length > 0 && found.length < limit) {
    const { value, path } = pending.pop()!;
    if (typeof value === 'string') {
      if (value.includes('\u0000')) found.push({ field: path, description: 'must not contain the NUL character (U+0000)' });
    } else if (value instanceof Date) {
      const ms = value.getTime();
      if (!(ms >= TIMESTAMP_MIN_MS && ms <= TIMESTAMP_MAX_MS)) found.push({ field: path, description: 'must be a time between 0001-01-01 and 9999-12-31' });
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => pending.push({ value: item, path: `${path}[${i}]` }));
    } else if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value) && !(value instanceof Date)) {
      for (const [key, item] of Object.entries(value)) {
        if (key.includes('\u0000')) found.push({ field: at(path, 'key'), description: 'map keys must not contain the NUL character (U+0000)' });
        pending.push({ value: item, path: at(path, protoName(key)) });
      }
    }
  }
  return found;
}
