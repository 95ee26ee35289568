import net from 'node:net';
import { CallContext, pageSize, Role, RoleName, roleName, Violations } from '@iot-mesh/runtime';
import { PageRequest } from '../../../../gen/ts/iot/common/v1/common';
import { passwordWeakness } from '../domain/passwords';
import type { RequestOrigin } from '../domain/request-origin';
import type { NewTenantInput } from '../domain/tenants';

/** How handlers learn the client's address. */
export interface OriginOptions {
  /** Take the right-most `x-forwarded-for` address, the one the trusted edge appended (only behind that edge). */
  trustForwardedFor: boolean;
}

const TENANT_NAME = /^[a-z0-9][a-z0-9-]{1,62}$/;
/** Longest email address accepted (RFC 5321's path limit). */
export const EMAIL_MAX_LENGTH = 254;
const TENANT_NAME_MAX_LENGTH = 63;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Checks a (normalised) tenant name. */
function checkTenantName(v: Violations, name: string, field: string): void {
  if (v.required(name, field) && v.maxLength(name, TENANT_NAME_MAX_LENGTH, field)) {
    v.matches(name, TENANT_NAME, field, 'must be 2-63 lower-case letters, digits or dashes, starting with a letter or digit');
  }
}

const isSpace = (c: string): boolean => /\s/.test(c);

/**
 * `local@domain` with no white space, exactly one `@`, and a dot inside the
 * domain (not first or last): what `^[^\s@]+@[^\s@]+\.[^\s@]+$` meant, as one
 * pass over the characters. That pattern backtracks quadratically on
 * `a@....@` (issue 13, finding 4); this check cannot.
 */
export function isEmailAddress(email: string): boolean {
  const at = email.indexOf('@');
  if (at < 1 || email.indexOf('@', at + 1) !== -1) return false;
  const domain = email.slice(at + 1);
  if (!domain.slice(1, -1).includes('.')) return false;
  for (const c of email) if (isSpace(c)) return false;
  return true;
}

/** Checks a (normalised) email address; the length first, so a hostile size never reaches the format check. */
export function checkEmail(v: Violations, email: string, field: string): void {
  if (v.required(email, field) && v.maxLength(email, EMAIL_MAX_LENGTH, field)) {
    v.check(isEmailAddress(email), field, 'must be an email address');
  }
}

/** Checks a password about to be set against the password rules. */
export function checkNewPassword(v: Violations, password: string, email: string, field: string): void {
  if (v.required(password, field)) {
    const weakness = passwordWeakness(password, email);
    if (weakness) v.add(field, weakness);
  }
}

/**
 * Checks and normalises a new tenant with its first admin (Bootstrap and
 * CreateTenant); `nameField` is the request's field of the tenant name.
 */
export function checkNewTenant(
  v: Violations,
  req: { name: string; adminEmail: string; adminPassword: string; adminDisplayName: string },
  nameField: string,
): NewTenantInput {
  const name = normalName(req.name);
  const email = normalEmail(req.adminEmail);
  checkTenantName(v, name, nameField);
  checkEmail(v, email, 'admin_email');
  checkNewPassword(v, req.adminPassword, email, 'admin_password');
  v.maxLength(req.adminDisplayName, 200, 'admin_display_name');
  return { name, email, password: req.adminPassword, displayName: req.adminDisplayName.trim() };
}

/** Checks an id this service issued. */
export function checkId(v: Violations, id: string, field: string): void {
  if (v.required(id, field)) v.matches(id, UUID, field, 'must be an id this service issued (a UUID)');
}

/** The role name of a tenant role; a violation (and undefined) for anything else. */
export function checkRole(v: Violations, role: Role, field: string): RoleName | undefined {
  const name = roleName(role);
  v.check(name !== undefined, field, 'must be ROLE_ADMIN, ROLE_OPERATOR or ROLE_VIEWER');
  return name;
}

/** The page size (default 50, at most 500) and token of a list request. */
export function checkPage(v: Violations, page: PageRequest | undefined): { limit: number; pageToken?: string } {
  v.check((page?.pageSize ?? 0) >= 0, 'page.page_size', 'must not be negative');
  return { limit: pageSize(page?.pageSize, 50, 500), pageToken: page?.pageToken || undefined };
}

/** An email address as stored: trimmed, lower case. */
export const normalEmail = (email: string): string => email.trim().toLowerCase();

/** A tenant name as stored: trimmed, lower case. */
export const normalName = (name: string): string => name.trim().toLowerCase();

/**
 * The client's address without its port: `ipv4:1.2.3.4:5678` → `1.2.3.4`.
 * Behind a trusted edge it is the right-most `x-forwarded-for` entry: the
 * edge appends (or sets) its own socket peer there, while every entry left of
 * it is whatever the client sent. Anything that is not an IP address is
 * ignored, so no client text reaches throttling keys or the audit trail.
 */
export function originOf(ctx: CallContext, options: OriginOptions): RequestOrigin {
  if (options.trustForwardedFor) {
    const values = ctx.metadata.get('x-forwarded-for');
    const last = values.length > 0 ? String(values[values.length - 1]).split(',').pop()!.trim() : '';
    if (net.isIP(last)) return { address: last };
  }
  const peer = ctx.peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(peer);
  if (bracketed) return { address: bracketed[1] };
  const v4 = /^([^:]+):\d+$/.exec(peer);
  return { address: v4 ? v4[1] : peer || 'unknown' };
}
