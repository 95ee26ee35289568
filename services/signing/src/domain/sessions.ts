import crypto from 'node:crypto';
import { errors, Logger, Principal } from '@iot-mesh/runtime';
import type { TenantRecord } from '../store/tenants';
import type { UserRecord } from '../store/users';
import type { Repositories, SigningStore } from '../store/signing-store';
import { accessTokenClaims, signAccessToken } from './access-tokens';
import { AuditTrail } from './audit';
import { verifyAgainstNothing, verifyPassword } from './passwords';
import { RequestOrigin } from './request-origin';
import { newRefreshToken, secretDigest } from './secrets';
import { SigningKeys } from './signing-keys';
import { LoginThrottle } from './throttle';

/** Lifetimes and costs sessions are configured with. */
export interface SessionSettings {
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** scrypt cost of the dummy hash checked for unknown accounts, as log2(N). */
  passwordCost: number;
}

/** Tokens handed to a client by login and refresh. */
export interface IssuedTokens {
  accessToken: string;
  accessTokenExpireTime: Date;
  refreshToken: string;
  refreshTokenExpireTime: Date;
}

/** A principal's public view with its name. */
export type DescribedPrincipal = Principal & { name: string };

/**
 * Sessions: password login for a short-lived access token and a refresh
 * token, refresh with rotation and reuse detection, logout.
 */
export class Sessions {
  constructor(
    private readonly store: SigningStore,
    private readonly keys: SigningKeys,
    private readonly throttle: LoginThrottle,
    private readonly audit: AuditTrail,
    private readonly settings: SessionSettings,
    private readonly log: Logger,
  ) {}

  /** Exchanges a password for tokens; throttled per account and source address. */
  async login(input: { tenant: string; email: string; password: string }, origin: RequestOrigin): Promise<{ tokens: IssuedTokens; user: UserRecord }> {
    const subject = { account: `${input.tenant}/${input.email}`, address: origin.address };
    const attempt = await this.throttle.attempt(subject);
    const tenant = await this.store.tenants.byName(input.tenant);
    const user = tenant ? await this.store.users.byEmail(tenant.id, input.email) : undefined;
    // Unknown accounts cost as much as wrong passwords, so they cannot be told apart by timing.
    const ok = user ? await verifyPassword(input.password, user.passwordHash) : await verifyAgainstNothing(input.password, this.settings.passwordCost);
    if (!ok || !tenant || !user) {
      const { lockedForMs } = attempt;
      await this.audit.record({
        tenantId: tenant?.id ?? null,
        type: 'login.failed',
        actorId: '',
        subject: user ? { kind: 'user', id: user.id } : undefined,
        sourceAddress: origin.address,
        details: { tenant: input.tenant, email: input.email, reason: !tenant ? 'unknown_tenant' : !user ? 'unknown_user' : 'wrong_password', lockedForMs },
      });
      throw errors.unauthenticated('wrong tenant, email or password');
    }
    await attempt.succeeded();
    const tokens = await this.store.transaction((tx) => this.issueTokens(tx, tenant, user, crypto.randomUUID()));
    await this.audit.record({ tenantId: tenant.id, type: 'login.succeeded', actorId: user.id, subject: { kind: 'user', id: user.id }, sourceAddress: origin.address });
    return { tokens, user };
  }

  /**
   * Spends a refresh token for a new pair. A token that was already spent
   * means it leaked: its whole family is revoked and the event audited.
   */
  async refresh(refreshToken: string, origin: RequestOrigin): Promise<IssuedTokens> {
    const hash = secretDigest(refreshToken);
    const outcome = await this.store.transaction(async (tx) => {
      const token = await tx.refreshTokens.forUpdate(hash);
      if (!token || token.revokeTime) return { kind: 'invalid' as const };
      if (token.useTime) {
        const revoked = await tx.refreshTokens.revokeFamily(token.familyId);
        const event = await this.audit.store(
          {
            tenantId: token.tenantId,
            type: 'refresh_token.reused',
            actorId: token.userId,
            subject: { kind: 'user', id: token.userId },
            sourceAddress: origin.address,
            details: { familyId: token.familyId, revokedTokens: revoked },
          },
          tx,
        );
        return { kind: 'reused' as const, event };
      }
      if (token.expireTime.getTime() <= Date.now()) return { kind: 'invalid' as const };
      const tenant = await tx.tenants.byId(token.tenantId);
      const user = tenant ? await tx.users.byId(token.tenantId, token.userId) : undefined;
      if (!tenant || !user) return { kind: 'invalid' as const };
      await tx.refreshTokens.markUsed(token.id);
      return { kind: 'ok' as const, tokens: await this.issueTokens(tx, tenant, user, token.familyId) };
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
    const event = await this.store.transaction(async (tx) => {
      const token = await tx.refreshTokens.forUpdate(secretDigest(refreshToken));
      if (!token) return undefined;
      await tx.refreshTokens.revokeFamily(token.familyId);
      return this.audit.store({ tenantId: token.tenantId, type: 'logout', actorId: token.userId, subject: { kind: 'user', id: token.userId }, sourceAddress: origin.address }, tx);
    });
    if (event) this.audit.publish(event);
  }

  /** The caller with its current name; UNAUTHENTICATED when the user no longer exists. */
  async whoAmI(caller: Principal): Promise<DescribedPrincipal> {
    if (caller.kind !== 'user') return { ...caller, name: caller.name ?? '' };
    const user = await this.store.users.byId(caller.tenantId, caller.id);
    if (!user) throw errors.unauthenticated('the user no longer exists');
    return { ...caller, name: user.email };
  }

  private async issueTokens(tx: Repositories, tenant: TenantRecord, user: UserRecord, familyId: string): Promise<IssuedTokens> {
    const claims = accessTokenClaims(user, tenant, this.settings.accessTokenTtlSeconds);
    const key = await this.keys.signingKey();
    const refreshToken = newRefreshToken();
    const refreshTokenExpireTime = new Date(Date.now() + this.settings.refreshTokenTtlSeconds * 1000);
    await tx.refreshTokens.insert({ id: crypto.randomUUID(), familyId, userId: user.id, tenantId: tenant.id, hash: secretDigest(refreshToken), expireTime: refreshTokenExpireTime });
    return { accessToken: signAccessToken(claims, key.privateKey, key.kid), accessTokenExpireTime: new Date(claims.exp * 1000), refreshToken, refreshTokenExpireTime };
  }
}
