import { status } from '@grpc/grpc-js';
import { Role } from '@iot-mesh/runtime';
import { PrincipalKind } from '../../../gen/ts/iot/signing/v1/auth';
import { ConfigError, startService, unary } from '@iot-mesh/runtime';
import { startSigningForTest, TestSigning, TestTenant } from '../../../testing/signing';
import { signingService } from '../src/main';
import { codeOf, failureOf, fields } from './support/grpc-errors';

let signing: TestSigning;
let a: TestTenant;
let b: TestTenant;

beforeAll(async () => {
  signing = await startSigningForTest();
  [a, b] = await Promise.all([signing.createTenant(), signing.createTenant()]);
}, 60000);
afterAll(() => signing?.stop());

const auth = () => signing.clients.auth;
const users = () => signing.clients.users;
const tenants = () => signing.clients.tenants;
const apiKeys = () => signing.clients.apiKeys;

function jwtParts(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [header, claims] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
  return { header, claims };
}

describe('bootstrap', () => {
  test('works once: a second bootstrap is refused, a wrong token is UNAUTHENTICATED', async () => {
    const request = { bootstrapToken: signing.bootstrapToken, tenantName: 'again', adminEmail: 'x@example.test', adminPassword: 'a-long-enough-password', adminDisplayName: '' };
    expect(await codeOf(unary(auth(), auth().bootstrap, request))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(unary(auth(), auth().bootstrap, { ...request, bootstrapToken: 'wrong-token-of-sufficient-length-000000' }))).toBe(status.UNAUTHENTICATED);
  });

  test('the bootstrap admin is a platform admin of the platform tenant', async () => {
    const me = await unary(auth(), auth().whoAmI, {}, { authorization: signing.platformAdmin.authorization });
    expect(me.principal).toMatchObject({ tenantId: signing.platformAdmin.tenantId, role: Role.ROLE_ADMIN, platformAdmin: true, kind: PrincipalKind.PRINCIPAL_KIND_USER });
  });

  test('a bootstrap token shorter than 32 characters is a configuration error naming the variable', async () => {
    await expect(startService(signingService, { SIGNING_BOOTSTRAP_TOKEN: 'short', GRPC_PORT: '0' })).rejects.toThrow(ConfigError);
    await expect(startService(signingService, { SIGNING_BOOTSTRAP_TOKEN: 'short', GRPC_PORT: '0' })).rejects.toThrow(/SIGNING_BOOTSTRAP_TOKEN/);
  });
});

describe('login, who-am-i, refresh, logout', () => {
  test('login returns a short-lived ES256 access token with kid and tenant/role claims, and an opaque refresh token', async () => {
    const res = await unary(auth(), auth().login, { tenant: a.tenantName, email: a.operator.email, password: a.operator.password });
    const tokens = res.tokens!;
    expect(tokens.tokenType).toBe('Bearer');
    const { header, claims } = jwtParts(tokens.accessToken);
    expect(header).toMatchObject({ alg: 'ES256', typ: 'JWT' });
    expect(typeof header.kid).toBe('string');
    expect(claims).toMatchObject({ sub: a.operator.userId, tid: a.tenantId, role: 'operator', pa: false });
    expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(900);
    expect(tokens.accessTokenExpireTime!.getTime()).toBe((claims.exp as number) * 1000);
    expect(tokens.refreshToken).toMatch(/^rt_[A-Za-z0-9_-]{40,}$/);
    expect(res.user).toMatchObject({ id: a.operator.userId, tenantId: a.tenantId, role: Role.ROLE_OPERATOR });
  });

  test('tenant name and email are case-insensitive', async () => {
    const res = await unary(auth(), auth().login, { tenant: a.tenantName.toUpperCase(), email: a.viewer.email.toUpperCase(), password: a.viewer.password });
    expect(res.user?.id).toBe(a.viewer.userId);
  });

  test('a wrong password, unknown email and unknown tenant fail alike', async () => {
    const wrong = await failureOf(unary(auth(), auth().login, { tenant: a.tenantName, email: a.viewer.email, password: 'not-the-password' }));
    const noUser = await failureOf(unary(auth(), auth().login, { tenant: a.tenantName, email: 'nobody@example.test', password: 'not-the-password' }));
    const noTenant = await failureOf(unary(auth(), auth().login, { tenant: 'no-such-tenant', email: a.viewer.email, password: a.viewer.password }));
    for (const f of [wrong, noUser, noTenant]) {
      expect(f.code).toBe(status.UNAUTHENTICATED);
      expect(f.message).toBe(wrong.message);
    }
  });

  test('who-am-i returns the caller', async () => {
    const me = await unary(auth(), auth().whoAmI, {}, { authorization: a.viewer.authorization });
    expect(me.principal).toEqual({ kind: PrincipalKind.PRINCIPAL_KIND_USER, id: a.viewer.userId, tenantId: a.tenantId, role: Role.ROLE_VIEWER, name: a.viewer.email, platformAdmin: false });
    expect(await codeOf(unary(auth(), auth().whoAmI, {}))).toBe(status.UNAUTHENTICATED);
  });

  test('refresh rotates the refresh token; presenting a spent one revokes the whole family', async () => {
    const session = await signing.login(a.tenantName, a.viewer.email, a.viewer.password);
    const first = await unary(auth(), auth().refresh, { refreshToken: session.refreshToken });
    expect(first.tokens!.refreshToken).not.toBe(session.refreshToken);
    expect((await unary(auth(), auth().whoAmI, {}, { authorization: `Bearer ${first.tokens!.accessToken}` })).principal?.id).toBe(a.viewer.userId);
    const second = await unary(auth(), auth().refresh, { refreshToken: first.tokens!.refreshToken });

    // The first refresh token is spent: using it again is reuse.
    const reuse = await failureOf(unary(auth(), auth().refresh, { refreshToken: session.refreshToken }));
    expect(reuse.code).toBe(status.UNAUTHENTICATED);
    // The family is revoked: the newest token of the session no longer works either.
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: second.tokens!.refreshToken }))).toBe(status.UNAUTHENTICATED);
    // Other sessions of the same user are untouched.
    const other = await signing.login(a.tenantName, a.viewer.email, a.viewer.password);
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: other.refreshToken }))).toBe(status.OK);

    const audit = await unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { type: 'refresh_token.reused' }, { authorization: a.admin.authorization });
    expect(audit.events.some((e) => e.actorId === a.viewer.userId && e.subject?.id === a.viewer.userId)).toBe(true);
  });

  test('an unknown refresh token is UNAUTHENTICATED', async () => {
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: 'rt_made-up' }))).toBe(status.UNAUTHENTICATED);
  });

  test('logout revokes the refresh token and its family', async () => {
    const session = await signing.login(a.tenantName, a.operator.email, a.operator.password);
    const next = await unary(auth(), auth().refresh, { refreshToken: session.refreshToken });
    await unary(auth(), auth().logout, { refreshToken: next.tokens!.refreshToken });
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: next.tokens!.refreshToken }))).toBe(status.UNAUTHENTICATED);
    // Logging out twice, or with an unknown token, is harmless.
    await unary(auth(), auth().logout, { refreshToken: next.tokens!.refreshToken });
    await unary(auth(), auth().logout, { refreshToken: 'rt_unknown' });
  });

  test('changing the password needs the current one, ends sessions and takes effect at login', async () => {
    const t = await signing.createTenant();
    const session = await signing.login(t.tenantName, t.operator.email, t.operator.password);
    const wrong = await failureOf(
      unary(users(), users().changePassword, { currentPassword: 'not-my-password', newPassword: 'a-brand-new-password-1' }, { authorization: session.authorization }),
    );
    expect(wrong.code).toBe(status.PERMISSION_DENIED);
    const weak = await failureOf(unary(users(), users().changePassword, { currentPassword: t.operator.password, newPassword: 'short' }, { authorization: session.authorization }));
    expect(fields(weak)).toEqual(['new_password']);
    expect(weak.fieldViolations[0].description).toMatch(/at least 12 characters/);

    const res = await unary(users(), users().changePassword, { currentPassword: t.operator.password, newPassword: 'a-brand-new-password-1' }, { authorization: session.authorization });
    expect(res.changeTime).toBeInstanceOf(Date);
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: session.refreshToken }))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(signing.login(t.tenantName, t.operator.email, t.operator.password))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(signing.login(t.tenantName, t.operator.email, 'a-brand-new-password-1'))).toBe(status.OK);
    // API keys have no password.
    const key = await t.createApiKey('admin');
    expect(await codeOf(unary(users(), users().changePassword, { currentPassword: 'whatever-it-is', newPassword: 'another-new-password-2' }, { authorization: key.authorization }))).toBe(
      status.FAILED_PRECONDITION,
    );
  });
});

describe('users and roles', () => {
  test('admins create, list (paged), update and delete users of their tenant', async () => {
    const admin = { authorization: a.admin.authorization };
    const created = await unary(users(), users().createUser, { email: 'New.User@Example.test', displayName: ' New ', password: 'new-user-password-1', role: Role.ROLE_VIEWER }, admin);
    expect(created.user).toMatchObject({ email: 'new.user@example.test', displayName: 'New', role: Role.ROLE_VIEWER, tenantId: a.tenantId });
    expect(await codeOf(unary(users(), users().createUser, { email: 'new.user@example.test', displayName: '', password: 'new-user-password-1', role: Role.ROLE_VIEWER }, admin))).toBe(
      status.ALREADY_EXISTS,
    );

    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await unary(users(), users().listUsers, { page: { pageSize: 2, pageToken } }, admin);
      expect(page.users.length).toBeLessThanOrEqual(2);
      seen.push(...page.users.map((u) => u.id));
      pageToken = page.page?.nextPageToken ?? '';
    } while (pageToken);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining([a.admin.userId, a.operator.userId, a.viewer.userId, created.user!.id]));

    const session = await signing.login(a.tenantName, 'new.user@example.test', 'new-user-password-1');
    const updated = await unary(users(), users().updateUser, { user: { ...created.user!, role: Role.ROLE_OPERATOR, displayName: 'Renamed' }, updateMask: ['role'] }, admin);
    expect(updated.user).toMatchObject({ role: Role.ROLE_OPERATOR, displayName: 'New' });
    // A role change ends the user's sessions, so the new role applies at the next login.
    expect(await codeOf(unary(auth(), auth().refresh, { refreshToken: session.refreshToken }))).toBe(status.UNAUTHENTICATED);
    const renamed = await unary(users(), users().updateUser, { user: { ...created.user!, displayName: 'Renamed' }, updateMask: ['display_name'] }, admin);
    expect(renamed.user).toMatchObject({ role: Role.ROLE_OPERATOR, displayName: 'Renamed' });

    await unary(users(), users().deleteUser, { id: created.user!.id }, admin);
    expect(await codeOf(unary(users(), users().getUser, { id: created.user!.id }, admin))).toBe(status.NOT_FOUND);
    expect(await codeOf(signing.login(a.tenantName, 'new.user@example.test', 'new-user-password-1'))).toBe(status.UNAUTHENTICATED);
  });

  test('admins cannot demote or delete themselves', async () => {
    const admin = { authorization: a.admin.authorization };
    const me = (await unary(users(), users().getUser, { id: a.admin.userId }, admin)).user!;
    expect(await codeOf(unary(users(), users().updateUser, { user: { ...me, role: Role.ROLE_VIEWER }, updateMask: ['role'] }, admin))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(unary(users(), users().deleteUser, { id: a.admin.userId }, admin))).toBe(status.FAILED_PRECONDITION);
  });

  test('the role table is enforced at signing', async () => {
    const newUser = { email: 'x@example.test', displayName: '', password: 'some-long-password-1', role: Role.ROLE_VIEWER };
    expect(await codeOf(unary(users(), users().createUser, newUser, { authorization: a.operator.authorization }))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(unary(users(), users().listUsers, {}, { authorization: a.viewer.authorization }))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(unary(apiKeys(), apiKeys().createApiKey, { name: 'k', role: Role.ROLE_VIEWER }, { authorization: a.operator.authorization }))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(unary(signing.clients.auth, auth().rotateSigningKey, {}, { authorization: a.admin.authorization }))).toBe(status.PERMISSION_DENIED);
    const tenant = { name: 'not-allowed', adminEmail: 'x@example.test', adminPassword: 'some-long-password-1', adminDisplayName: '' };
    expect(await codeOf(unary(tenants(), tenants().createTenant, tenant, { authorization: a.admin.authorization }))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(unary(tenants(), tenants().listTenants, {}, { authorization: a.admin.authorization }))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(unary(users(), users().listUsers, {}))).toBe(status.UNAUTHENTICATED);
    // A platform admin lists every tenant.
    const all = await unary(tenants(), tenants().listTenants, { page: { pageSize: 500, pageToken: '' } }, { authorization: signing.platformAdmin.authorization });
    expect(all.tenants.map((t) => t.id)).toEqual(expect.arrayContaining([a.tenantId, b.tenantId, signing.platformAdmin.tenantId]));
  });
});

describe('tenant isolation', () => {
  test("another tenant's users, keys and tenant are NOT_FOUND", async () => {
    const fromA = { authorization: a.admin.authorization };
    const keyOfB = await b.createApiKey('viewer');
    const bUser = (await unary(users(), users().getUser, { id: b.viewer.userId }, { authorization: b.admin.authorization })).user!;
    expect(await codeOf(unary(users(), users().getUser, { id: b.viewer.userId }, fromA))).toBe(status.NOT_FOUND);
    expect(await codeOf(unary(users(), users().updateUser, { user: { ...bUser, displayName: 'hijacked' }, updateMask: ['display_name'] }, fromA))).toBe(status.NOT_FOUND);
    expect(await codeOf(unary(users(), users().deleteUser, { id: b.viewer.userId }, fromA))).toBe(status.NOT_FOUND);
    expect(await codeOf(unary(apiKeys(), apiKeys().revokeApiKey, { id: keyOfB.id }, fromA))).toBe(status.NOT_FOUND);
    expect(await codeOf(unary(tenants(), tenants().getTenant, { id: b.tenantId }, fromA))).toBe(status.NOT_FOUND);
    // Nothing changed in B.
    expect((await unary(auth(), auth().whoAmI, {}, { authorization: keyOfB.authorization })).principal?.tenantId).toBe(b.tenantId);
    expect((await unary(users(), users().getUser, { id: b.viewer.userId }, { authorization: b.admin.authorization })).user?.displayName).toBe(bUser.displayName);

    const listed = await unary(users(), users().listUsers, { page: { pageSize: 500, pageToken: '' } }, fromA);
    expect(listed.users.every((u) => u.tenantId === a.tenantId)).toBe(true);
    const keys = await unary(apiKeys(), apiKeys().listApiKeys, {}, fromA);
    expect(keys.apiKeys.some((k) => k.id === keyOfB.id)).toBe(false);
    // Own tenant: visible to any role; another tenant: visible to platform admins only.
    expect((await unary(tenants(), tenants().getTenant, { id: a.tenantId }, { authorization: a.viewer.authorization })).tenant?.name).toBe(a.tenantName);
    expect((await unary(tenants(), tenants().getTenant, { id: b.tenantId }, { authorization: signing.platformAdmin.authorization })).tenant?.name).toBe(b.tenantName);
  });

  test('tenant names are unique', async () => {
    const again = { name: a.tenantName, adminEmail: 'x@example.test', adminPassword: 'some-long-password-1', adminDisplayName: '' };
    expect(await codeOf(unary(tenants(), tenants().createTenant, again, { authorization: signing.platformAdmin.authorization }))).toBe(status.ALREADY_EXISTS);
  });
});

describe('every RPC validates its input with field violations', () => {
  const cases: Array<[string, () => Promise<unknown>, string[]]> = [
    // Without the token nothing else of the request is looked at; with it, every field is.
    ['Bootstrap', () => unary(auth(), auth().bootstrap, { bootstrapToken: '', tenantName: 'Bad Name', adminEmail: 'nope', adminPassword: 'short', adminDisplayName: '' }), ['bootstrap_token']],
    ['Bootstrap with the token', () => unary(auth(), auth().bootstrap, { bootstrapToken: signing.bootstrapToken, tenantName: 'Bad Name', adminEmail: 'nope', adminPassword: 'short', adminDisplayName: '' }), ['admin_email', 'admin_password', 'tenant_name']],
    ['Login', () => unary(auth(), auth().login, { tenant: '', email: '', password: '' }), ['email', 'password', 'tenant']],
    ['Refresh', () => unary(auth(), auth().refresh, { refreshToken: '' }), ['refresh_token']],
    ['Logout', () => unary(auth(), auth().logout, { refreshToken: '' }), ['refresh_token']],
    ['CreateTenant', () => unary(tenants(), tenants().createTenant, { name: '-x', adminEmail: '', adminPassword: 'aaaaaaaaaaaaaaaa', adminDisplayName: '' }, { authorization: signing.platformAdmin.authorization }), ['admin_email', 'admin_password', 'name']],
    ['GetTenant', () => unary(tenants(), tenants().getTenant, { id: 'not-a-uuid' }, { authorization: a.admin.authorization }), ['id']],
    ['ListTenants', () => unary(tenants(), tenants().listTenants, { page: { pageSize: -1, pageToken: 'garbage!' } }, { authorization: signing.platformAdmin.authorization }), ['page.page_size']],
    ['CreateUser', () => unary(users(), users().createUser, { email: 'x', displayName: '', password: '', role: Role.ROLE_UNSPECIFIED }, { authorization: a.admin.authorization }), ['email', 'password', 'role']],
    ['GetUser', () => unary(users(), users().getUser, { id: '' }, { authorization: a.admin.authorization }), ['id']],
    ['ListUsers', () => unary(users(), users().listUsers, { page: { pageSize: 10, pageToken: 'not-a-token' } }, { authorization: a.admin.authorization }), ['page.page_token']],
    ['UpdateUser', () => unary(users(), users().updateUser, { user: undefined, updateMask: ['email'] }, { authorization: a.admin.authorization }), ['update_mask', 'user.id']],
    ['DeleteUser', () => unary(users(), users().deleteUser, { id: '123' }, { authorization: a.admin.authorization }), ['id']],
    ['ChangePassword', () => unary(users(), users().changePassword, { currentPassword: '', newPassword: '' }, { authorization: a.viewer.authorization }), ['current_password', 'new_password']],
    ['CreateApiKey', () => unary(apiKeys(), apiKeys().createApiKey, { name: ' ', role: Role.ROLE_UNSPECIFIED, expireTime: new Date(Date.now() - 1000) }, { authorization: a.admin.authorization }), ['expire_time', 'name', 'role']],
    ['ListApiKeys', () => unary(apiKeys(), apiKeys().listApiKeys, { page: { pageSize: -5, pageToken: '' } }, { authorization: a.admin.authorization }), ['page.page_size']],
    ['RevokeApiKey', () => unary(apiKeys(), apiKeys().revokeApiKey, { id: '' }, { authorization: a.admin.authorization }), ['id']],
    ['ListAuditEvents', () => unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { type: 'Bad Type!', timeRange: { start: new Date(2000), end: new Date(1000) } }, { authorization: a.admin.authorization }), ['time_range', 'type']],
  ];

  test.each(cases)('%s', async (_name, call, expected) => {
    const failure = await failureOf(call());
    expect(failure.code).toBe(status.INVALID_ARGUMENT);
    expect(fields(failure)).toEqual(expected);
    for (const v of failure.fieldViolations) expect(v.description.length).toBeGreaterThan(0);
  });
});
