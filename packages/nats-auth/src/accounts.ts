import { OperatorLimits, RevocationList } from '@nats-io/jwt';
import { encodeNatsJwt, formatCreds, newNKey, NKey } from './nkeys';

/**
 * The decentralised-JWT world of one platform, in one place: the operator,
 * the system account and the application account that holds every tenant's
 * devices and the platform services. The setup script, the test helpers and
 * the device service all build their JWTs here, so an account JWT re-issued
 * by the device service (with revocations) has the same limits as the one
 * the server was started with.
 */

/** Name of the application account in its JWT. */
export const APP_ACCOUNT_NAME = 'IOT';
/** Name of the system account in its JWT. */
export const SYSTEM_ACCOUNT_NAME = 'SYS';

/**
 * Account limits written explicitly: nats-server refuses every connection of an
 * account whose JWT leaves them unset, and MQTT needs JetStream enabled
 * through the flat JetStream limits.
 */
export const UNLIMITED_ACCOUNT_LIMITS: OperatorLimits = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
};

/** Builds (and signs with the operator key) the JWT of the application account. */
export function encodeAppAccount(operator: NKey, account: NKey, revocations: RevocationList = {}): string {
  return encodeNatsJwt(
    'account',
    APP_ACCOUNT_NAME,
    account.publicKey,
    { limits: UNLIMITED_ACCOUNT_LIMITS, ...(Object.keys(revocations).length > 0 ? { revocations } : {}) },
    operator,
  );
}

/** Builds the JWT of the system account. */
export function encodeSystemAccount(operator: NKey, system: NKey): string {
  return encodeNatsJwt('account', SYSTEM_ACCOUNT_NAME, system.publicKey, { limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } }, operator);
}

/** A `.creds` file body (user JWT + seed) for a user with full permissions in `account`. */
export function fullAccessCreds(account: NKey, name: string): string {
  const user = newNKey('U');
  const jwt = encodeNatsJwt('user', name, user.publicKey, { pub: {}, sub: {}, subs: -1, data: -1, payload: -1 }, account);
  return formatCreds(jwt, user);
}

/** Everything a platform's NATS needs, freshly generated. */
export interface NatsOperatorSetup {
  operatorSeed: string;
  operatorJwt: string;
  systemAccount: string;
  systemAccountJwt: string;
  /** Creds of a system-account user: account claim updates and connect events. */
  systemCreds: string;
  appAccount: string;
  appAccountSeed: string;
  appAccountJwt: string;
  /** Creds of the platform services' user in the application account. */
  serviceCreds: string;
}

/** Generates an operator, a system account and the application account with their users. */
export function generateOperatorSetup(operatorName = 'iot-mesh'): NatsOperatorSetup {
  const operator = newNKey('O');
  const system = newNKey('A');
  const app = newNKey('A');
  return {
    operatorSeed: operator.seed,
    operatorJwt: encodeNatsJwt('operator', operatorName, operator.publicKey, { system_account: system.publicKey }, operator),
    systemAccount: system.publicKey,
    systemAccountJwt: encodeSystemAccount(operator, system),
    systemCreds: fullAccessCreds(system, 'iot-system'),
    appAccount: app.publicKey,
    appAccountSeed: app.seed,
    appAccountJwt: encodeAppAccount(operator, app),
    serviceCreds: fullAccessCreds(app, 'iot-services'),
  };
}
