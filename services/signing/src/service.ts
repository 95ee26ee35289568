import crypto from 'node:crypto';
import {
  AccessTokenClaims,
  decodePageToken,
  encodePageToken,
  errors,
  Logger,
  Pool,
  Principal,
  PublicJwk,
  RoleName,
  roleFromName,
  signAccessToken,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  withTransaction,
} from '@iot-mesh/runtime';
import { AuditEventInput, AuditEventRecord, AuditLog } from './audit';
import { SigningKeyStore } from './keys/key-store';
import { hashPassword, verifyAgainstNothing, verifyPassword } from './passwords';
import { newApiKeySecret, newRefreshToken, secretDigest, secretsEqual } from './secrets';
import { identityStore as store } from './store/postgres';
import { ApiKeyRecord, Cursor, TenantRecord, UserRecord } from './store/records';
import { LoginThrottle } from './throttle';

/** Lifetimes and secrets the identity service is configured with. */
export interface IdentitySettings {
  /** SIGNING_BOOTSTRAP_TOKEN; bootstrap is disabled without it. */
  bootstrapToken?: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** scrypt cost of new password hashes, as log2(N). */
  passwordCost: number;
}

/** Tokens handed to a client by login and refresh. */
export interface IssuedTokens {
  accessToken: string;
  accessTokenExpireTime: Date;
  refreshToken: string;
  refreshTokenExpireTime: Date;
}

/** Where a request came from, for throttling and audit. */
export interface RequestOrigin {
  address: string;
}

/** One page of a list and the token of the next. */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** A user principal's public view with its name. */
export type DescribedPrincipal = Principal & { name: string };

function cursorOf(token: string | undefined): Cursor | undefined {
  const cursor = decodePageToken(token);
  if (!cursor) return undefined;
  if (cursor.length !== 2 || typeof cursor[0] !== 'string' || typeof cursor[1] !== 'string' || Number.isNaN(Date.parse(cursor[0]))) {
    throw errors.invalidArgument([{ field: 'page.page_token', description: 'is not a token this server issued' }]);
  }
  return cursor as Cursor;
}

function pageOf<T extends { createTime: Date; id: string }>(rows: T[], limit: number): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextPageToken: rows.length > limit && last ? encodePageToken([last.createTime.toISOString(), last.id]) : '' };
}

/**
 * The identity domain: tenants, users, tokens, API keys, signing keys and
 * audit. No transport here; handlers validate input and map the results.
 */
export class IdentityService {
  constructor(
    private readonly pool: Pool,
    private readonly keys: SigningKeyStore,
    private readonly throttle: LoginThrottle,
    private readonly audit: AuditLog,
    private readonly settings: IdentitySettings,
    private readonly log: Logger,
  ) {}

  // --- bootstrap and tenants ---

  /** Creates the platform tenant and its first admin, once, given the configured bootstrap token. */
  async bootstrap(input: { bootstrapToken: string; tenantName: string; email: string; password: string; displayName: string }, origin: RequestOrigin) {
    if (!this.settings.bootstrapToken) throw errors.failedPrecondition('bootstrap is disabled: set SIGNING_BOOTSTRAP_TOKEN on the signing service');
    const subject = { account: 'bootstrap', address: origin.address };
    await this.throttle.check(subject);
    if (!secretsEqual(input.bootstrapToken, this.settings.bootstrapToken)) {
      await this.throttle.failed(subject);
      throw errors.unauthenticated('wrong bootstrap token');
    }
    const passwordHash = await hashPassword(input.password, this.settings.passwordCost);
    const { tenant, admin, events } = await withTransaction(this.pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('iot-signing:bootstrap'))");
      if ((await store.countTenants(client)) > 0) throw errors.failedPrecondition('the platform is already bootstrapped');
      const tenant = await store.insertTenant(client, { id: crypto.randomUUID(), name: input.tenantName, platform: true });
      const admin = await store.insertUser(client, { id: crypto.randomUUID(), tenantId: tenant.id, email: input.email, displayName: input.displayName, role: 'admin', passwordHash });
      const events = [
        await this.audit.store({ tenantId: tenant.id, type: 'platform.bootstrapped', actorId: admin.id, subject: { kind: 'tenant', id: tenant.id }, sourceAddress: origin.address }, client),
      ];
      return { tenant, admin, events };
    });
    events.forEach((e) => this.audit.publish(e));
    this.log.info({ tenant: tenant.id, user: admin.id }, 'platform bootstrapped');
    return { tenant, admin };
  }

  async createTenant(actor: Principal, input: { name: string; email: string; password: string; displayName: string }, origin: RequestOrigin) {
    const passwordHash = await hashPassword(input.password, this.settings.passwordCost);
    const { tenant, admin, events } = await withTransaction(this.pool, async (client) => {
      if (await store.tenantByName(client, input.name)) throw errors.alreadyExists(`tenant ${JSON.stringify(input.name)} already exists`);
      const tenant = await store.insertTenant(client, { id: crypto.randomUUID(), name: input.name, platform: false });
      const admin = await store.insertUser(client, { id: crypto.randomUUID(), tenantId: tenant.id, email: input.email, displayName: input.displayName, role: 'admin', passwordHash });
      const base = { actorId: actor.id, sourceAddress: origin.address };
      const events = [
        await this.audit.store({ ...base, tenantId: actor.tenantId, type: 'tenant.created', subject: { kind: 'tenant', id: tenant.id }, details: { name: tenant.name } }, client),
        await this.audit.store({ ...base, tenantId: tenant.id, type: 'user.created', subject: { kind: 'user', id: admin.id }, details: { role: 'admin' } }, client),
      ];
      return { tenant, admin, events };
    });
    events.forEach((e) => this.audit.publish(e));
    return { tenant, admin };
  }

  /** A tenant the caller may see: their own, or any for platform admins; NOT_FOUND otherwise. */
  async getTenant(caller: Principal, id: string): Promise<TenantRecord> {
    if (id !== caller.tenantId && !caller.platformAdmin) throw errors.notFound('tenant', id);
    const tenant = await store.tenantById(this.pool, id);
    if (!tenant) throw errors.notFound('tenant', id);
    return tenant;
  }

  async listTenants(limit: number, pageToken?: string): Promise<Page<TenantRecord>> {
    return pageOf(await store.listTenants(this.pool, limit + 1, cursorOf(pageToken)), limit);
  }

  // --- tokens ---

  /** Exchanges a password for tokens; throttled per account and source address. */
  async login(input: { tenant: string; email: string; password: string }, origin: RequestOrigin): Promise<{ tokens: IssuedTokens; user: UserRecord }> {
    const subject = { account: `${input.tenant}/${input.email}`, address: origin.address };
    await this.throttle.check(subject);
    const tenant = await store.tenantByName(this.pool, input.tenant);
    const user = tenant ? await store.userByEmail(this.pool, tenant.id, input.email) : undefined;
    const ok = user ? await verifyPassword(input.password, user.passwordHash) : await verifyAgainstNothing(input.password, this.settings.passwordCost);
    if (!ok || !tenant || !user) {
      const lockedForMs = await this.throttle.failed(subject);
      await this.record({
        tenantId: tenant?.id ?? null,
        type: 'login.failed',
        actorId: '',
        subject: user ? { kind: 'user', id: user.id } : undefined,
        sourceAddress: origin.address,
        details: { tenant: input.tenant, email: input.email, reason: !tenant ? 'unknown_tenant' : !user ? 'unknown_user' : 'wrong_password', lockedForMs },
      });
      throw errors.unauthenticated('wrong tenant, email or password');
    }
    await this.throttle.succeeded(subject);
    const tokens = await withTransaction(this.pool, (client) => this.issueTokens(client, tenant, user, crypto.randomUUID()));
    await this.record({ tenantId: tenant.id, type: 'login.succeeded', actorId: user.id, subject: { kind: 'user', id: user.id }, sourceAddress: origin.address });
    return { tokens, user };
  }

  /**
   * Spends a refresh token for a new pair. A token that was already spent
   * means it leaked: its whole family is revoked and the event audited.
   */
  async refresh(refreshToken: string, origin: RequestOrigin): Promise<IssuedTokens> {
    const hash = secretDigest(refreshToken);
    const outcome = await withTransaction(this.pool, async (client) => {
      const token = await store.refreshTokenForUpdate(client, hash);
      if (!token || token.revokeTime) return { kind: 'invalid' as const };
      if (token.useTime) {
        const revoked = await store.revokeRefreshFamily(client, token.familyId);
        const event = await this.audit.store(
          {
            tenantId: token.tenantId,
            type: 'refresh_token.reused',
            actorId: token.userId,
            subject: { kind: 'user', id: token.userId },
            sourceAddress: origin.address,
            details: { familyId: token.familyId, revokedTokens: revoked },
          },
          client,
        );
        return { kind: 'reused' as const, event };
      }
      if (token.expireTime.getTime() <= Date.now()) return { kind: 'invalid' as const };
      const tenant = await store.tenantById(client, token.tenantId);
      const user = tenant ? await store.userById(client, token.tenantId, token.userId) : undefined;
      if (!tenant || !user) return { kind: 'invalid' as const };
      await store.markRefreshTokenUsed(client, token.id);
      return { kind: 'ok' as const, tokens: await this.issueTokens(client, tenant, user, token.familyId) };
    });
    if (outcome.kind === 'reused') {
      this.audit.publish(outcome.event);
      this.log.warn({ tenant: outcome.event.tenantId, user: outcome.event.actorId }, 'refresh token reused; family revoked');
      throw errors.unauthenticated('refresh token already used; all tokens of this session are revoked');
    }
    if (outcome.kind === 'invalid') throw errors.unauthenticated('invalid or expired refresh token');
    return outcome.tokens;
  }

  /** Revokes the refresh token's family; unknown tokens are ignored (nothing to revoke). */
  async logout(refreshToken: string, origin: RequestOrigin): Promise<void> {
    const outcome = await withTransaction(this.pool, async (client) => {
      const token = await store.refreshTokenForUpdate(client, secretDigest(refreshToken));
      if (!token) return undefined;
      await store.revokeRefreshFamily(client, token.familyId);
      return this.audit.store({ tenantId: token.tenantId, type: 'logout', actorId: token.userId, subject: { kind: 'user', id: token.userId }, sourceAddress: origin.address }, client);
    });
    if (outcome) this.audit.publish(outcome);
  }

  private async issueTokens(client: Parameters<typeof store.insertRefreshToken>[0], tenant: TenantRecord, user: UserRecord, familyId: string): Promise<IssuedTokens> {
    const now = Math.floor(Date.now() / 1000);
    const claims: AccessTokenClaims = {
      iss: TOKEN_ISSUER,
      aud: TOKEN_AUDIENCE,
      sub: user.id,
      tid: tenant.id,
      role: user.role,
      pa: tenant.platform && user.role === 'admin',
      iat: now,
      exp: now + this.settings.accessTokenTtlSeconds,
      jti: crypto.randomUUID(),
    };
    const key = await this.keys.signingKey();
    const refreshToken = newRefreshToken();
    const refreshTokenExpireTime = new Date(Date.now() + this.settings.refreshTokenTtlSeconds * 1000);
    await store.insertRefreshToken(client, { id: crypto.randomUUID(), familyId, userId: user.id, tenantId: tenant.id, hash: secretDigest(refreshToken), expireTime: refreshTokenExpireTime });
    return { accessToken: signAccessToken(claims, key.privateKey, key.kid), accessTokenExpireTime: new Date(claims.exp * 1000), refreshToken, refreshTokenExpireTime };
  }

  /** The caller with its current name; UNAUTHENTICATED when the user no longer exists. */
  async whoAmI(caller: Principal): Promise<DescribedPrincipal> {
    if (caller.kind !== 'user') return { ...caller, name: caller.name ?? '' };
    const user = await store.userById(this.pool, caller.tenantId, caller.id);
    if (!user) throw errors.unauthenticated('the user no longer exists');
    return { ...caller, name: user.email };
  }

  // --- signing keys ---

  publishedKeys(): Promise<PublicJwk[]> {
    return this.keys.publishedKeys();
  }

  async rotateSigningKey(actor: Principal, origin: RequestOrigin): Promise<string> {
    const kid = await this.keys.rotate();
    await this.record({ tenantId: actor.tenantId, type: 'signing_key.rotated', actorId: actor.id, subject: { kind: 'signing_key', id: kid }, sourceAddress: origin.address });
    return kid;
  }

  // --- users ---

  async createUser(actor: Principal, input: { email: string; displayName: string; password: string; role: RoleName }, origin: RequestOrigin): Promise<UserRecord> {
    const passwordHash = await hashPassword(input.password, this.settings.passwordCost);
    if (await store.userByEmail(this.pool, actor.tenantId, input.email)) throw errors.alreadyExists(`a user with email ${JSON.stringify(input.email)} already exists`);
    const user = await store.insertUser(this.pool, { id: crypto.randomUUID(), tenantId: actor.tenantId, email: input.email, displayName: input.displayName, role: input.role, passwordHash });
    await this.record({ tenantId: actor.tenantId, type: 'user.created', actorId: actor.id, subject: { kind: 'user', id: user.id }, sourceAddress: origin.address, details: { role: user.role } });
    return user;
  }

  async getUser(actor: Principal, id: string): Promise<UserRecord> {
    const user = await store.userById(this.pool, actor.tenantId, id);
    if (!user) throw errors.notFound('user', id);
    return user;
  }

  async listUsers(actor: Principal, limit: number, pageToken?: string): Promise<Page<UserRecord>> {
    return pageOf(await store.listUsers(this.pool, actor.tenantId, limit + 1, cursorOf(pageToken)), limit);
  }

  /** Changes display name and/or role. A role change ends the user's sessions (refresh tokens). */
  async updateUser(actor: Principal, id: string, changes: { displayName?: string; role?: RoleName }, origin: RequestOrigin): Promise<UserRecord> {
    if (changes.role && id === actor.id) throw errors.failedPrecondition('admins cannot change their own role');
    const { user, events } = await withTransaction(this.pool, async (client) => {
      const before = await store.userById(client, actor.tenantId, id);
      if (!before) throw errors.notFound('user', id);
      const user = (await store.updateUser(client, actor.tenantId, id, changes))!;
      const events: AuditEventRecord[] = [];
      if (changes.role && changes.role !== before.role) {
        await store.revokeRefreshTokensOfUser(client, id);
        events.push(
          await this.audit.store(
            { tenantId: actor.tenantId, type: 'user.role_changed', actorId: actor.id, subject: { kind: 'user', id }, sourceAddress: origin.address, details: { from: before.role, to: changes.role } },
            client,
          ),
        );
      }
      return { user, events };
    });
    events.forEach((e) => this.audit.publish(e));
    return user;
  }

  async deleteUser(actor: Principal, id: string, origin: RequestOrigin): Promise<void> {
    if (id === actor.id) throw errors.failedPrecondition('admins cannot delete themselves');
    if (!(await store.deleteUser(this.pool, actor.tenantId, id))) throw errors.notFound('user', id);
    await this.record({ tenantId: actor.tenantId, type: 'user.deleted', actorId: actor.id, subject: { kind: 'user', id }, sourceAddress: origin.address });
  }

  /** Changes the caller's own password (current one required) and ends their sessions. */
  async changePassword(actor: Principal, input: { currentPassword: string; newPassword: string }, origin: RequestOrigin): Promise<Date> {
    if (actor.kind !== 'user') throw errors.failedPrecondition('only users have passwords');
    const subject = { account: `user:${actor.id}`, address: origin.address };
    await this.throttle.check(subject);
    const user = await store.userById(this.pool, actor.tenantId, actor.id);
    if (!user) throw errors.unauthenticated('the user no longer exists');
    if (!(await verifyPassword(input.currentPassword, user.passwordHash))) {
      await this.throttle.failed(subject);
      await this.record({ tenantId: actor.tenantId, type: 'password_change.failed', actorId: actor.id, subject: { kind: 'user', id: actor.id }, sourceAddress: origin.address });
      throw errors.permissionDenied('the current password is wrong');
    }
    await this.throttle.succeeded(subject);
    const passwordHash = await hashPassword(input.newPassword, this.settings.passwordCost);
    const updated = await withTransaction(this.pool, async (client) => {
      const updated = await store.updateUser(client, actor.tenantId, actor.id, { passwordHash });
      await store.revokeRefreshTokensOfUser(client, actor.id);
      return updated!;
    });
    await this.record({ tenantId: actor.tenantId, type: 'user.password_changed', actorId: actor.id, subject: { kind: 'user', id: actor.id }, sourceAddress: origin.address });
    return updated.updateTime;
  }

  // --- API keys ---

  async createApiKey(actor: Principal, input: { name: string; role: RoleName; expireTime?: Date }, origin: RequestOrigin): Promise<{ apiKey: ApiKeyRecord; secret: string }> {
    const { secret, prefix } = newApiKeySecret();
    const apiKey = await store.insertApiKey(this.pool, {
      id: crypto.randomUUID(),
      tenantId: actor.tenantId,
      name: input.name,
      prefix,
      hash: secretDigest(secret),
      role: input.role,
      createdBy: actor.id,
      expireTime: input.expireTime ?? null,
    });
    await this.record({ tenantId: actor.tenantId, type: 'api_key.created', actorId: actor.id, subject: { kind: 'api_key', id: apiKey.id }, sourceAddress: origin.address, details: { name: apiKey.name, role: apiKey.role, prefix } });
    return { apiKey, secret };
  }

  async listApiKeys(actor: Principal, limit: number, pageToken?: string): Promise<Page<ApiKeyRecord>> {
    return pageOf(await store.listApiKeys(this.pool, actor.tenantId, limit + 1, cursorOf(pageToken)), limit);
  }

  async revokeApiKey(actor: Principal, id: string, origin: RequestOrigin): Promise<ApiKeyRecord> {
    const result = await store.revokeApiKey(this.pool, actor.tenantId, id);
    if (!result) throw errors.notFound('api key', id);
    if (result.changed) {
      await this.record({ tenantId: actor.tenantId, type: 'api_key.revoked', actorId: actor.id, subject: { kind: 'api_key', id }, sourceAddress: origin.address, details: { name: result.key.name } });
    }
    return result.key;
  }

  /** The principal of an API key secret; undefined when unknown, revoked or expired. API keys are never platform admins. */
  async principalOfApiKey(secret: string): Promise<Principal | undefined> {
    if (!secret.startsWith('iotk_') || secret.length > 200) return undefined;
    const key = await store.apiKeyByHash(this.pool, secretDigest(secret));
    if (!key || key.revokeTime || (key.expireTime && key.expireTime.getTime() <= Date.now())) return undefined;
    store.touchApiKey(this.pool, key.id).catch((err: Error) => this.log.debug({ err: err.message }, 'noting API key use failed'));
    return { kind: 'api_key', id: key.id, tenantId: key.tenantId, role: roleFromName(key.role)!, platformAdmin: false, name: key.name };
  }

  // --- audit ---

  async listAuditEvents(actor: Principal, input: { limit: number; pageToken?: string; start?: Date; end?: Date; type?: string }): Promise<Page<AuditEventRecord>> {
    const params: unknown[] = [actor.tenantId];
    let where = 'tenant_id = $1';
    if (input.start) where += ` AND time >= $${params.push(input.start)}`;
    if (input.end) where += ` AND time < $${params.push(input.end)}`;
    if (input.type) where += ` AND type = $${params.push(input.type)}`;
    const cursor = cursorOf(input.pageToken);
    if (cursor) where += ` AND (time, id) < ($${params.push(cursor[0])}::timestamptz, $${params.push(cursor[1])}::uuid)`;
    const { rows } = await this.pool.query(
      `SELECT * FROM audit_events WHERE ${where} ORDER BY time DESC, id DESC LIMIT $${params.push(input.limit + 1)}`,
      params,
    );
    const events: AuditEventRecord[] = rows.map((r) => ({
      id: r.id,
      tenantId: r.tenant_id,
      type: r.type,
      actorId: r.actor_id,
      subject: { kind: r.subject_kind, id: r.subject_id },
      sourceAddress: r.source_address,
      details: r.details,
      time: r.time,
    }));
    const page = pageOf(events.map((e) => ({ ...e, createTime: e.time })), input.limit);
    return { items: page.items, nextPageToken: page.nextPageToken };
  }

  private async record(input: AuditEventInput): Promise<void> {
    try {
      await this.audit.record(input);
    } catch (err) {
      this.log.error({ err: (err as Error).message, type: input.type }, 'storing an audit event failed');
    }
  }
}
