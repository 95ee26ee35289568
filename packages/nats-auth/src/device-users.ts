import { commandReplySubject, deviceSubject } from '@iot-mesh/runtime';
import { encodeNatsJwt, newNKey, NKey } from './nkeys';

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
export function mintDeviceUser(account: NKey, tenantId: string, deviceId: string, expireTime?: Date): MintedDeviceUser {
  const user = newNKey('U');
  const permissions = devicePermissions(tenantId, deviceId);
  const token = encodeNatsJwt(
    'user',
    `${tenantId}/${deviceId}`,
    user.publicKey,
    {
      pub: { allow: permissions.publish },
      sub: { allow: [...permissions.subscribe, ...MQTT_INTERNAL_SUBSCRIBE] },
      resp: { max: 1, ttl: 0 },
      bearer_token: true,
      subs: -1,
      data: -1,
      payload: -1,
    },
    account,
    { exp: expireTime },
  );
  return { token, publicKey: user.publicKey, permissions };
}
