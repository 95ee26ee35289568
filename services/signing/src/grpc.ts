import {
  callerPrincipal,
  CallContext,
  defineService,
  pageSize,
  Role,
  roleFromName,
  RoleName,
  roleName,
  ServiceRegistration,
  Violations,
} from '@iot-mesh/runtime';
import { PageRequest } from '../../../gen/ts/iot/common/v1/common';
import { ApiKey, ApiKeyServiceService } from '../../../gen/ts/iot/signing/v1/api_keys';
import { AuditEvent, AuditServiceService } from '../../../gen/ts/iot/signing/v1/audit';
import { AuthServiceService, PrincipalKind, Tenant, TokenPair, User } from '../../../gen/ts/iot/signing/v1/auth';
import { TenantServiceService } from '../../../gen/ts/iot/signing/v1/tenants';
import { UserServiceService } from '../../../gen/ts/iot/signing/v1/users';
import { AuditEventRecord } from './audit';
import { passwordWeakness } from './passwords';
import { IdentityService, IssuedTokens, RequestOrigin } from './service';
import { ApiKeyRecord, TenantRecord, UserRecord } from './store/records';

/** How handlers learn the client's address. */
export interface OriginOptions {
  /** Take the first `x-forwarded-for` address (only behind a trusted edge). */
  trustForwardedFor: boolean;
}

const TENANT_NAME = /^[a-z0-9][a-z0-9-]{1,62}$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const AUDIT_TYPE = /^[a-z_]+(\.[a-z_]+)*$/;

// --- request checks -------------------------------------------------------

function checkTenantName(v: Violations, name: string, field: string): void {
  if (v.required(name, field)) v.matches(name, TENANT_NAME, field, 'must be 2-63 lower-case letters, digits or dashes, starting with a letter or digit');
}

function checkEmail(v: Violations, email: string, field: string): void {
  if (v.required(email, field)) {
    v.maxLength(email, 254, field);
    v.matches(email, EMAIL, field, 'must be an email address');
  }
}

function checkNewPassword(v: Violations, password: string, email: string, field: string): void {
  if (v.required(password, field)) {
    const weakness = passwordWeakness(password, email);
    if (weakness) v.add(field, weakness);
  }
}

function checkId(v: Violations, id: string, field: string): void {
  if (v.required(id, field)) v.matches(id, UUID, field, 'must be an id this service issued (a UUID)');
}

function checkRole(v: Violations, role: Role, field: string): RoleName | undefined {
  const name = roleName(role);
  v.check(name !== undefined, field, 'must be ROLE_ADMIN, ROLE_OPERATOR or ROLE_VIEWER');
  return name;
}

function checkPage(v: Violations, page: PageRequest | undefined): { limit: number; pageToken?: string } {
  v.check((page?.pageSize ?? 0) >= 0, 'page.page_size', 'must not be negative');
  return { limit: pageSize(page?.pageSize, 50, 500), pageToken: page?.pageToken || undefined };
}

const normalEmail = (email: string) => email.trim().toLowerCase();
const normalName = (name: string) => name.trim().toLowerCase();

/** The client's address without its port: `ipv4:1.2.3.4:5678` → `1.2.3.4`. */
export function originOf(ctx: CallContext, options: OriginOptions): RequestOrigin {
  if (options.trustForwardedFor) {
    const forwarded = ctx.metadata.get('x-forwarded-for')[0];
    if (forwarded) return { address: String(forwarded).split(',')[0].trim() };
  }
  const peer = ctx.peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(peer);
  if (bracketed) return { address: bracketed[1] };
  const v4 = /^([^:]+):\d+$/.exec(peer);
  return { address: v4 ? v4[1] : peer || 'unknown' };
}

// --- responses ------------------------------------------------------------

function tenantMessage(t: TenantRecord): Tenant {
  return { id: t.id, name: t.name, createTime: t.createTime };
}

function userMessage(u: UserRecord): User {
  return { id: u.id, tenantId: u.tenantId, email: u.email, displayName: u.displayName, role: roleFromName(u.role)!, createTime: u.createTime, updateTime: u.updateTime };
}

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

function tokenPair(t: IssuedTokens): TokenPair {
  return { ...t, tokenType: 'Bearer' };
}

function auditEventMessage(e: AuditEventRecord): AuditEvent {
  return {
    id: e.id,
    tenantId: e.tenantId ?? '',
    type: e.type,
    actorId: e.actorId,
    subject: { tenantId: e.tenantId ?? '', kind: e.subject.kind, id: e.subject.id },
    sourceAddress: e.sourceAddress,
    details: e.details,
    time: e.time,
  };
}

// --- handlers -------------------------------------------------------------

/** The gRPC services of signing: decode → validate → domain call → encode. */
export function signingRegistrations(identity: IdentityService, originOptions: OriginOptions): ServiceRegistration[] {
  const origin = (ctx: CallContext) => originOf(ctx, originOptions);

  const auth = defineService(AuthServiceService, {
    async bootstrap(req, ctx) {
      const v = new Violations();
      v.required(req.bootstrapToken, 'bootstrap_token');
      const tenantName = normalName(req.tenantName);
      const email = normalEmail(req.adminEmail);
      checkTenantName(v, tenantName, 'tenant_name');
      checkEmail(v, email, 'admin_email');
      checkNewPassword(v, req.adminPassword, email, 'admin_password');
      v.maxLength(req.adminDisplayName, 200, 'admin_display_name');
      v.throwIfAny();
      const { tenant, admin } = await identity.bootstrap(
        { bootstrapToken: req.bootstrapToken, tenantName, email, password: req.adminPassword, displayName: req.adminDisplayName.trim() },
        origin(ctx),
      );
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
      const { tokens, user } = await identity.login({ tenant: normalName(req.tenant), email: normalEmail(req.email), password: req.password }, origin(ctx));
      return { tokens: tokenPair(tokens), user: userMessage(user) };
    },

    async refresh(req, ctx) {
      const v = new Violations();
      v.required(req.refreshToken, 'refresh_token');
      v.maxLength(req.refreshToken, 200, 'refresh_token');
      v.throwIfAny();
      return { tokens: tokenPair(await identity.refresh(req.refreshToken, origin(ctx))) };
    },

    async logout(req, ctx) {
      const v = new Violations();
      v.required(req.refreshToken, 'refresh_token');
      v.maxLength(req.refreshToken, 200, 'refresh_token');
      v.throwIfAny();
      await identity.logout(req.refreshToken, origin(ctx));
      return {};
    },

    async whoAmI(_req, ctx) {
      const p = await identity.whoAmI(callerPrincipal(ctx));
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
      return { keys: await identity.publishedKeys() };
    },

    async rotateSigningKey(_req, ctx) {
      return { kid: await identity.rotateSigningKey(callerPrincipal(ctx), origin(ctx)) };
    },
  });

  const tenants = defineService(TenantServiceService, {
    async createTenant(req, ctx) {
      const v = new Violations();
      const name = normalName(req.name);
      const email = normalEmail(req.adminEmail);
      checkTenantName(v, name, 'name');
      checkEmail(v, email, 'admin_email');
      checkNewPassword(v, req.adminPassword, email, 'admin_password');
      v.maxLength(req.adminDisplayName, 200, 'admin_display_name');
      v.throwIfAny();
      const { tenant, admin } = await identity.createTenant(
        callerPrincipal(ctx),
        { name, email, password: req.adminPassword, displayName: req.adminDisplayName.trim() },
        origin(ctx),
      );
      return { tenant: tenantMessage(tenant), admin: userMessage(admin) };
    },

    async getTenant(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      return { tenant: tenantMessage(await identity.getTenant(callerPrincipal(ctx), req.id)) };
    },

    async listTenants(req) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      v.throwIfAny();
      const result = await identity.listTenants(page.limit, page.pageToken);
      return { tenants: result.items.map(tenantMessage), page: { nextPageToken: result.nextPageToken } };
    },
  });

  const users = defineService(UserServiceService, {
    async createUser(req, ctx) {
      const v = new Violations();
      const email = normalEmail(req.email);
      checkEmail(v, email, 'email');
      v.maxLength(req.displayName, 200, 'display_name');
      checkNewPassword(v, req.password, email, 'password');
      const role = checkRole(v, req.role, 'role');
      v.throwIfAny();
      const user = await identity.createUser(callerPrincipal(ctx), { email, displayName: req.displayName.trim(), password: req.password, role: role! }, origin(ctx));
      return { user: userMessage(user) };
    },

    async getUser(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      return { user: userMessage(await identity.getUser(callerPrincipal(ctx), req.id)) };
    },

    async listUsers(req, ctx) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      v.throwIfAny();
      const result = await identity.listUsers(callerPrincipal(ctx), page.limit, page.pageToken);
      return { users: result.items.map(userMessage), page: { nextPageToken: result.nextPageToken } };
    },

    async updateUser(req, ctx) {
      const v = new Violations();
      const paths = (req.updateMask ?? []).map((p) => (p === 'displayName' ? 'display_name' : p));
      if (v.required(req.user?.id, 'user.id')) checkId(v, req.user!.id, 'user.id');
      v.check(paths.length > 0, 'update_mask', 'must name the fields to change: display_name, role');
      for (const path of paths) v.check(path === 'display_name' || path === 'role', 'update_mask', `${JSON.stringify(path)} cannot be changed; use display_name or role`);
      const changes: { displayName?: string; role?: RoleName } = {};
      if (paths.includes('display_name')) {
        v.maxLength(req.user?.displayName, 200, 'user.display_name');
        changes.displayName = (req.user?.displayName ?? '').trim();
      }
      if (paths.includes('role')) changes.role = checkRole(v, req.user?.role ?? Role.ROLE_UNSPECIFIED, 'user.role');
      v.throwIfAny();
      return { user: userMessage(await identity.updateUser(callerPrincipal(ctx), req.user!.id, changes, origin(ctx))) };
    },

    async deleteUser(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      await identity.deleteUser(callerPrincipal(ctx), req.id, origin(ctx));
      return {};
    },

    async changePassword(req, ctx) {
      const caller = callerPrincipal(ctx);
      const v = new Violations();
      v.required(req.currentPassword, 'current_password');
      v.maxLength(req.currentPassword, 1024, 'current_password');
      checkNewPassword(v, req.newPassword, caller.name ?? '', 'new_password');
      v.check(!req.newPassword || req.newPassword !== req.currentPassword, 'new_password', 'must differ from the current password');
      v.throwIfAny();
      return { changeTime: await identity.changePassword(caller, { currentPassword: req.currentPassword, newPassword: req.newPassword }, origin(ctx)) };
    },
  });

  const apiKeys = defineService(ApiKeyServiceService, {
    async createApiKey(req, ctx) {
      const v = new Violations();
      if (v.required(req.name.trim(), 'name')) v.maxLength(req.name, 100, 'name');
      const role = checkRole(v, req.role, 'role');
      if (req.expireTime) v.check(req.expireTime.getTime() > Date.now(), 'expire_time', 'must be in the future');
      v.throwIfAny();
      const { apiKey, secret } = await identity.createApiKey(callerPrincipal(ctx), { name: req.name.trim(), role: role!, expireTime: req.expireTime }, origin(ctx));
      return { apiKey: apiKeyMessage(apiKey), secret };
    },

    async listApiKeys(req, ctx) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      v.throwIfAny();
      const result = await identity.listApiKeys(callerPrincipal(ctx), page.limit, page.pageToken);
      return { apiKeys: result.items.map(apiKeyMessage), page: { nextPageToken: result.nextPageToken } };
    },

    async revokeApiKey(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      return { apiKey: apiKeyMessage(await identity.revokeApiKey(callerPrincipal(ctx), req.id, origin(ctx))) };
    },
  });

  const audit = defineService(AuditServiceService, {
    async listAuditEvents(req, ctx) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      const { start, end } = req.timeRange ?? {};
      if (start && end) v.check(start.getTime() < end.getTime(), 'time_range', 'start must be before end');
      if (req.type) v.matches(req.type, AUDIT_TYPE, 'type', 'must look like login.failed');
      v.throwIfAny();
      const result = await identity.listAuditEvents(callerPrincipal(ctx), { ...page, start, end, type: req.type || undefined });
      return { events: result.items.map(auditEventMessage), page: { nextPageToken: result.nextPageToken } };
    },
  });

  return [auth, tenants, users, apiKeys, audit];
}
