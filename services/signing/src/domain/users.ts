import crypto from 'node:crypto';
import { errors, Principal, RoleName } from '@iot-mesh/runtime';
import type { AuditEventRecord } from '../store/audit-events';
import type { SigningStore } from '../store/signing-store';
import type { UserRecord } from '../store/users';
import { AuditTrail } from './audit';
import { byCreateTime, cursorOf, Page, pageOf } from './pages';
import { hashPassword, passwordWeakness, verifyPassword } from './passwords';
import { RequestOrigin } from './request-origin';
import { LoginThrottle } from './throttle';

/** Costs users are configured with. */
export interface UserSettings {
  /** scrypt cost of new password hashes, as log2(N). */
  passwordCost: number;
}

/** Users of the caller's tenant: created, changed and deleted by its admins; each changes their own password. */
export class Users {
  constructor(
    private readonly store: SigningStore,
    private readonly throttle: LoginThrottle,
    private readonly audit: AuditTrail,
    private readonly settings: UserSettings,
  ) {}

  /**
   * Admins of the platform tenant are platform admins, so only a platform
   * admin (a user; API keys never are) may make one: otherwise an admin API
   * key of the platform tenant could create or promote a user and log in as
   * a platform admin (issue 13, finding 6).
   */
  private async checkMayGrant(actor: Principal, role: RoleName): Promise<void> {
    if (role !== 'admin' || actor.platformAdmin) return;
    const tenant = await this.store.tenants.byId(actor.tenantId);
    if (tenant?.platform) throw errors.permissionDenied('only a platform admin may make an admin of the platform tenant; API keys never can');
  }

  /** Creates a user in the caller's tenant; ALREADY_EXISTS when the email is taken. */
  async create(actor: Principal, input: { email: string; displayName: string; password: string; role: RoleName }, origin: RequestOrigin): Promise<UserRecord> {
    await this.checkMayGrant(actor, input.role);
    const passwordHash = await hashPassword(input.password, this.settings.passwordCost);
    if (await this.store.users.byEmail(actor.tenantId, input.email)) throw errors.alreadyExists(`a user with email ${JSON.stringify(input.email)} already exists`);
    const user = await this.store.users.insert({ id: crypto.randomUUID(), tenantId: actor.tenantId, email: input.email, displayName: input.displayName, role: input.role, passwordHash });
    await this.audit.record({ tenantId: actor.tenantId, type: 'user.created', actorId: actor.id, subject: { kind: 'user', id: user.id }, sourceAddress: origin.address, details: { role: user.role } });
    return user;
  }

  /** A user of the caller's tenant; NOT_FOUND otherwise. */
  async get(actor: Principal, id: string): Promise<UserRecord> {
    const user = await this.store.users.byId(actor.tenantId, id);
    if (!user) throw errors.notFound('user', id);
    return user;
  }

  /** The caller's tenant's users, oldest first. */
  async list(actor: Principal, limit: number, pageToken?: string): Promise<Page<UserRecord>> {
    return pageOf(await this.store.users.list(actor.tenantId, limit + 1, cursorOf(pageToken)), limit, byCreateTime);
  }

  /** Changes display name and/or role. A role change ends the user's sessions (refresh tokens). */
  async update(actor: Principal, id: string, changes: { displayName?: string; role?: RoleName }, origin: RequestOrigin): Promise<UserRecord> {
    if (changes.role && id === actor.id) throw errors.failedPrecondition('admins cannot change their own role');
    if (changes.role) await this.checkMayGrant(actor, changes.role);
    const { user, events } = await this.store.transaction(async (tx) => {
      const before = await tx.users.byId(actor.tenantId, id);
      if (!before) throw errors.notFound('user', id);
      const user = (await tx.users.update(actor.tenantId, id, changes))!;
      const events: AuditEventRecord[] = [];
      if (changes.role && changes.role !== before.role) {
        await tx.refreshTokens.revokeOfUser(id);
        events.push(
          await this.audit.store(
            { tenantId: actor.tenantId, type: 'user.role_changed', actorId: actor.id, subject: { kind: 'user', id }, sourceAddress: origin.address, details: { from: before.role, to: changes.role } },
            tx,
          ),
        );
      }
      return { user, events };
    });
    this.audit.publish(...events);
    return user;
  }

  /** Deletes a user of the caller's tenant (never the caller). */
  async delete(actor: Principal, id: string, origin: RequestOrigin): Promise<void> {
    if (id === actor.id) throw errors.failedPrecondition('admins cannot delete themselves');
    if (!(await this.store.users.delete(actor.tenantId, id))) throw errors.notFound('user', id);
    await this.audit.record({ tenantId: actor.tenantId, type: 'user.deleted', actorId: actor.id, subject: { kind: 'user', id }, sourceAddress: origin.address });
  }

  /** Changes the caller's own password (current one required, throttled like logins) and ends their sessions. */
  async changePassword(actor: Principal, input: { currentPassword: string; newPassword: string }, origin: RequestOrigin): Promise<Date> {
    if (actor.kind !== 'user') throw errors.failedPrecondition('only users have passwords');
    const subject = { account: `user:${actor.id}`, address: origin.address };
    const user = await this.store.users.byId(actor.tenantId, actor.id);
    if (!user) throw errors.unauthenticated('the user no longer exists');
    // A bearer token carries no email, so the rule is checked against the stored one here (issue 13, finding 9).
    const weakness = passwordWeakness(input.newPassword, user.email);
    if (weakness) throw errors.invalidArgument([{ field: 'new_password', description: weakness }]);
    const attempt = await this.throttle.attempt(subject);
    if (!(await verifyPassword(input.currentPassword, user.passwordHash))) {
      await this.audit.record({ tenantId: actor.tenantId, type: 'password_change.failed', actorId: actor.id, subject: { kind: 'user', id: actor.id }, sourceAddress: origin.address });
      throw errors.permissionDenied('the current password is wrong');
    }
    await attempt.succeeded();
    const passwordHash = await hashPassword(input.newPassword, this.settings.passwordCost);
    const updated = await this.store.transaction(async (tx) => {
      const updated = await tx.users.update(actor.tenantId, actor.id, { passwordHash });
      await tx.refreshTokens.revokeOfUser(actor.id);
      return updated!;
    });
    await this.audit.record({ tenantId: actor.tenantId, type: 'user.password_changed', actorId: actor.id, subject: { kind: 'user', id: actor.id }, sourceAddress: origin.address });
    return updated.updateTime;
  }
}
