/*
 * The secrets sweep (issue 13): signing and the device service run as their
 * own processes at debug level in front of an operator-mode nats-server,
 * while a system-account subscriber records every `$SYS.>` event (CONNECT,
 * DISCONNECT, AUTH errors, account updates). A realistic scenario issues
 * every kind of secret: bootstrap token, passwords, access and refresh
 * tokens, an API key, device credentials that connect, rotate and get
 * revoked (NATS ones: a user JWT and its seed; an MQTT one: a bearer JWT),
 * and the NATS seeds the services are configured with. Not one of them may
 * appear in any log line of the processes, in the nats-server log, or in any
 * system event; a failure says where. Exceptions: nats-server puts every
 * client's JWT into its CONNECT/DISCONNECT events, which is harmless for a
 * NATS credential's (not bearer: it logs in only with the seed, which the
 * test checks) and a known defect for an MQTT credential's (bearer).
 */
import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { connect, credsAuthenticator, jwtAuthenticator, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { Client } from '@grpc/grpc-js';
import { insecureClient, repoPath, Role, unary } from '@iot-mesh/runtime';
import { waitForReportedPort } from '../../scripts/reported-port';
import { ApiKeyServiceClient } from '../../gen/ts/iot/signing/v1/api_keys';
import { AuthServiceClient } from '../../gen/ts/iot/signing/v1/auth';
import { TenantServiceClient } from '../../gen/ts/iot/signing/v1/tenants';
import { UserServiceClient } from '../../gen/ts/iot/signing/v1/users';
import { Device, DeviceServiceClient } from '../../gen/ts/iot/device/v1/device';
import { CredentialKind, CredentialServiceClient } from '../../gen/ts/iot/device/v1/credential';
import { OperatorNats, startOperatorNats } from '../nats-operator';
import { createTestDatabase, TestDatabase } from '../postgres';
import { testServiceEnv } from '../test-services';

jest.setTimeout(60_000);

/** A running service process and everything it printed. */
interface Child {
  name: string;
  process: ChildProcess;
  output: string;
  address: string;
}

const secrets = new Set<string>();
/** Records secrets issued or configured in this run (empty values and short ones never count). */
const remember = (...values: (string | undefined)[]) => values.forEach((v) => v && v.length >= 8 && secrets.add(v));

/** NKEY seeds (`SO…`, `SA…`, `SU…`) in a creds file or seed variable. */
function seedsIn(text: string): string[] {
  return text.match(/\bS[OAU][A-Z2-7]{56}\b/g) ?? [];
}

const children: Child[] = [];
const databases: TestDatabase[] = [];
let nats: OperatorNats;
let sys: NatsConnection;
const events: { subject: string; data: string }[] = [];

async function startChild(name: string, env: Record<string, string>): Promise<Child> {
  const child: Child = {
    name,
    output: '',
    address: '',
    process: spawn(process.execPath, ['--import', 'tsx', repoPath('services', name, 'src', 'main.ts')], {
      cwd: repoPath(),
      env: { PATH: process.env.PATH, ...testServiceEnv(), LOG_LEVEL: 'debug', GRPC_PORT: '0', METRICS_PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  };
  children.push(child);
  child.process.stdout!.on('data', (chunk: Buffer) => (child.output += chunk.toString()));
  child.process.stderr!.on('data', (chunk: Buffer) => (child.output += chunk.toString()));
  // "ready" (with the port) comes once the business services are added; "grpc listening" is still NOT_SERVING.
  const port = await waitForReportedPort(() => child.output, 'ready', {
    timeoutMs: 60_000,
    failed: () => (child.process.exitCode !== null ? `${name} exited (${child.process.exitCode}):\n${child.output}` : undefined),
  });
  child.address = `127.0.0.1:${port}`;
  return child;
}

afterAll(async () => {
  await sys?.close().catch(() => undefined);
  for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
  await nats?.stop();
  for (const db of databases) await db.drop();
});

/** Where `secret` occurs in `text`, as `name:line` references. */
function occurrences(name: string, text: string, secret: string): string[] {
  const found: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.includes(secret)) found.push(`${name}:${i + 1}: ${line.slice(0, 200)}`);
  });
  return found;
}

/** Every finding: which secret, and where it was. */
const leaks: { secret: string; where: string }[] = [];
/** MQTT credentials' JWTs: bearer (the MQTT password). */
const bearerTokens = new Set<string>();
/** NATS credentials' JWTs: not bearer, they log in only with their seed. */
const nonBearerJwts = new Set<string>();
const inSysEvent = (l: { where: string }) => l.where.startsWith('$SYS event');

beforeAll(async () => {
  const bootstrapToken = crypto.randomBytes(32).toString('base64url');
  const encryptionKey = crypto.randomBytes(32).toString('base64url');
  const [signingDb, deviceDb] = await Promise.all([createTestDatabase('iot_secrets_signing'), createTestDatabase('iot_secrets_device')]);
  databases.push(signingDb, deviceDb);
  nats = await startOperatorNats({ mqtt: true });
  const deviceEnv = nats.deviceEnv();
  remember(bootstrapToken, encryptionKey, deviceEnv.DEVICE_NATS_TENANT_KEY_SECRET, deviceEnv.DEVICE_NATS_OPERATOR_SIGNING_SEED);
  for (const file of [nats.serviceCredsFile, nats.systemCredsFile]) remember(...seedsIn(fs.readFileSync(file, 'utf8')));
  remember(...seedsIn(JSON.stringify(nats.setup)));

  // Every system event from here on, as the system account sees it.
  sys = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(fs.readFileSync(nats.systemCredsFile)) });
  // The system user the device service holds may read connect and disconnect events, which carry each client's JWT field.
  for (const subject of ['$SYS.ACCOUNT.*.CONNECT', '$SYS.ACCOUNT.*.DISCONNECT']) {
    const sub = sys.subscribe(subject);
    void (async () => {
      for await (const m of sub) events.push({ subject: m.subject, data: Buffer.from(m.data).toString('latin1') });
    })();
  }

  const signing = await startChild('signing', {
    DATABASE_URL: signingDb.url,
    SIGNING_HTTP_PORT: '0',
    SIGNING_BOOTSTRAP_TOKEN: bootstrapToken,
    SIGNING_KEY_ENCRYPTION_KEY: encryptionKey,
    SIGNING_REDIS_PREFIX: `iot:test:secrets:${crypto.randomBytes(4).toString('hex')}:`,
    SIGNING_KEY_ACTIVATION_DELAY_MS: '0',
    SIGNING_PASSWORD_HASH_COST: '12',
  });
  const device = await startChild('device', { ...deviceEnv, DATABASE_URL: deviceDb.url, SIGNING_ADDRESS: signing.address });

  const auth = insecureClient(AuthServiceClient, signing.address);
  const tenants = insecureClient(TenantServiceClient, signing.address);
  const users = insecureClient(UserServiceClient, signing.address);
  const apiKeys = insecureClient(ApiKeyServiceClient, signing.address);
  const devices = insecureClient(DeviceServiceClient, device.address);
  const creds = insecureClient(CredentialServiceClient, device.address);
  try {
    // Bootstrap, the platform admin's login and a tenant with its admin.
    const platformPassword = `pw-${crypto.randomBytes(18).toString('base64url')}`;
    remember(platformPassword);
    await unary(auth, auth.bootstrap, { bootstrapToken, tenantName: 'platform', adminEmail: 'root@example.test', adminPassword: platformPassword, adminDisplayName: 'Root' });
    const platform = await unary(auth, auth.login, { tenant: 'platform', email: 'root@example.test', password: platformPassword });
    remember(platform.tokens?.accessToken, platform.tokens?.refreshToken);
    const adminPassword = `pw-${crypto.randomBytes(18).toString('base64url')}`;
    remember(adminPassword);
    await unary(tenants, tenants.createTenant, { name: 'acme', adminEmail: 'admin@acme.test', adminPassword, adminDisplayName: 'Admin' }, { authorization: `Bearer ${platform.tokens!.accessToken}` });
    const login = await unary(auth, auth.login, { tenant: 'acme', email: 'admin@acme.test', password: adminPassword });
    remember(login.tokens?.accessToken, login.tokens?.refreshToken);
    // A failed login (its password is a secret too), a refresh, a password change, another user.
    const wrong = `pw-${crypto.randomBytes(18).toString('base64url')}`;
    remember(wrong);
    await unary(auth, auth.login, { tenant: 'acme', email: 'admin@acme.test', password: wrong }).catch(() => undefined);
    const refreshed = await unary(auth, auth.refresh, { refreshToken: login.tokens!.refreshToken });
    remember(refreshed.tokens?.accessToken, refreshed.tokens?.refreshToken);
    const admin = { authorization: `Bearer ${refreshed.tokens!.accessToken}` };
    const newPassword = `pw-${crypto.randomBytes(18).toString('base64url')}`;
    remember(newPassword);
    await unary(users, users.changePassword, { currentPassword: adminPassword, newPassword }, admin);
    const operatorPassword = `pw-${crypto.randomBytes(18).toString('base64url')}`;
    remember(operatorPassword);
    await unary(users, users.createUser, { email: 'op@acme.test', displayName: 'Op', password: operatorPassword, role: Role.ROLE_OPERATOR }, admin);
    // An API key, used, then revoked and used again.
    const key = await unary(apiKeys, apiKeys.createApiKey, { name: 'ci', role: Role.ROLE_ADMIN }, admin);
    remember(key.secret);
    await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'by-key', type: 'weather' }) }, { authorization: `ApiKey ${key.secret}` });
    await unary(apiKeys, apiKeys.revokeApiKey, { id: key.apiKey!.id }, admin);
    await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'by-revoked-key', type: 'weather' }) }, { authorization: `ApiKey ${key.secret}` }).catch(() => undefined);

    // A device with a credential, connected over NATS; rotated (the old one tried again), then revoked.
    const created = await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'sensor-1', type: 'weather' }) }, admin);
    const deviceId = created.device!.id;
    const issued = await unary(creds, creds.issueCredential, { deviceId, kind: CredentialKind.CREDENTIAL_KIND_NATS }, admin);
    remember(issued.credential!.token, issued.credential!.seed);
    nonBearerJwts.add(issued.credential!.token);
    const nc = await connect({ servers: nats.server.url, authenticator: deviceUserAuthenticator(issued.credential!), reconnect: false });
    nc.publish(issued.credential!.publishSubjects[0]?.replace(/[*>]/g, 'x') ?? 'x', 'hello');
    await nc.flush();
    await nc.close();
    const rotated = await unary(creds, creds.rotateCredential, { deviceId, kind: CredentialKind.CREDENTIAL_KIND_NATS }, admin);
    remember(rotated.credential!.token, rotated.credential!.seed);
    nonBearerJwts.add(rotated.credential!.token);
    await connect({ servers: nats.server.url, authenticator: deviceUserAuthenticator(issued.credential!), reconnect: false }).then((c) => c.close(), () => undefined);
    const nc2 = await connect({ servers: nats.server.url, authenticator: deviceUserAuthenticator(rotated.credential!), reconnect: false });
    await nc2.flush();
    await nc2.close();
    await unary(creds, creds.revokeCredential, { deviceId }, admin);
    await connect({ servers: nats.server.url, authenticator: deviceUserAuthenticator(rotated.credential!), reconnect: false }).then((c) => c.close(), () => undefined);
    // A device with an MQTT credential (bearer: the JWT is the MQTT password) connects over MQTT.
    const mqttDevice = (await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'sensor-2', type: 'weather' }) }, admin)).device!.id;
    const mqttCredential = (await unary(creds, creds.issueCredential, { deviceId: mqttDevice, kind: CredentialKind.CREDENTIAL_KIND_MQTT }, admin)).credential!;
    remember(mqttCredential.token);
    bearerTokens.add(mqttCredential.token);
    const mc = await mqtt.connectAsync(nats.server.mqttUrl, { clientId: mqttDevice, username: mqttDevice, password: mqttCredential.token, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    await mc.endAsync();
    await unary(auth, auth.logout, { refreshToken: refreshed.tokens!.refreshToken });
    // A last round trip through the system account: every event so far has reached the subscriber.
    await sys.flush();
  } finally {
    for (const c of [auth, tenants, users, apiKeys, devices, creds] as unknown as Client[]) c.close();
  }

  const sources: [string, string][] = [
    ...children.map((c) => [`${c.name} log`, c.output] as [string, string]),
    ...events.map((e, i) => [`$SYS event ${i} ${e.subject}`, e.data] as [string, string]),
  ];
  // The nats-server's own log files, wherever its folder keeps them.
  const logsDir = path.join(nats.server.dir, 'logs');
  const natsLogs = fs.existsSync(logsDir) ? fs.readdirSync(logsDir).map((f) => [`nats-server ${f}`, fs.readFileSync(path.join(logsDir, f), 'utf8')] as [string, string]) : [];
  sources.push(...natsLogs);
  const natsLog = natsLogs.length > 0 ? natsLogs.map(([, t]) => t).join('\n') : undefined;
  for (const secret of secrets) {
    for (const [name, text] of sources) for (const where of occurrences(name, text, secret)) leaks.push({ secret, where });
  }
  console.log(
    `Secrets sweep: ${secrets.size} secrets issued or configured; searched ${children.map((c) => `${c.name} (${c.output.split('\n').length} log lines)`).join(', ')}, ` +
      `${events.length} $SYS events (${[...new Set(events.map((e) => e.subject.split('.').slice(0, 2).concat(e.subject.split('.').slice(-1)).join('.')))].join(', ')})` +
      `${natsLog !== undefined ? `, the nats-server log (${natsLog.split('\n').length} lines)` : ''}; ${leaks.length} found`,
  );
  expect(events.some((e) => e.subject.endsWith('.CONNECT'))).toBe(true);
}, 180_000);

const shown = (list: typeof leaks) => list.map((l) => `${l.secret.slice(0, 6)}…: ${l.where}`);

test('no password, token, API key, device credential or NATS seed of a realistic run appears in any log line, nor in $SYS events but device JWTs', () => {
  expect(shown(leaks.filter((l) => !(inSysEvent(l) && (nonBearerJwts.has(l.secret) || bearerTokens.has(l.secret)))))).toEqual([]);
});

test("a NATS credential's JWT that $SYS events carry does not log in without its seed", async () => {
  const seen = [...nonBearerJwts].filter((jwt) => leaks.some((l) => l.secret === jwt && inSysEvent(l)));
  // nats-server does publish them: the reason they must not be bearer.
  expect(seen.length).toBeGreaterThan(0);
  for (const jwt of seen) {
    const refused = await connect({ servers: nats.server.url, authenticator: jwtAuthenticator(jwt), reconnect: false }).then(
      async (c) => (await c.close(), false),
      () => true,
    );
    expect(refused).toBe(true);
  }
});

// KNOWN DEFECT (SECURITY.md): nats-server puts each client's JWT into the `client.jwt` field of
// $SYS.ACCOUNT.<account>.CONNECT/DISCONNECT, and MQTT device credentials are bearer JWTs (the MQTT password:
// nats-server 2.9's MQTT listener has no nonce to sign), so whoever reads those events (the device service's
// system user) holds every connected MQTT device's token. NATS credentials are not bearer and pass the test above.
// This test fails until MQTT has a way without bearer tokens, which `test.failing` turns into a pass; once fixed
// jest reports it, and it becomes a plain test.
test.failing('MQTT device bearer tokens never appear in $SYS connect or disconnect events', () => {
  expect(shown(leaks.filter((l) => bearerTokens.has(l.secret) && inSysEvent(l)))).toEqual([]);
});
