import { Algorithms, createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds, fromSeed, KeyPair, OperatorLimits, RevocationList } from '@nats-io/jwt';
import { deviceSubject } from '../../../runtime/src/subjects';

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

/** Decodes a seed and checks it is of the expected kind (`O` operator, `A` account, `U` user). */
export function keyPairFromSeed(seed: string, kind: 'O' | 'A' | 'U'): KeyPair {
  if (!seed.startsWith(`S${kind}`)) throw new Error(`not a${kind === 'A' ? 'n account' : kind === 'O' ? 'n operator' : ' user'} seed`);
  const kp = fromSeed(new TextEncoder().encode(seed));
  if (!kp.getPublicKey().startsWith(kind)) throw new Error('seed does not decode to the expected key kind');
  return kp;
}

/** The seed of a key pair as a string. */
export function seedOf(kp: KeyPair): string {
  return new TextDecoder().decode(kp.getSeed());
}

/** Builds (and signs with the operator key) the JWT of the application account. */
export async function encodeAppAccount(operator: KeyPair, account: KeyPair, revocations: RevocationList = {}): Promise<string> {
  return encodeAccount(
    APP_ACCOUNT_NAME,
    account,
    { limits: UNLIMITED_ACCOUNT_LIMITS, ...(Object.keys(revocations).length > 0 ? { revocations } : {}) },
    { signer: operator, algorithm: Algorithms.v2 },
  );
}

/** Builds the JWT of the system account. */
export async function encodeSystemAccount(operator: KeyPair, system: KeyPair): Promise<string> {
  return encodeAccount(SYSTEM_ACCOUNT_NAME, system, { limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } }, { signer: operator, algorithm: Algorithms.v2 });
}

/** A `.creds` file body (user JWT + seed) for a user with full permissions in `account`. */
export async function fullAccessCreds(account: KeyPair, name: string): Promise<string> {
  const user = createUser();
  const jwt = await encodeUser(name, user, account, { subs: -1, data: -1, payload: -1 }, { algorithm: Algorithms.v2 });
  return new TextDecoder().decode(fmtCreds(jwt, user));
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
export async function generateOperatorSetup(operatorName = 'iot-mesh'): Promise<NatsOperatorSetup> {
  const operator = createOperator();
  const system = createAccount();
  const app = createAccount();
  const operatorJwt = await encodeOperator(operatorName, operator, { system_account: system.getPublicKey() }, { algorithm: Algorithms.v2 });
  return {
    operatorSeed: seedOf(operator),
    operatorJwt,
    systemAccount: system.getPublicKey(),
    systemAccountJwt: await encodeSystemAccount(operator, system),
    systemCreds: await fullAccessCreds(system, 'iot-system'),
    appAccount: app.getPublicKey(),
    appAccountSeed: seedOf(app),
    appAccountJwt: await encodeAppAccount(operator, app),
    serviceCreds: await fullAccessCreds(app, 'iot-services'),
  };
}

/** Subjects a device credential may use. */
export interface DevicePermissions {
  publish: string[];
  subscribe: string[];
}

/**
 * Subscriptions nats-server 2.9 makes on behalf of an MQTT client with a
 * QoS 1 subscription (its JetStream consumer delivers to `$MQTT.sub.<id>`);
 * they are checked against the user's permissions.
 */
export const MQTT_INTERNAL_SUBSCRIBE = ['$MQTT.sub.>'];

/** What one device may publish and subscribe to: its own subjects only. */
export function devicePermissions(tenantId: string, deviceId: string): DevicePermissions {
  return {
    publish: [deviceSubject(tenantId, deviceId, 'tel'), deviceSubject(tenantId, deviceId, 'state'), commandReplySubject(tenantId, deviceId)],
    subscribe: [deviceSubject(tenantId, deviceId, 'cmd'), deviceSubject(tenantId, deviceId, 'desired')],
  };
}

/**
 * Where a device that cannot answer a NATS request (an MQTT client) publishes
 * its `CommandReply`: `iot.<tenant>.dev.<device>.cmd.reply`. NATS clients may
 * simply respond to the request.
 */
export function commandReplySubject(tenantId: string, deviceId: string): string {
  return `${deviceSubject(tenantId, deviceId, 'cmd')}.reply`;
}

/** Wildcard of every device's command reply subject. */
export const ALL_COMMAND_REPLIES = 'iot.*.dev.*.cmd.reply';

/** A freshly minted device user: the bearer JWT and the public key it was issued for. */
export interface MintedDeviceUser {
  token: string;
  publicKey: string;
  permissions: DevicePermissions;
}

/**
 * Mints a bearer user JWT for one device, signed by the application account:
 * publish only on its own telemetry, state and command-reply subjects (and
 * responses to requests it received), subscribe only on its own commands and
 * desired state. Bearer, so it is usable as an MQTT password with no seed.
 */
export async function mintDeviceUser(account: KeyPair, tenantId: string, deviceId: string, expireTime?: Date): Promise<MintedDeviceUser> {
  const user = createUser();
  const permissions = devicePermissions(tenantId, deviceId);
  const token = await encodeUser(
    `${tenantId}/${deviceId}`,
    user,
    account,
    {
      pub: { allow: permissions.publish },
      sub: { allow: [...permissions.subscribe, ...MQTT_INTERNAL_SUBSCRIBE] },
      resp: { max: 1, ttl: 0 },
      bearer_token: true,
      subs: -1,
      data: -1,
      payload: -1,
    },
    { algorithm: Algorithms.v2, ...(expireTime ? { exp: Math.floor(expireTime.getTime() / 1000) } : {}) },
  );
  return { token, publicKey: user.getPublicKey(), permissions };
}
