import { callerPrincipal, CallContext, defineService, roleFromName, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { ApiKey, ApiKeyServiceService } from '../../../../gen/ts/iot/signing/v1/api_keys';
import type { ApiKeys } from '../domain/api-keys';
import type { ApiKeyRecord } from '../store/api-keys';
import { checkId, checkPage, checkRole, originOf, OriginOptions } from './requests';

function apiKeyMessage(k: ApiKeyRecord): ApiKey {
  return {
    id: k.id,
    tenantId: k.tenantId,
    name: k.name,
    prefix: k.prefix,
    role: roleFromName(k.role)!,
    createTime: k.createTime,
    expireTime: k.expireTime ?? undefined,
    revokeTime: k.revokeTime ?? undefined,
    lastUsedTime: k.lastUsedTime ?? undefined,
  };
}

/** `iot.signing.v1.ApiKeyService`: the API keys of the caller's tenant. */
export function apiKeyService(apiKeys: ApiKeys, originOptions: OriginOptions): ServiceRegistration {
  const origin = (ctx: CallContext) => originOf(ctx, originOptions);

  return defineService(ApiKeyServiceService, {
    async createApiKey(req, ctx) {
      const v = new Violations();
      if (v.required(req.name.trim(), 'name')) v.maxLength(req.name, 100, 'name');
      const role = checkRole(v, req.role, 'role');
      if (req.expireTime) v.check(req.expireTime.getTime() > Date.now(), 'expire_time', 'must be in the future');
      v.throwIfAny();
      const { apiKey, secret } = await apiKeys.create(callerPrincipal(ctx), { name: req.name.trim(), role: role!, expireTime: req.expireTime }, origin(ctx));
      return { apiKey: apiKeyMessage(apiKey), secret };
    },

    async listApiKeys(req, ctx) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      v.throwIfAny();
      const result = await apiKeys.list(callerPrincipal(ctx), page.limit, page.pageToken);
      return { apiKeys: result.items.map(apiKeyMessage), page: { nextPageToken: result.nextPageToken } };
    },

    async revokeApiKey(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      return { apiKey: apiKeyMessage(await apiKeys.revoke(callerPrincipal(ctx), req.id, origin(ctx))) };
    },
  });
}
