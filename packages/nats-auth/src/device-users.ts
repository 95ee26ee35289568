import { commandReplySubject, deviceSubject } from '@iot-mesh/runtime';
import { encodeNatsJwt, newNKey } from './nkeys';
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

/** A freshly minted device user: the bearer JWT and the public key it was issued for. */
export interface MintedDeviceUser {
  token: string;
  publicKey: string;
  kind: DeviceConnectionKind;
  permissions: DevicePermissions;
}

/** What to mint. */
export interface DeviceUserRequest {
  deviceId: string;
  kind: DeviceConnectionKind;
  /** When the server stops accepting the token; every credential has one, so its revocation can be pruned after it. */
  expireTime: Date;
}

/**
 * Mints a bearer user JWT for one device of the tenant whose account `keys`
 * are, signed by the account's signing key: publish only on its own
 * telemetry, state and command-reply subjects (and one response to each
 * request it received), subscribe only on its own commands and desired
 * state, over one connection type. Bearer, so it is usable as an MQTT
 * password with no seed.
 */
export function mintDeviceUser(keys: TenantAccountKeys, request: DeviceUserRequest): MintedDeviceUser {
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
      bearer_token: true,
      allowed_connection_types: request.kind === 'mqtt' ? ['MQTT'] : ['STANDARD'],
      issuer_account: keys.account.publicKey,
      subs: -1,
      data: -1,
      payload: -1,
    },
    keys.signer,
    { exp: request.expireTime },
  );
  return { token, publicKey: user.publicKey, kind: request.kind, permissions };
}
