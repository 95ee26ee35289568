import { status } from '@grpc/grpc-js';
import mqtt, { MqttClient } from 'mqtt';
import { connect, credsAuthenticator, NatsConnection } from 'nats';
import { Client } from 'pg';
import { unary } from '@iot-mesh/runtime';
import { deviceUserAuthenticator, fullAccessCreds, peekNatsJwt, tenantAccountKeys } from '@iot-mesh/nats-auth';
import { CredentialKind } from '../../../gen/ts/iot/device/v1/credential';
import { Device, DeviceCredential } from '../../../gen/ts/iot/device/v1/device';
import { TestTenant } from '../../../testing/signing';
import { DeviceHarness, startDeviceHarness } from './harness';

/**
 * The message-plane matrix (issue 13): a device of tenant A, over NATS and
 * over MQTT, against every subject family of tenant B and of the platform,
 * and against another device of its own tenant. Every probe is decided by
 * what the server itself answers (a refused SUB / SUBACK failure), or, for
 * publishes, by full-access observers in the platform account and in both
 * tenants' accounts that must not see the probe's payload once a barrier sent
 * after it has arrived. Then: client ids per tenant, the credential life
 * cycle, 100,000 revocations on record, and the per-tenant quotas.
 */

jest.setTimeout(120_000);

/**
 * Live connections per tenant account. In nats-server 2.9 the JetStream
 * internals behind MQTT sessions count against it too (at the limit, MQTT
 * sessions fail to persist), so it is kept well above the MQTT clients here.
 */
const MAX_CONNECTIONS = 20;
const MAX_CREDENTIALS = 6;

let h: DeviceHarness;
let a: TestTenant;
let b: TestTenant;
const cleanup: (() => Promise<unknown>)[] = [];
/** Payloads every observer saw, by observer. */
const seen: Record<'platform' | 'tenantA' | 'tenantB', { subject: string; data: string }[]> = { platform: [], tenantA: [], tenantB: [] };

const { CREDENTIAL_KIND_MQTT: MQTT, CREDENTIAL_KIND_NATS: NATS } = CredentialKind;

beforeAll(async () => {
  h = await startDeviceHarness({ mqtt: true, env: { DEVICE_TENANT_MAX_CONNECTIONS: String(MAX_CONNECTIONS), DEVICE_TENANT_MAX_CREDENTIALS: String(MAX_CREDENTIALS) } });
  [a, b] = await Promise.all([h.signing.createTenant(), h.signing.createTenant()]);
  h.platform.subscribe('>', { callback: (_e, m) => seen.platform.push({ subject: m.subject, data: new TextDecoder().decode(m.data) }) });
  await h.platform.flush();
});
// Each test closes its connections: they count against the tenants' connection limit.
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});
afterAll(async () => {
  await h?.stop();
});

const auth = (t: TestTenant) => ({ authorization: t.operator.authorization });

async function newDevice(t: TestTenant, id: string, kind: CredentialKind): Promise<DeviceCredential> {
  await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id, name: id }) }, auth(t));
  return (await unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: id, expireTime: undefined, kind }, auth(t))).credential!;
}

async function natsDevice(credential: { token: string; seed?: string }): Promise<NatsConnection> {
  const nc = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(credential), reconnect: false });
  cleanup.push(() => nc.close());
  return nc;
}

async function mqttDevice(token: string, clientId: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(h.nats.server.mqttUrl, { username: clientId, password: token, clientId, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 });
  client.on('error', () => undefined);
  cleanup.push(() => client.endAsync(true));
  return client;
}

/** A user with every permission in a tenant's own account (keys derived as the device service derives them). */
async function accountObserver(t: TestTenant, into: { subject: string; data: string }[]): Promise<NatsConnection> {
  const keys = tenantAccountKeys(h.nats.setup.tenantKeySecret, t.tenantId);
  const nc = await connect({ servers: h.nats.server.url, authenticator: credsAuthenticator(new TextEncoder().encode(fullAccessCreds(keys.account, 'observer'))) });
  cleanup.push(() => nc.close());
  nc.subscribe('>', { callback: (_e, m) => into.push({ subject: m.subject, data: new TextDecoder().decode(m.data) }) });
  await nc.flush();
  return nc;
}

/** NATS subject → MQTT topic (`.`→`/`, `*`→`+`, `>`→`#`). */
const topicOf = (subject: string) =>
  subject
    .split('.')
    .map((t) => (t === '*' ? '+' : t === '>' ? '#' : t))
    .join('/');

interface Probe {
  family: string;
  subject: string;
  /** What the row is allowed: own subjects are the positive controls. */
  allowed?: { sub?: boolean; pub?: boolean };
}

test('message-plane matrix: a device of tenant A reaches nothing of tenant B, of the platform, or of its own tenant but its own subjects', async () => {
  const A = a.tenantId;
  const B = b.tenantId;
  const aNats = await newDevice(a, 'a-nats', NATS);
  const aMqtt = await newDevice(a, 'a-mqtt', MQTT);
  await newDevice(a, 'a-other', NATS);
  const bMqtt = await newDevice(b, 'dev-b', MQTT);
  expect(peekNatsJwt(aNats.token).iss).not.toBe(peekNatsJwt(bMqtt.token).iss);

  // A stream in the platform account over every tenant's telemetry, as monitoring's TELEMETRY is.
  const jsm = await h.platform.jetstreamManager();
  await jsm.streams.add({ name: 'MATRIX_TELEMETRY', subjects: ['iot.*.dev.*.tel'] });
  cleanup.push(() => jsm.streams.delete('MATRIX_TELEMETRY'));
  const observerA = await accountObserver(a, seen.tenantA);
  const observerB = await accountObserver(b, seen.tenantB);
  // Tenant B's device leaves a retained message and QoS 1 traffic (finding 1: another tenant read both through $MQTT.sub.>).
  const victim = await mqttDevice(bMqtt.token, 'dev-b');
  await victim.publishAsync(`iot/${B}/dev/dev-b/tel`, 'b-retained-secret', { qos: 1, retain: true });
  await victim.subscribeAsync(`iot/${B}/dev/dev-b/cmd`, { qos: 1 });

  const probes: Probe[] = [
    { family: 'own telemetry', subject: `iot.${A}.dev.{self}.tel`, allowed: { pub: true } },
    { family: 'own commands', subject: `iot.${A}.dev.{self}.cmd`, allowed: { sub: true } },
    { family: 'own desired state', subject: `iot.${A}.dev.{self}.desired`, allowed: { sub: true } },
    { family: 'A: other device telemetry', subject: `iot.${A}.dev.a-other.tel` },
    { family: 'A: other device commands', subject: `iot.${A}.dev.a-other.cmd` },
    { family: 'A: every device', subject: `iot.${A}.dev.*.tel` },
    { family: 'A: events', subject: `iot.${A}.evt.>` },
    { family: 'A: dead letters', subject: `iot.${A}.dlq.tel` },
    { family: 'B: device telemetry', subject: `iot.${B}.dev.dev-b.tel` },
    { family: 'B: device commands', subject: `iot.${B}.dev.dev-b.cmd` },
    { family: 'B: device desired state', subject: `iot.${B}.dev.dev-b.desired` },
    { family: 'B: everything', subject: `iot.${B}.>` },
    { family: 'B: events', subject: `iot.${B}.evt.device.created` },
    { family: 'B: dead letters', subject: `iot.${B}.dlq.tel` },
    { family: 'platform: JetStream API', subject: '$JS.API.STREAM.INFO.TELEMETRY' },
    { family: 'platform: JetStream API (all)', subject: '$JS.API.>' },
    { family: 'system: $SYS', subject: '$SYS.>' },
    { family: 'system: server ping', subject: '$SYS.REQ.SERVER.PING' },
    { family: 'MQTT internals: deliveries', subject: '$MQTT.sub.>' },
    { family: 'MQTT internals: JetStream acks', subject: '$MQTT.JSA.>' },
    { family: 'MQTT internals: all', subject: '$MQTT.>' },
    { family: 'inboxes', subject: '_INBOX.>' },
    { family: 'inbox (one)', subject: '_INBOX.probe.1' },
    { family: 'everything', subject: '>' },
  ];

  // Over NATS, as a-nats (a NATS credential).
  const nc = await natsDevice(aNats);
  const natsSub = new Map<string, boolean>();
  for (const p of probes) {
    const subject = p.subject.replace('{self}', 'a-nats');
    natsSub.set(p.family, true);
    nc.subscribe(subject, { callback: (err) => err && natsSub.set(p.family, false) });
  }
  // The server answers a refused SUB before the PONG of this flush.
  await nc.flush();
  probes.forEach((p, i) => {
    const subject = p.subject.replace('{self}', 'a-nats');
    if (!/[*>]/.test(subject)) nc.publish(subject, `probe-nats-${i}`);
  });
  nc.publish(`iot.${A}.dev.a-nats.tel`, 'barrier-nats');

  // Over MQTT, as a-mqtt (an MQTT credential).
  const client = await mqttDevice(aMqtt.token, 'a-mqtt');
  const mqttSub = new Map<string, boolean>();
  for (const p of probes) {
    const topic = topicOf(p.subject.replace('{self}', 'a-mqtt'));
    mqttSub.set(
      p.family,
      await client.subscribeAsync(topic, { qos: 1 }).then(
        () => true,
        () => false,
      ),
    );
  }
  for (const [i, p] of probes.entries()) {
    const subject = p.subject.replace('{self}', 'a-mqtt');
    if (!/[*>]/.test(subject)) await client.publishAsync(topicOf(subject), `probe-mqtt-${i}`, { qos: 1 });
  }
  await client.publishAsync(`iot/${A}/dev/a-mqtt/tel`, 'barrier-mqtt', { qos: 1 });

  // Both barriers reached the platform; every observer has been flushed after them.
  while (!['barrier-nats', 'barrier-mqtt'].every((d) => seen.platform.some((m) => m.data === d))) await h.platform.flush();
  await Promise.all([h.platform.flush(), observerA.flush(), observerB.flush()]);
  const arrived = (payload: string) => Object.values(seen).some((list) => list.some((m) => m.data === payload));

  const rows = probes.map((p, i) => {
    const pubbable = !/[*>]/.test(p.subject.replace('{self}', 'x'));
    return {
      family: p.family,
      'NATS sub': natsSub.get(p.family) ? 'accepted' : 'refused',
      'NATS pub': pubbable ? (arrived(`probe-nats-${i}`) ? 'delivered' : 'dropped') : '-',
      'MQTT sub': mqttSub.get(p.family) ? 'accepted' : 'refused',
      'MQTT pub': pubbable ? (arrived(`probe-mqtt-${i}`) ? 'delivered' : 'dropped') : '-',
    };
  });
  console.log(`message-plane matrix (device of tenant A → …)\n${table(rows)}`);

  for (const [i, p] of probes.entries()) {
    expect({ family: p.family, natsSub: natsSub.get(p.family), mqttSub: mqttSub.get(p.family) }).toEqual({ family: p.family, natsSub: !!p.allowed?.sub, mqttSub: !!p.allowed?.sub });
    if (!/[*>]/.test(p.subject)) {
      expect({ family: p.family, nats: arrived(`probe-nats-${i}`), mqtt: arrived(`probe-mqtt-${i}`) }).toEqual({ family: p.family, nats: !!p.allowed?.pub, mqtt: !!p.allowed?.pub });
    }
  }
  // The platform's stream captured the devices' own telemetry from their tenant accounts, and no probe.
  const js = h.platform.jetstream();
  const stored: string[] = [];
  const consumer = await js.consumers.get('MATRIX_TELEMETRY');
  const info = await jsm.streams.info('MATRIX_TELEMETRY');
  const batch = await consumer.fetch({ max_messages: info.state.messages, expires: 5000 });
  for await (const m of batch) {
    stored.push(new TextDecoder().decode(m.data));
    if (stored.length === info.state.messages) break;
  }
  expect(stored).toEqual(expect.arrayContaining(['barrier-nats', 'barrier-mqtt', 'b-retained-secret']));
  expect(stored.filter((d) => d.startsWith('probe-')).filter((d) => !probes[Number(d.split('-')[2])].allowed?.pub)).toEqual([]);
  // Even a user with every permission in A's account sees nothing of B: not its retained message, not its acks.
  expect(seen.tenantA.filter((m) => m.subject.includes(B) || m.data.includes('b-retained-secret'))).toEqual([]);
  expect(seen.tenantB.some((m) => m.data === 'b-retained-secret')).toBe(true);
  // And the wrong transport is refused outright: a NATS credential over MQTT, an MQTT one over NATS.
  await expect(mqttDevice(aNats.token, 'a-nats')).rejects.toThrow(/authori/i);
  await expect(natsDevice(aMqtt)).rejects.toThrow(/authori/i);
  await victim.endAsync();
});

test("another tenant's device taking the same MQTT client id does not disconnect the victim (finding 2)", async () => {
  const victimCred = (await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'dev-b', expireTime: undefined, kind: MQTT }, auth(b))).credential!;
  const attackerCred = await newDevice(a, 'a-thief', MQTT);
  const victim = await mqttDevice(victimCred.token, 'dev-b');
  let victimClosed = false;
  victim.on('close', () => (victimClosed = true));
  const attacker = await mqttDevice(attackerCred.token, 'dev-b');
  // The CONNACK came after the server handled the id: a takeover would have closed the victim by now.
  await victim.publishAsync(`iot/${b.tenantId}/dev/dev-b/tel`, 'victim-still-here', { qos: 1 });
  expect(victimClosed).toBe(false);
  expect(victim.connected).toBe(true);

  // The control: within one tenant the same id does take over (so the check above can fail).
  let attackerClosed = false;
  const closed = new Promise<void>((resolve) => attacker.once('close', () => ((attackerClosed = true), resolve())));
  await mqttDevice(attackerCred.token, 'dev-b');
  await closed;
  expect(attackerClosed).toBe(true);
  expect(victim.connected).toBe(true);
  await victim.endAsync();
});

test('after revoke, rotate and delete the old tokens are refused, with 100,000 revocations on record', async () => {
  const A = a.tenantId;
  // 100,000 revocations of tenant A on record, all of credentials already expired: pruned from the account JWT.
  const pg = new Client({ connectionString: h.db.url });
  await pg.connect();
  try {
    await pg.query(
      `INSERT INTO device.revoked_credentials (public_key, tenant_id, device_id, revoke_time, expire_time)
       SELECT 'UPRUNED' || lpad(g::text, 49, '0'), $1, 'gone-' || g, now() - interval '2 days', now() - interval '1 day' FROM generate_series(1, 100000) g`,
      [A],
    );
    // A thousand live ones too (revoked, not yet expired): they stay.
    await pg.query(
      `INSERT INTO device.revoked_credentials (public_key, tenant_id, device_id, revoke_time, expire_time)
       SELECT 'ULIVE' || lpad(g::text, 51, '0'), $1, 'live-' || g, now(), now() + interval '1 day' FROM generate_series(1, 1000) g`,
      [A],
    );
    expect((await pg.query('SELECT count(*)::int AS n FROM device.revoked_credentials WHERE tenant_id = $1', [A])).rows[0].n).toBeGreaterThanOrEqual(101_000);
  } finally {
    await pg.end();
  }

  const revokeMe = await newDevice(a, 'a-revoked', NATS);
  const rotateMe = await newDevice(a, 'a-rotated', MQTT);
  const deleteMe = (await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'a-other', expireTime: undefined, kind: NATS }, auth(a))).credential!;
  const live = { revoked: await natsDevice(revokeMe), deleted: await natsDevice(deleteMe) };
  const rotatedLive = await mqttDevice(rotateMe.token, 'a-rotated');
  const rotatedClosed = new Promise<void>((resolve) => rotatedLive.once('close', () => resolve()));

  await unary(h.clients.credentials, h.clients.credentials.revokeCredential, { deviceId: 'a-revoked' }, auth(a));
  const rotated = (await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'a-rotated', expireTime: undefined, kind: MQTT }, auth(a))).credential!;
  await unary(h.clients.devices, h.clients.devices.deleteDevice, { id: 'a-other' }, auth(a));

  // Live connections dropped, reconnects refused; the rotated-in token works.
  await live.revoked.closed();
  await live.deleted.closed();
  await rotatedClosed;
  await expect(natsDevice(revokeMe)).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
  await expect(natsDevice(deleteMe)).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
  await expect(mqttDevice(rotateMe.token, 'a-rotated')).rejects.toThrow(/authori/i);
  expect((await mqttDevice(rotated.token, 'a-rotated')).connected).toBe(true);

  // What the server holds for A's account: the live revocations only, far below NATS's 1 MiB payload limit.
  const keys = tenantAccountKeys(h.nats.setup.tenantKeySecret, A);
  const system = await connect({ servers: h.nats.server.url, authenticator: credsAuthenticator(new TextEncoder().encode(h.nats.setup.systemCreds)) });
  cleanup.push(() => system.close());
  // That system user (the device service's) holds only what the service needs of $SYS.
  const refused = await new Promise<boolean>((resolve) => {
    system.subscribe('$SYS.>', { callback: (err) => resolve(err !== null) });
    void system.flush().then(() => resolve(false));
  });
  expect(refused).toBe(true);
  const lookup = await system.request(`$SYS.REQ.ACCOUNT.${keys.account.publicKey}.CLAIMS.LOOKUP`, new Uint8Array(), { timeout: 5000 });
  const jwt = new TextDecoder().decode(lookup.data);
  const revocations = (JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as { nats: { revocations?: Record<string, number> } }).nats.revocations ?? {};
  expect(Object.keys(revocations).some((k) => k.startsWith('UPRUNED'))).toBe(false);
  expect(Object.keys(revocations).filter((k) => k.startsWith('ULIVE'))).toHaveLength(1000);
  expect(revocations[peekNatsJwt(revokeMe.token).sub!]).toBeDefined();
  console.log(`tenant A's account JWT: ${jwt.length} bytes, ${Object.keys(revocations).length} revocations (100,000 expired ones pruned)`);
  expect(jwt.length).toBeLessThan(256 * 1024);
});

test('per-tenant quotas: active credentials (RESOURCE_EXHAUSTED) and live connections (the account conn limit)', async () => {
  const c = await h.signing.createTenant();
  const creds: DeviceCredential[] = [];
  for (let i = 0; i < MAX_CREDENTIALS; i++) creds.push(await newDevice(c, `q-${i}`, NATS));
  await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'q-over', name: 'q-over' }) }, auth(c));
  const over = await unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: 'q-over', expireTime: undefined, kind: NATS }, auth(c)).catch((e) => e);
  expect(over.code).toBe(status.RESOURCE_EXHAUSTED);
  // A rotation replaces a credential, so it is not refused; a revocation frees a place.
  await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'q-0', expireTime: undefined, kind: NATS }, auth(c));
  await unary(h.clients.credentials, h.clients.credentials.revokeCredential, { deviceId: 'q-0' }, auth(c));
  const last = (await unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: 'q-over', expireTime: undefined, kind: NATS }, auth(c))).credential!;

  // Connections (of any of the tenant's credentials): the server refuses the one past the tenant's limit; another tenant is not affected.
  for (let i = 0; i < MAX_CONNECTIONS; i++) await natsDevice(i % 2 === 0 ? last : creds[1]);
  // The server closes at once; the reason may not reach a client still writing its CONNECT (then it sees the closed socket).
  await expect(natsDevice(creds[2])).rejects.toThrow(/maximum account active connections|EPIPE|ECONNRESET/i);
  const account = tenantAccountKeys(h.nats.setup.tenantKeySecret, c.tenantId).account.publicKey;
  const accountz = (await (await fetch(`http://127.0.0.1:${h.nats.server.monitorPort}/accountz?acc=${account}`)).json()) as { account_detail: { client_connections: number } };
  expect(accountz.account_detail.client_connections).toBe(MAX_CONNECTIONS);
  const other = await newDevice(b, 'b-quota', NATS);
  await natsDevice(other);
});

/** A plain-text table of `rows` (same keys in each). */
function table(rows: Record<string, string>[]): string {
  const keys = Object.keys(rows[0]);
  const width = keys.map((k) => Math.max(k.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join(' | ');
  return [line(keys), width.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map((r) => line(keys.map((k) => r[k])))].join('\n');
}
