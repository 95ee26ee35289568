import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { AuditService } from '../../gen/es/iot/signing/v1/audit_pb';
import { AuthService, WhoAmIRequestSchema, WhoAmIResponseSchema } from '../../gen/es/iot/signing/v1/auth_pb';
import { TenantService } from '../../gen/es/iot/signing/v1/tenants_pb';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { grpcWebText, grpcWebTransport, rest, startTestGateway } from './gateway-harness';

/* Round trips through the Node gateway to a real signing service (its own database, Redis, NATS). */
describe('gateway ↔ signing', () => {
  let signing: TestSigning;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;

  beforeAll(async () => {
    signing = await startSigningForTest();
    tenant = await signing.createTenant();
    gateway = await startTestGateway({ signing: signing.address });
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await signing?.stop();
  });

  describe('REST', () => {
    it('logs in with a JSON body and returns proto3 JSON', async () => {
      const res = await rest(gateway.base, 'POST', '/v1/auth:login', { body: { tenant: tenant.tenantName, email: tenant.operator.email, password: tenant.operator.password } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(res.json.tokens.tokenType).toBe('Bearer');
      expect(res.json.tokens.accessToken.split('.')).toHaveLength(3);
      expect(res.json.tokens.accessTokenExpireTime).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(res.json.user).toMatchObject({ email: tenant.operator.email, role: 'ROLE_OPERATOR' });
    });

    it('passes the Authorization header through, for bearer tokens and API keys', async () => {
      const me = await rest(gateway.base, 'GET', '/v1/auth/me', { authorization: tenant.admin.authorization });
      expect(me.status).toBe(200);
      expect(me.json.principal).toMatchObject({ kind: 'PRINCIPAL_KIND_USER', tenantId: tenant.tenantId, role: 'ROLE_ADMIN' });

      const created = await rest(gateway.base, 'POST', '/v1/api-keys', { authorization: tenant.admin.authorization, body: { name: 'ci', role: 'ROLE_VIEWER' } });
      expect(created.status).toBe(200);
      const asKey = await rest(gateway.base, 'GET', '/v1/auth/me', { authorization: `ApiKey ${created.json.secret}` });
      expect(asKey.json.principal).toMatchObject({ kind: 'PRINCIPAL_KIND_API_KEY', id: created.json.apiKey.id, role: 'ROLE_VIEWER' });
    });

    it('serves the JWKS document at its well-known path', async () => {
      const res = await rest(gateway.base, 'GET', '/.well-known/jwks.json');
      expect(res.status).toBe(200);
      expect(res.json.keys.length).toBeGreaterThan(0);
      expect(res.json.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    });

    it('binds path variables, query parameters and a body field', async () => {
      const page = await rest(gateway.base, 'GET', '/v1/users?page.pageSize=1', { authorization: tenant.admin.authorization });
      expect(page.status).toBe(200);
      expect(page.json.users).toHaveLength(1);
      expect(page.json.page.nextPageToken).toBeTruthy();
      // Proto names work as well as JSON names; a token the service cannot read proves it arrived.
      const badToken = await rest(gateway.base, 'GET', '/v1/users?page.page_size=1&page.page_token=not-a-token', { authorization: tenant.admin.authorization });
      expect(badToken.status).toBe(400);
      expect(JSON.stringify(badToken.json)).toContain('page_token');

      const patched = await rest(gateway.base, 'PATCH', `/v1/users/${tenant.viewer.userId}?updateMask=displayName`, {
        authorization: tenant.admin.authorization,
        body: { displayName: 'Renamed Viewer' },
      });
      expect(patched.status).toBe(200);
      expect(patched.json.user).toMatchObject({ id: tenant.viewer.userId, displayName: 'Renamed Viewer', role: 'ROLE_VIEWER' });
      const fetched = await rest(gateway.base, 'GET', `/v1/users/${tenant.viewer.userId}`, { authorization: tenant.admin.authorization });
      expect(fetched.json.user.displayName).toBe('Renamed Viewer');
    });

    it('maps gRPC errors to google.rpc.Status JSON with the transcoder HTTP codes', async () => {
      const badLogin = await rest(gateway.base, 'POST', '/v1/auth:login', { body: { tenant: tenant.tenantName, email: tenant.viewer.email, password: 'wrong-password' } });
      expect(badLogin.status).toBe(401);
      expect(badLogin.json).toMatchObject({ code: Code.Unauthenticated, message: expect.any(String) });

      const forbidden = await rest(gateway.base, 'POST', '/v1/users', { authorization: tenant.viewer.authorization, body: { email: 'x@example.test', password: 'long-enough-password-1', role: 'ROLE_VIEWER' } });
      expect(forbidden.status).toBe(403);
      expect(forbidden.json.code).toBe(Code.PermissionDenied);

      const invalid = await rest(gateway.base, 'POST', '/v1/users', { authorization: tenant.admin.authorization, body: { email: 'not-an-email', password: 'x', role: 'ROLE_VIEWER' } });
      expect(invalid.status).toBe(400);
      expect(invalid.json.code).toBe(Code.InvalidArgument);
      expect(invalid.json.details[0]['@type']).toBe('type.googleapis.com/google.rpc.BadRequest');
      expect(invalid.json.details[0].fieldViolations.map((v: { field: string }) => v.field)).toEqual(expect.arrayContaining(['email', 'password']));

      const missing = await rest(gateway.base, 'GET', '/v1/users/00000000-0000-0000-0000-000000000000', { authorization: tenant.admin.authorization });
      expect(missing.status).toBe(404);
      expect(missing.json.code).toBe(Code.NotFound);
    });

    it('rejects what cannot be transcoded before calling the service', async () => {
      const notJson = await rest(gateway.base, 'POST', '/v1/auth:login', { body: '{"tenant":' });
      expect(notJson).toMatchObject({ status: 400, json: { code: Code.InvalidArgument } });
      const unknownParam = await rest(gateway.base, 'GET', '/v1/users?colour=blue', { authorization: tenant.admin.authorization });
      expect(unknownParam.status).toBe(400);
      expect(unknownParam.json.message).toContain('colour');
      const wrongType = await rest(gateway.base, 'POST', '/v1/auth:login', { body: { tenant: 5 } });
      expect(wrongType.status).toBe(400);
      const wrongVerb = await rest(gateway.base, 'DELETE', '/v1/auth:login');
      expect(wrongVerb.status).toBe(405);
      const huge = await rest(gateway.base, 'POST', '/v1/auth:login', { body: { tenant: 'x'.repeat(5 * 1024 * 1024) } });
      expect(huge).toMatchObject({ status: 413, json: { code: Code.ResourceExhausted } });
    });
  });

  describe('gRPC-Web', () => {
    it('makes unary calls in binary with metadata passed through', async () => {
      const auth = createClient(AuthService, grpcWebTransport(gateway.base));
      const login = await auth.login({ tenant: tenant.tenantName, email: tenant.admin.email, password: tenant.admin.password });
      const me = await auth.whoAmI({}, { headers: { authorization: `Bearer ${login.tokens!.accessToken}` } });
      expect(me.principal).toMatchObject({ id: tenant.admin.userId, tenantId: tenant.tenantId });

      const tenants = createClient(TenantService, grpcWebTransport(gateway.base));
      const own = await tenants.getTenant({ id: tenant.tenantId }, { headers: { authorization: tenant.admin.authorization } });
      expect(own.tenant?.name).toBe(tenant.tenantName);

      const audit = createClient(AuditService, grpcWebTransport(gateway.base));
      const events = await audit.listAuditEvents({ type: 'login.succeeded' }, { headers: { authorization: tenant.admin.authorization } });
      expect(events.events.length).toBeGreaterThan(0);
      expect(events.events.every((e) => e.type === 'login.succeeded' && e.tenantId === tenant.tenantId)).toBe(true);
    });

    it('relays status codes, messages and google.rpc details', async () => {
      const auth = createClient(AuthService, grpcWebTransport(gateway.base));
      const unauthenticated = await auth.whoAmI({}).catch((e: unknown) => e);
      expect(unauthenticated).toBeInstanceOf(ConnectError);
      expect((unauthenticated as ConnectError).code).toBe(Code.Unauthenticated);

      const tenants = createClient(TenantService, grpcWebTransport(gateway.base));
      const invalid = (await tenants
        .createTenant({ name: 'Not A Valid Name!', adminEmail: 'nope', adminPassword: 'x' }, { headers: { authorization: signing.platformAdmin.authorization } })
        .catch((e: unknown) => e)) as ConnectError;
      expect(invalid.code).toBe(Code.InvalidArgument);
      expect(invalid.details.map((d) => ('type' in d ? d.type : d.desc.typeName))).toContain('google.rpc.BadRequest');
    });

    it('serves grpc-web-text (base64) as well', async () => {
      const ok = await grpcWebText(gateway.base, '/iot.signing.v1.AuthService/WhoAmI', WhoAmIRequestSchema, WhoAmIResponseSchema, {}, { authorization: tenant.operator.authorization });
      expect(ok.status).toBe(200);
      expect(ok.contentType).toBe('application/grpc-web-text+proto');
      expect(ok.trailers['grpc-status']).toBe('0');
      expect(ok.messages).toHaveLength(1);
      expect(ok.messages[0].principal?.id).toBe(tenant.operator.userId);

      const denied = await grpcWebText(gateway.base, '/iot.signing.v1.AuthService/WhoAmI', WhoAmIRequestSchema, WhoAmIResponseSchema, {});
      expect(denied.messages).toHaveLength(0);
      expect(denied.trailers['grpc-status']).toBe(String(Code.Unauthenticated));
    });
  });

  describe('CORS', () => {
    it('answers preflights with the methods and headers browsers need', async () => {
      const res = await fetch(`${gateway.base}/iot.signing.v1.AuthService/Login`, {
        method: 'OPTIONS',
        headers: { origin: 'http://dashboard.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-grpc-web,x-user-agent' },
      });
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe('http://dashboard.test');
      expect(res.headers.get('access-control-allow-methods')?.split(',')).toEqual(expect.arrayContaining(['POST', 'GET', 'PUT', 'PATCH', 'DELETE']));
      expect(res.headers.get('access-control-allow-headers')?.split(',')).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-grpc-web', 'x-user-agent']));
    });

    it('exposes grpc-status and grpc-message on actual responses', async () => {
      const res = await rest(gateway.base, 'GET', '/.well-known/jwks.json', { headers: { origin: 'http://dashboard.test' } });
      expect(res.headers.get('access-control-allow-origin')).toBe('http://dashboard.test');
      expect(res.headers.get('access-control-expose-headers')?.split(',')).toEqual(expect.arrayContaining(['grpc-status', 'grpc-message']));
    });

    it('refuses origins outside the allowed list', async () => {
      const strict = await startTestGateway({ signing: signing.address }, ['http://allowed.test']);
      try {
        const denied = await fetch(`${strict.base}/v1/auth:login`, { method: 'OPTIONS', headers: { origin: 'http://evil.test', 'access-control-request-method': 'POST' } });
        expect(denied.status).toBe(403);
        expect(denied.headers.get('access-control-allow-origin')).toBeNull();
        const allowed = await fetch(`${strict.base}/v1/auth:login`, { method: 'OPTIONS', headers: { origin: 'http://allowed.test', 'access-control-request-method': 'POST' } });
        expect(allowed.status).toBe(204);
      } finally {
        await strict.close();
      }
    });
  });
});
