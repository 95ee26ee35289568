import { commandReplySubject, deviceSubject } from '@iot-mesh/runtime';
import { encodeNatsJwt, newNKey, nkeyFromSeed } from './nkeys';
import type { TenantAccountKeys } from './tenant-accounts';

/** Subjects a device credential may use. */
export interface DevicePermissions {
  publish: string[];
  subscribe: string[];
}

/** How a device connects with a credential: nats-server refuses the other connection type. */
export type DeviceConnectionKind = 'mqtt' | 'nats';

/**
 * Subscriptions nats-server 2.9 makes on behalf of an MQTT client with a
 * QoS 1 subscription (its JetStream consumer delivers to `$MQTT.sub.<id>`);
 * they are checked against the user's permissions. Only MQTT credentials get
 * it (and they cannot connect over plain NATS); it reaches only the tenant's
 * own account.
 */
export const MQTT_INTERNAL_SUBSCRIBE = ['$MQTT.sub.>'];

/** What one device may publish and subscribe to: its own subjects only. */
export function devicePermissions(tenantId: string, deviceId: string): DevicePermissions {
  return {
    publish: [deviceSubject(tenantId, deviceId, 'tel'), deviceSubject(tenantId, deviceId, 'state'), commandReplySubject(tenantId, deviceId)],
    subscribe: [deviceSubject(tenantId, deviceId, 'cmd'), deviceSubject(tenantId, deviceId, 'desired')],
  };
}

/** A freshly minted device user: its JWT and the public key it was issued for. */
export interface MintedDeviceUser {
  token: string;
  publicKey: string;
  /**
   * The user's nkey seed (`SU…`), for a credential minted without
   * `bearer`: the device signs the server's nonce with it, so the JWT alone
   * (which nats-server publishes in `$SYS.ACCOUNT.*.CONNECT`/`DISCONNECT`)
   * does not log in. Secret; unset for a bearer credential.
   */
  seed?: string;
  kind: DeviceConnectionKind;
  permissions: DevicePermissions;
}

/** What to mint. */
export interface DeviceUserRequest {
  deviceId: string;
  kind: DeviceConnectionKind;
  /** When the server stops accepting the token; every credential has one, so its revocation can be pruned after it. */
  expireTime: Date;
  /**
   * Whether the JWT alone logs in (default true). MQTT credentials must be
   * bearer: nats-server 2.9's MQTT listener takes the JWT as the password and
   * has no nonce to sign. A NATS credential minted with `false` comes with
   * its seed and needs it to connect (a `.creds` file: `formatCreds`).
   */
  bearer?: boolean;
}

/**
 * Mints a user JWT for one device of the tenant whose account `keys` are,
 * signed by the account's signing key: publish only on its own telemetry,
 * state and command-reply subjects (and one response to each request it
 * received), subscribe only on its own commands and desired state, over one
 * connection type. Bearer unless asked otherwise (then with its seed); an
 * MQTT credential is always bearer, usable as the MQTT password.
 */
export function mintDeviceUser(keys: TenantAccountKeys, request: DeviceUserRequest): MintedDeviceUser {
  const bearer = request.bearer ?? true;
  if (!bearer && request.kind === 'mqtt') throw new Error('an MQTT device credential must be bearer: nats-server 2.9 takes the JWT as the MQTT password, with no nonce to sign');
  const user = newNKey('U');
  const permissions = devicePermissions(keys.tenantId, request.deviceId);
  const token = encodeNatsJwt(
    'user',
    `${keys.tenantId}/${request.deviceId}`,
    user.publicKey,
    {
      pub: { allow: permissions.publish },
      sub: { allow: request.kind === 'mqtt' ? [...permissions.subscribe, ...MQTT_INTERNAL_SUBSCRIBE] : permissions.subscribe },
      resp: { max: 1, ttl: 0 },
      bearer_token: bearer,
      allowed_connection_types: request.kind === 'mqtt' ? ['MQTT'] : ['STANDARD'],
      issuer_account: keys.account.publicKey,
      subs: -1,
      data: -1,
      payload: -1,
    },
    keys.signer,
    { exp: request.expireTime },
  );
  return { token, publicKey: user.publicKey, kind: request.kind, permissions, ...(bearer ? {} : { seed: user.seed }) };
}

/** What a nats.js `authenticator` returns: the user JWT and, for a server nonce, the user's public key and signature of it. */
export interface NatsUserAuth {
  jwt: string;
  nkey?: string;
  sig?: string;
}

/**
 * A nats.js `authenticator` for a device credential: with its seed (a NATS
 * credential) the server's nonce is signed with Node's native Ed25519 (the
 * nats.js signer takes ~35 ms a signature, too slow for a fleet connecting
 * at once); without one, the JWT alone (bearer).
 */
export function deviceUserAuthenticator(credential: { token: string; seed?: string }): (nonce?: string) => NatsUserAuth {
  const user = credential.seed ? nkeyFromSeed(credential.seed, 'U') : undefined;
  return (nonce) =>
    user && nonce ? { jwt: credential.token, nkey: user.publicKey, sig: Buffer.from(user.sign(new TextEncoder().encode(nonce))).toString('base64url') } : { jwt: credential.token };
}
