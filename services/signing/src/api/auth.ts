import { callerPrincipal, CallContext, defineService, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { AuthServiceService, PrincipalKind, TokenPair } from '../../../../gen/ts/iot/signing/v1/auth';
import type { IssuedTokens, Sessions } from '../domain/sessions';
import type { SigningKeys } from '../domain/signing-keys';
import type { Tenants } from '../domain/tenants';
import { countLogin } from '../metrics';
import { tenantMessage, userMessage } from './messages';
import { checkNewTenant, normalEmail, normalName, originOf, OriginOptions } from './requests';

function tokenPair(t: IssuedTokens): TokenPair {
  return { ...t, tokenType: 'Bearer' };
}

/** `iot.signing.v1.AuthService`: bootstrap, login, refresh, logout, who-am-I and the signing keys. */
export function authService(domain: { sessions: Sessions; tenants: Tenants; keys: SigningKeys }, originOptions: OriginOptions): ServiceRegistration {
  const { sessions, tenants, keys } = domain;
  const origin = (ctx: CallContext) => originOf(ctx, originOptions);

  return defineService(AuthServiceService, {
    async bootstrap(req, ctx) {
      const v = new Violations();
      if (v.required(req.bootstrapToken, 'bootstrap_token')) v.maxLength(req.bootstrapToken, 1024, 'bootstrap_token');
      v.throwIfAny();
      // A public RPC: nothing of the request is looked at before the token is accepted (issue 13, finding 4).
      const { tenant, admin } = await tenants.bootstrap(req.bootstrapToken, origin(ctx), () => {
        const input = checkNewTenant(v, { ...req, name: req.tenantName }, 'tenant_name');
        v.throwIfAny();
        return input;
      });
      return { tenant: tenantMessage(tenant), admin: userMessage(admin) };
    },

    async login(req, ctx) {
      const v = new Violations();
      v.required(req.tenant, 'tenant');
      v.required(req.email, 'email');
      v.required(req.password, 'password');
      v.maxLength(req.tenant, 63, 'tenant');
      v.maxLength(req.email, 254, 'email');
      v.maxLength(req.password, 1024, 'password');
      v.throwIfAny();
      const { tokens, user } = await countLogin(sessions.login({ tenant: normalName(req.tenant), email: normalEmail(req.email), password: req.password }, origin(ctx)));
      return { tokens: tokenPair(tokens), user: userMessage(user) };
    },

    async refresh(req, ctx) {
      const v = new Violations();
      v.required(req.refreshToken, 'refresh_token');
      v.maxLength(req.refreshToken, 200, 'refresh_token');
      v.throwIfAny();
      return { tokens: tokenPair(await sessions.refresh(req.refreshToken, origin(ctx))) };
    },

    async logout(req, ctx) {
      const v = new Violations();
      v.required(req.refreshToken, 'refresh_token');
      v.maxLength(req.refreshToken, 200, 'refresh_token');
      v.throwIfAny();
      await sessions.logout(req.refreshToken, origin(ctx));
      return {};
    },

    async whoAmI(_req, ctx) {
      const p = await sessions.whoAmI(callerPrincipal(ctx));
      return {
        principal: {
          kind: p.kind === 'api_key' ? PrincipalKind.PRINCIPAL_KIND_API_KEY : PrincipalKind.PRINCIPAL_KIND_USER,
          id: p.id,
          tenantId: p.tenantId,
          role: p.role,
          name: p.name,
          platformAdmin: p.platformAdmin,
        },
      };
    },

    async getJwks() {
      return { keys: await keys.publishedKeys() };
    },

    async rotateSigningKey(_req, ctx) {
      return { kid: await keys.rotate(callerPrincipal(ctx), origin(ctx)) };
    },
  });
}
