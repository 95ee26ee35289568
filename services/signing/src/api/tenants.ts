import { callerPrincipal, CallContext, defineService, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { TenantServiceService } from '../../../../gen/ts/iot/signing/v1/tenants';
import type { Tenants } from '../domain/tenants';
import { tenantMessage, userMessage } from './messages';
import { checkId, checkNewTenant, checkPage, originOf, OriginOptions } from './requests';

/** `iot.signing.v1.TenantService`: create, get and list tenants. */
export function tenantService(tenants: Tenants, originOptions: OriginOptions): ServiceRegistration {
  const origin = (ctx: CallContext) => originOf(ctx, originOptions);

  return defineService(TenantServiceService, {
    async createTenant(req, ctx) {
      const v = new Violations();
      const input = checkNewTenant(v, req, 'name');
      v.throwIfAny();
      const { tenant, admin } = await tenants.create(callerPrincipal(ctx), input, origin(ctx));
      return { tenant: tenantMessage(tenant), admin: userMessage(admin) };
    },

    async getTenant(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      return { tenant: tenantMessage(await tenants.get(callerPrincipal(ctx), req.id)) };
    },

    async listTenants(req) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      v.throwIfAny();
      const result = await tenants.list(page.limit, page.pageToken);
      return { tenants: result.items.map(tenantMessage), page: { nextPageToken: result.nextPageToken } };
    },
  });
}
