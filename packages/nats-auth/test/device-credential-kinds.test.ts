/*
 * What nats-server 2.9 does with the two ways a device credential can be
 * minted (issue 13: device tokens in $SYS events), against a real
 * operator-mode server with MQTT: a bearer JWT logs in alone, and the server
 * puts every client's JWT into $SYS.ACCOUNT.<account>.CONNECT, so whoever
 * reads those events holds a working bearer token. A non-bearer JWT needs the
 * device's seed to sign the server's nonce: the JWT in the event no longer
 * logs in. The MQTT listener takes the JWT as the password and signs no
 * nonce, so an MQTT credential has to stay bearer.
 */
import mqtt from 'mqtt';
import { connect, credsAuthenticator, jwtAuthenticator, NatsConnection } from 'nats';
import { deviceSubject } from '@iot-mesh/runtime';
import { encodeNatsJwt, formatCreds, mintDeviceUser, newNKey, nkeyFromSeed, TenantAccountKeys } from '@iot-mesh/nats-auth';
import { waitUntil } from '../../../scripts/up-wait';
import { OperatorNats, startOperatorNats } from '../../../testing/nats-operator';

let nats: OperatorNats;
let system: NatsConnection;
let keys: TenantAccountKeys;
const connectEvents: string[] = [];
const inAnHour = () => new Date(Date.now() + 3_600_000);
/** The server publishes CONNECT events on its own schedule: waits for the first that names `userKey`. */
const connectEventOf = (userKey: string) => waitUntil(`a CONNECT event of ${userKey}`, async () => connectEvents.some((e) => e.includes(userKey)), { timeoutMs: 30_000, intervalMs: 20 });

beforeAll(async () => {
  nats = await startOperatorNats({ mqtt: true });
  system = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(new TextEncoder().encode(nats.setup.systemCreds)) });
  keys = await nats.pushTenantAccount('kinds');
  const sub = system.subscribe(`$SYS.ACCOUNT.${keys.account.publicKey}.CONNECT`);
  void (async () => {
    for await (const m of sub) connectEvents.push(new TextDecoder().decode(m.data));
  })();
  await system.flush();
}, 60_000);

afterAll(async () => {
  await system?.close();
  await nats?.stop();
});

/** The NATS server's answer to a connection attempt: 'connected' or its error message. */
async function tryNats(authenticator: ReturnType<typeof jwtAuthenticator>): Promise<string> {
  try {
    const nc = await connect({ servers: nats.server.url, authenticator, reconnect: false });
    await nc.flush();
    await nc.close();
    return 'connected';
  } catch (err) {
    return (err as Error).message;
  }
}

/** The MQTT listener's answer to a CONNECT with `password`: 'connected' or the error. */
function tryMqtt(clientId: string, password: string): Promise<string> {
  return new Promise((resolve) => {
    const client = mqtt.connect(nats.server.mqttUrl, { clientId, username: clientId, password, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    client.once('connect', () => client.end(true, () => resolve('connected')));
    client.once('error', (err) => client.end(true, () => resolve(err.message)));
  });
}

test('a bearer NATS credential logs in with the JWT alone, the JWT every CONNECT event carries', async () => {
  const bearer = mintDeviceUser(keys, { deviceId: 'bearer-dev', kind: 'nats', expireTime: inAnHour() });
  expect(bearer.seed).toBeUndefined();
  expect(await tryNats(jwtAuthenticator(bearer.token))).toBe('connected');
  await connectEventOf(bearer.publicKey);
  expect(connectEvents.some((e) => e.includes(bearer.token))).toBe(true);
});

test('a non-bearer NATS credential needs its seed: the JWT alone, as a CONNECT event shows it, is refused', async () => {
  const credential = mintDeviceUser(keys, { deviceId: 'nkey-dev', kind: 'nats', expireTime: inAnHour(), bearer: false });
  expect(credential.seed).toMatch(/^SU[A-Z2-7]{56}$/);
  const creds = formatCreds(credential.token, nkeyFromSeed(credential.seed!, 'U'));
  expect(creds).toContain('-----BEGIN NATS USER JWT-----');
  expect(creds).toContain('-----BEGIN USER NKEY SEED-----');

  expect(await tryNats(credsAuthenticator(new TextEncoder().encode(creds)))).toBe('connected');
  // Its own subjects still work, signed in with the seed.
  const nc = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(new TextEncoder().encode(creds)), reconnect: false });
  nc.publish(deviceSubject('kinds', 'nkey-dev', 'tel'), 'hello');
  await nc.flush();
  await nc.close();
  await connectEventOf(credential.publicKey);
  const events = connectEvents.filter((e) => e.includes(credential.publicKey));
  expect(events.length).toBeGreaterThan(0);
  expect(events.some((e) => e.includes(credential.token))).toBe(true);
  expect(events.some((e) => e.includes(credential.seed!))).toBe(false);

  // What a reader of $SYS holds: the JWT, which logs in neither alone nor with another key's signature.
  expect(await tryNats(jwtAuthenticator(credential.token))).toMatch(/authorization violation/i);
  expect(await tryNats(jwtAuthenticator(credential.token, new TextEncoder().encode(newNKey('U').seed)))).toMatch(/authorization violation/i);
});

test('MQTT takes a bearer credential as the password; a non-bearer one is refused, so MQTT credentials stay bearer', async () => {
  const bearer = mintDeviceUser(keys, { deviceId: 'mqtt-dev', kind: 'mqtt', expireTime: inAnHour() });
  expect(await tryMqtt('mqtt-dev', bearer.token)).toBe('connected');
  expect(() => mintDeviceUser(keys, { deviceId: 'mqtt-dev', kind: 'mqtt', expireTime: inAnHour(), bearer: false })).toThrow(/must be bearer/);

  // The same claims for a fresh user, differing only in bearer_token, as the server would see a non-bearer MQTT credential.
  const claims = JSON.parse(Buffer.from(bearer.token.split('.')[1], 'base64url').toString('utf8')) as { nats: Record<string, unknown> };
  const { type: _type, version: _version, ...nats } = claims.nats;
  const reissued = (bearerToken: boolean) => encodeNatsJwt('user', 'kinds/mqtt-dev', newNKey('U').publicKey, { ...nats, bearer_token: bearerToken }, keys.signer, { exp: inAnHour() });
  expect(await tryMqtt('mqtt-dev', reissued(true))).toBe('connected');
  expect(await tryMqtt('mqtt-dev', reissued(false))).not.toBe('connected');
});
