import { errors, FieldViolation } from './errors';

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
