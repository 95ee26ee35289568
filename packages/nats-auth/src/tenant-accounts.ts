import type { Export, Import, OperatorLimits, RevocationList } from '@nats-io/jwt';
import { ALL_COMMAND_REPLIES, ALL_STATE, ALL_TELEMETRY, isSubjectToken } from '@iot-mesh/runtime';
import { UNLIMITED_ACCOUNT_LIMITS } from './account-limits';
import { deriveNKey, encodeNatsJwt, NKey } from './nkeys';

/**
 * One NATS account per tenant: its devices connect there, so MQTT sessions,
 * retained messages and client ids (kept per account by nats-server) and every
 * subject are the tenant's alone. The account reaches the platform account
 * only through these links:
 *
 *   device → platform  the tenant account imports the platform's service exports
 *                      of telemetry, state and command replies, narrowed to
 *                      `iot.<tenant>.…`; the TELEMETRY stream in the platform
 *                      account captures telemetry as if published there.
 *   platform → device  the tenant account exports its devices' `cmd` (requests;
 *                      replies find their way back) and `desired` as services,
 *                      and the platform account imports them.
 *
 * Nothing else crosses: `$JS.API`, `$SYS`, `$MQTT`, `_INBOX`, events and dead
 * letters of the platform stay in the platform account, and another tenant's
 * subjects are in another account. Keys are derived from one secret per
 * tenant (HKDF), so they need no storage; device users are signed by the
 * account's signing key, not its identity key.
 */

/** Platform-to-device channels, as wildcards over every tenant and device. */
const ALL_COMMANDS = 'iot.*.dev.*.cmd';
const ALL_DESIRED = 'iot.*.dev.*.desired';
/** Device-to-platform channels the platform exports for tenant accounts to import. */
const DEVICE_TO_PLATFORM = [
  { name: 'telemetry', subject: ALL_TELEMETRY },
  { name: 'state', subject: ALL_STATE },
  { name: 'command replies', subject: ALL_COMMAND_REPLIES },
];
/** Platform-to-device channels each tenant account exports. */
const PLATFORM_TO_DEVICE = [
  { name: 'commands', subject: ALL_COMMANDS },
  { name: 'desired', subject: ALL_DESIRED },
];

/** A wildcard over every tenant (`iot.*.…`) narrowed to one. */
function ofTenant(tenantId: string, wildcard: string): string {
  if (!isSubjectToken(tenantId)) throw new Error(`tenant ${JSON.stringify(tenantId)} is not a valid subject token`);
  return wildcard.replace(/^iot\.\*\./, `iot.${tenantId}.`);
}

/** The keys of one tenant's account. */
export interface TenantAccountKeys {
  tenantId: string;
  /** The account's identity key (its public key is the account id). */
  account: NKey;
  /** The account's signing key: signs the tenant's device users. */
  signer: NKey;
}

/** A tenant account as the platform account's imports name it. */
export interface TenantAccountRef {
  tenantId: string;
  /** The tenant account's public key. */
  account: string;
}

/** Tenants whose derived keys are kept per secret (the least recently derived go first). */
const KEYS_KEPT = 10_000;
const derivedKeys = new Map<string, Map<string, TenantAccountKeys>>();

/**
 * Derives the keys of `tenantId`'s account from `secret`
 * (DEVICE_NATS_TENANT_KEY_SECRET). Derived once per tenant and kept: every
 * credential minted signs with them, and deriving (HKDF, two key imports)
 * cost ~1 ms a credential, most of a 1,000-device BatchIssueCredentials.
 */
export function tenantAccountKeys(secret: string, tenantId: string): TenantAccountKeys {
  if (!isSubjectToken(tenantId)) throw new Error(`tenant ${JSON.stringify(tenantId)} is not a valid subject token`);
  let kept = derivedKeys.get(secret);
  if (!kept) derivedKeys.set(secret, (kept = new Map()));
  const known = kept.get(tenantId);
  if (known) return known;
  const keys = { tenantId, account: deriveNKey('A', secret, `tenant-account/${tenantId}`), signer: deriveNKey('A', secret, `tenant-signing/${tenantId}/1`) };
  if (kept.size >= KEYS_KEPT) kept.delete(kept.keys().next().value!);
  kept.set(tenantId, keys);
  return keys;
}

/** Per-tenant quotas written into the account JWT, enforced by nats-server. */
export interface TenantAccountLimits {
  /** Live connections of the tenant's devices (-1 = unlimited). */
  connections: number;
  /** JetStream file storage for the tenant's MQTT sessions and retained messages, bytes. */
  mqttStorageBytes: number;
}

/** The platform account's exports and its imports from `tenants`. */
export function platformAccountLinks(_platformAccount: string, tenants: TenantAccountRef[]): { exports: Export[]; imports: Import[] } {
  const exports: Export[] = DEVICE_TO_PLATFORM.map(({ name, subject }) => ({ name: `device ${name}`, subject, type: 'service', response_type: 'Singleton' }));
  const imports: Import[] = tenants.flatMap((t) =>
    PLATFORM_TO_DEVICE.map(({ name, subject }) => ({ name: `${t.tenantId} ${name}`, subject: ofTenant(t.tenantId, subject), account: t.account, type: 'service' as const })),
  );
  return { exports, imports };
}

/**
 * Builds the JWT of a tenant's account, signed by an operator signing key,
 * with its quotas, links to the platform account and revocation list.
 */
export function encodeTenantAccount(operatorSigner: NKey, keys: TenantAccountKeys, platformAccount: string, limits: TenantAccountLimits, revocations: RevocationList = {}): string {
  const { tenantId } = keys;
  const accountLimits: OperatorLimits = {
    ...UNLIMITED_ACCOUNT_LIMITS,
    conn: limits.connections,
    leaf: 0,
    // MQTT keeps sessions and retained messages in JetStream streams of the account.
    mem_storage: 0,
    disk_storage: limits.mqttStorageBytes,
  };
  const imports: Import[] = DEVICE_TO_PLATFORM.map(({ name, subject }) => ({ name: `device ${name}`, subject: ofTenant(tenantId, subject), account: platformAccount, type: 'service' }));
  const exports: Export[] = PLATFORM_TO_DEVICE.map(({ name, subject }) => ({ name: `device ${name}`, subject: ofTenant(tenantId, subject), type: 'service', response_type: 'Singleton' }));
  return encodeNatsJwt(
    'account',
    `tenant ${tenantId}`,
    keys.account.publicKey,
    { limits: accountLimits, imports, exports, signing_keys: [keys.signer.publicKey], ...(Object.keys(revocations).length > 0 ? { revocations } : {}) },
    operatorSigner,
  );
}
