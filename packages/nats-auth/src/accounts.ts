import crypto from 'node:crypto';
import { RevocationList } from '@nats-io/jwt';
import { UNLIMITED_ACCOUNT_LIMITS } from './account-limits';
import { encodeNatsJwt, formatCreds, newNKey, NKey } from './nkeys';
import { platformAccountLinks, TenantAccountRef } from './tenant-accounts';

/**
 * The decentralised-JWT world of one platform, in one place: the operator
 * (whose identity key only signs the operator JWT; account JWTs are signed by
 * an operator signing key), the system account, the platform account where
 * the services connect, and one account per tenant (`tenant-accounts.ts`).
 * The setup script, the test helpers and the device service all build their
 * JWTs here, so an account JWT re-issued by the device service has the same
 * limits, exports and imports as the one the server was started with.
 */

/** Name of the platform account in its JWT. */
export const APP_ACCOUNT_NAME = 'IOT';
/** Name of the system account in its JWT. */
export const SYSTEM_ACCOUNT_NAME = 'SYS';

/**
 * Builds the JWT of the platform account, signed by an operator signing key:
 * its exports let tenant accounts deliver device traffic into it, its imports
 * reach each tenant's device commands and desired state (`tenants`), and
 * `revocations` holds credentials revoked in it.
 */
export function encodeAppAccount(signer: NKey, account: string, tenants: TenantAccountRef[] = [], revocations: RevocationList = {}): string {
  const { exports, imports } = platformAccountLinks(account, tenants);
  return encodeNatsJwt(
    'account',
    APP_ACCOUNT_NAME,
    account,
    { limits: UNLIMITED_ACCOUNT_LIMITS, exports, ...(imports.length > 0 ? { imports } : {}), ...(Object.keys(revocations).length > 0 ? { revocations } : {}) },
    signer,
  );
}

/** Builds the JWT of the system account. */
export function encodeSystemAccount(signer: NKey, system: string): string {
  return encodeNatsJwt('account', SYSTEM_ACCOUNT_NAME, system, { limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } }, signer);
}

/** Publish/subscribe allow-lists of a NATS user. */
export interface UserPermissions {
  pub: { allow?: string[] };
  sub: { allow?: string[] };
}

/**
 * What the device service's system-account user may do, and nothing else of
 * `$SYS`: push and look up account JWTs, ask the servers for their
 * connections, and hear connect and disconnect events.
 */
export const DEVICE_SYSTEM_PERMISSIONS: UserPermissions = {
  pub: { allow: ['$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE', '$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP', '$SYS.REQ.SERVER.PING.CONNZ'] },
  sub: { allow: ['$SYS.ACCOUNT.*.CONNECT', '$SYS.ACCOUNT.*.DISCONNECT', '_INBOX.>'] },
};

/** A `.creds` file body (user JWT + seed) for a user of `account` with `permissions` (default: all). */
export function fullAccessCreds(account: NKey, name: string, permissions: UserPermissions = { pub: {}, sub: {} }): string {
  const user = newNKey('U');
  const jwt = encodeNatsJwt('user', name, user.publicKey, { ...permissions, subs: -1, data: -1, payload: -1 }, account);
  return formatCreds(jwt, user);
}

/** Everything a platform's NATS needs, freshly generated. */
export interface NatsOperatorSetup {
  /** The operator identity seed: signs the operator JWT only; stays with the setup. */
  operatorSeed: string;
  /** An operator signing key (listed in the operator JWT): signs account JWTs (the device service's DEVICE_NATS_OPERATOR_SIGNING_SEED). */
  operatorSigningSeed: string;
  operatorJwt: string;
  systemAccount: string;
  systemAccountJwt: string;
  /** Creds of the device service's system-account user ({@link DEVICE_SYSTEM_PERMISSIONS}): account claim updates, connections, connect events. */
  systemCreds: string;
  /** Public key of the platform account, where the services connect. */
  appAccount: string;
  /** Identity seed of the platform account: signs the services' user only; stays with the setup. */
  appAccountSeed: string;
  appAccountJwt: string;
  /** Creds of the platform services' user in the platform account. */
  serviceCreds: string;
  /** Secret the tenant accounts' keys are derived from (DEVICE_NATS_TENANT_KEY_SECRET). */
  tenantKeySecret: string;
}

/** Generates an operator (with a signing key), the system account and the platform account with their users. */
export function generateOperatorSetup(operatorName = 'iot-mesh'): NatsOperatorSetup {
  const operator = newNKey('O');
  const signing = newNKey('O');
  const system = newNKey('A');
  const app = newNKey('A');
  return {
    operatorSeed: operator.seed,
    operatorSigningSeed: signing.seed,
    operatorJwt: encodeNatsJwt('operator', operatorName, operator.publicKey, { system_account: system.publicKey, signing_keys: [signing.publicKey] }, operator),
    systemAccount: system.publicKey,
    systemAccountJwt: encodeSystemAccount(signing, system.publicKey),
    systemCreds: fullAccessCreds(system, 'iot-device-system', DEVICE_SYSTEM_PERMISSIONS),
    appAccount: app.publicKey,
    appAccountSeed: app.seed,
    appAccountJwt: encodeAppAccount(signing, app.publicKey),
    serviceCreds: fullAccessCreds(app, 'iot-services'),
    tenantKeySecret: crypto.randomBytes(32).toString('base64url'),
  };
}

/** What {@link updateAccountClaims} needs of a NATS connection (a system-account user's). */
export interface ClaimsRequester {
  request(subject: string, data: Uint8Array, options: { timeout: number }): Promise<{ data: Uint8Array }>;
}

/**
 * Pushes an account JWT to the NATS servers through a system-account user
 * (`$SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE`); resolves once a server
 * stored it (a full resolver), throws with the server's reason otherwise.
 */
export async function updateAccountClaims(system: ClaimsRequester, account: string, jwt: string, timeoutMs = 5000): Promise<void> {
  const reply = await system.request(`$SYS.REQ.ACCOUNT.${account}.CLAIMS.UPDATE`, new TextEncoder().encode(jwt), { timeout: timeoutMs });
  const body = JSON.parse(new TextDecoder().decode(reply.data)) as { data?: { code?: number }; error?: { code?: number; description?: string } };
  if (body.error || body.data?.code !== 200) {
    throw new Error(`account claims update refused: ${body.error?.description ?? JSON.stringify(body.data ?? body)}`);
  }
}
