import { status } from '@grpc/grpc-js';
import { connect, NatsConnection } from 'nats';
import { Client } from 'pg';
import { AuditEvent } from '../../../gen/ts/iot/signing/v1/audit';
import { PrincipalKind } from '../../../gen/ts/iot/signing/v1/auth';
import { Role, unary } from '@iot-mesh/runtime';
import { startSigningForTest, TestSigning, TestTenant } from '../../../testing/signing';
import { TEST_NATS_URL } from '../../../testing/test-services';
import { codeOf } from './support/grpc-errors';

let signing: TestSigning;
let tenant: TestTenant;
let nc: NatsConnection;

beforeAll(async () => {
  signing = await startSigningForTest();
  tenant = await signing.createTenant();
  nc = await connect({ servers: TEST_NATS_URL });
}, 60000);
afterAll(async () => {
  await nc?.drain();
  await signing?.stop();
});

const apiKeys = () => signing.clients.apiKeys;
const auth = () => signing.clients.auth;

describe('API keys', () => {
  test('lifecycle: created with the secret shown once, listed by prefix, usable, revoked', async () => {
    const admin = { authorization: tenant.admin.authorization };
    const created = await unary(apiKeys(), apiKeys().createApiKey, { name: 'ingest bot', role: Role.ROLE_OPERATOR }, admin);
    const { secret, apiKey } = created;
    expect(secret).toMatch(/^iotk_[A-Za-z0-9_-]{40,}$/);
    expect(secret.startsWith(apiKey!.prefix)).toBe(true);
    expect(apiKey!.prefix.length).toBeLessThan(secret.length / 2);
    expect(apiKey).toMatchObject({ name: 'ingest bot', role: Role.ROLE_OPERATOR, tenantId: tenant.tenantId, revokeTime: undefined });

    // The caller is the key, with its role and tenant; never a platform admin.
    const me = await unary(auth(), auth().whoAmI, {}, { authorization: `ApiKey ${secret}` });
    expect(me.principal).toEqual({ kind: PrincipalKind.PRINCIPAL_KIND_API_KEY, id: apiKey!.id, tenantId: tenant.tenantId, role: Role.ROLE_OPERATOR, name: 'ingest bot', platformAdmin: false });

    // Listing shows metadata only: the secret appears nowhere in the response.
    const listed = await unary(apiKeys(), apiKeys().listApiKeys, {}, admin);
    const entry = listed.apiKeys.find((k) => k.id === apiKey!.id)!;
    expect(entry.prefix).toBe(apiKey!.prefix);
    expect(entry.lastUsedTime).toBeInstanceOf(Date);
    expect(JSON.stringify(listed)).not.toContain(secret.slice(apiKey!.prefix.length));

    // An operator key cannot act as an admin.
    expect(await codeOf(unary(apiKeys(), apiKeys().listApiKeys, {}, { authorization: `ApiKey ${secret}` }))).toBe(status.PERMISSION_DENIED);

    const revoked = await unary(apiKeys(), apiKeys().revokeApiKey, { id: apiKey!.id }, admin);
    expect(revoked.apiKey!.revokeTime).toBeInstanceOf(Date);
    expect(await codeOf(unary(auth(), auth().whoAmI, {}, { authorization: `ApiKey ${secret}` }))).toBe(status.UNAUTHENTICATED);
    // Revoking again changes nothing.
    const again = await unary(apiKeys(), apiKeys().revokeApiKey, { id: apiKey!.id }, admin);
    expect(again.apiKey!.revokeTime).toEqual(revoked.apiKey!.revokeTime);
    expect(await codeOf(unary(apiKeys(), apiKeys().revokeApiKey, { id: '00000000-0000-4000-8000-000000000000' }, admin))).toBe(status.NOT_FOUND);
  });

  test('only a hash of the secret is stored', async () => {
    const key = await tenant.createApiKey('viewer', 'stored-check');
    const db = new Client({ connectionString: signing.database.url });
    await db.connect();
    try {
      const { rows } = await db.query('SELECT * FROM signing.api_keys WHERE id = $1', [key.id]);
      const stored = JSON.stringify(rows[0], (_k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v));
      expect(stored).not.toContain(key.secret);
      expect(stored).not.toContain(key.secret.slice(13));
      expect(stored).not.toContain(Buffer.from(key.secret).toString('hex'));
    } finally {
      await db.end();
    }
  });

  test('an expired key stops working', async () => {
    const res = await unary(apiKeys(), apiKeys().createApiKey, { name: 'short-lived', role: Role.ROLE_VIEWER, expireTime: new Date(Date.now() + 1000) }, { authorization: tenant.admin.authorization });
    expect(await codeOf(unary(auth(), auth().whoAmI, {}, { authorization: `ApiKey ${res.secret}` }))).toBe(status.OK);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await codeOf(unary(auth(), auth().whoAmI, {}, { authorization: `ApiKey ${res.secret}` }))).toBe(status.UNAUTHENTICATED);
  });
});

describe('audit', () => {
  test('security events are stored and published on iot.<tenant>.evt.audit.<type>', async () => {
    const t = await signing.createTenant();
    const received: Array<{ subject: string; event: AuditEvent }> = [];
    const sub = nc.subscribe(`iot.${t.tenantId}.evt.audit.>`);
    const collecting = (async () => {
      for await (const msg of sub) received.push({ subject: msg.subject, event: AuditEvent.decode(msg.data) });
    })();
    await nc.flush();

    const admin = { authorization: t.admin.authorization };
    expect(await codeOf(signing.login(t.tenantName, t.viewer.email, 'wrong-password-here'))).toBe(status.UNAUTHENTICATED);
    await signing.login(t.tenantName, t.viewer.email, t.viewer.password);
    const key = await t.createApiKey('viewer', 'audited');
    await unary(apiKeys(), apiKeys().revokeApiKey, { id: key.id }, admin);
    const viewer = (await unary(signing.clients.users, signing.clients.users.getUser, { id: t.viewer.userId }, admin)).user!;
    await unary(signing.clients.users, signing.clients.users.updateUser, { user: { ...viewer, role: Role.ROLE_OPERATOR }, updateMask: ['role'] }, admin);
    const session = await signing.login(t.tenantName, t.operator.email, t.operator.password);
    await unary(auth(), auth().refresh, { refreshToken: session.refreshToken });
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: session.refreshToken }))).toBe(status.UNAUTHENTICATED);

    const expected = ['login.failed', 'login.succeeded', 'api_key.created', 'api_key.revoked', 'user.role_changed', 'refresh_token.reused'];
    const stored = await unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { page: { pageSize: 500, pageToken: '' }, type: '' }, admin);
    const storedTypes = stored.events.map((e) => e.type);
    expect(storedTypes).toEqual(expect.arrayContaining(expected));
    expect(stored.events.every((e) => e.tenantId === t.tenantId)).toBe(true);
    const roleChange = stored.events.find((e) => e.type === 'user.role_changed')!;
    expect(roleChange).toMatchObject({ actorId: t.admin.userId, subject: { kind: 'user', id: t.viewer.userId } });
    expect(roleChange.details).toEqual({ from: 'viewer', to: 'operator' });
    expect(roleChange.sourceAddress).toBe('127.0.0.1');
    const failed = stored.events.find((e) => e.type === 'login.failed')!;
    expect(failed.details).toMatchObject({ email: t.viewer.email, reason: 'wrong_password' });
    expect(JSON.stringify(failed)).not.toContain('wrong-password-here');

    // Newest first, filtered by type, paged.
    const times = stored.events.map((e) => e.time!.getTime());
    expect([...times].sort((x, y) => y - x)).toEqual(times);
    const onlyFailed = await unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { type: 'login.failed' }, admin);
    expect(onlyFailed.events.map((e) => e.type)).toEqual(['login.failed']);
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { page: { pageSize: 2, pageToken }, type: '' }, admin);
      seen.push(...page.events.map((e) => e.id));
      pageToken = page.page?.nextPageToken ?? '';
    } while (pageToken);
    expect(seen).toEqual(stored.events.map((e) => e.id));

    await nc.flush();
    for (let i = 0; i < 50 && !expected.every((type) => received.some((r) => r.event.type === type)); i++) await new Promise((r) => setTimeout(r, 100));
    sub.unsubscribe();
    await collecting;
    for (const type of expected) {
      const message = received.find((r) => r.event.type === type);
      expect(message?.subject).toBe(`iot.${t.tenantId}.evt.audit.${type}`);
      expect(message?.event.tenantId).toBe(t.tenantId);
    }
    // Published as binary iot.signing.v1.AuditEvent, the same message the API lists.
    const publishedRoleChange = received.find((r) => r.event.type === 'user.role_changed')!.event;
    expect(publishedRoleChange).toEqual(roleChange);
    // Other tenants' admins see none of it.
    const others = await unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { page: { pageSize: 500, pageToken: '' }, type: '' }, { authorization: tenant.admin.authorization });
    expect(others.events.some((e) => e.tenantId === t.tenantId)).toBe(false);
  });
});
