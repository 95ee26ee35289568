import crypto from 'node:crypto';
import { errors, Logger, Principal } from '@iot-mesh/runtime';
import type { SigningStore } from '../store/signing-store';
import type { TenantRecord } from '../store/tenants';
import type { UserRecord } from '../store/users';
import { AuditTrail } from './audit';
import { byCreateTime, cursorOf, Page, pageOf } from './pages';
import { hashPassword } from './passwords';
import { RequestOrigin } from './request-origin';
import { secretsEqual } from './secrets';
import { LoginThrottle } from './throttle';

/** Secrets and costs tenants are configured with. */
export interface TenantSettings {
  /** SIGNING_BOOTSTRAP_TOKEN; bootstrap is disabled without it. */
  bootstrapToken?: string;
  /** scrypt cost of new password hashes, as log2(N). */
  passwordCost: number;
}

/** A new tenant and its first admin. */
export interface NewTenantInput {
  name: string;
  email: string;
  password: string;
  displayName: string;
}

/** Tenants: the platform tenant made once by bootstrap, further tenants made by platform admins, each with a first admin. */
export class Tenants {
  constructor(
    private readonly store: SigningStore,
    private readonly throttle: LoginThrottle,
    private readonly audit: AuditTrail,
    private readonly settings: TenantSettings,
    private readonly log: Logger,
  ) {}

  /**
   * Creates the platform tenant and its first admin, once, given the
   * configured bootstrap token. `checkInput` validates the request and runs
   * only after the token was accepted, so an anonymous caller reaches no
   * validation code. Wrong tokens are throttled per source address.
   */
  async bootstrap(bootstrapToken: string, origin: RequestOrigin, checkInput: () => NewTenantInput): Promise<{ tenant: TenantRecord; admin: UserRecord }> {
    if (!this.settings.bootstrapToken) throw errors.failedPrecondition('bootstrap is disabled: set SIGNING_BOOTSTRAP_TOKEN on the signing service');
    const subject = { account: `bootstrap:${origin.address}`, address: origin.address };
    const attempt = await this.throttle.attempt(subject);
    if (!secretsEqual(bootstrapToken, this.settings.bootstrapToken)) throw errors.unauthenticated('wrong bootstrap token');
    await attempt.succeeded();
    const input = checkInput();
    const passwordHash = await hashPassword(input.password, this.settings.passwordCost);
    const { tenant, admin, event } = await this.store.transaction(async (tx) => {
      await tx.tenants.lockBootstrap();
      if ((await tx.tenants.count()) > 0) throw errors.failedPrecondition('the platform is already bootstrapped');
      const tenant = await tx.tenants.insert({ id: crypto.randomUUID(), name: input.name, platform: true });
      const admin = await tx.users.insert({ id: crypto.randomUUID(), tenantId: tenant.id, email: input.email, displayName: input.displayName, role: 'admin', passwordHash });
      const event = await this.audit.store({ tenantId: tenant.id, type: 'platform.bootstrapped', actorId: admin.id, subject: { kind: 'tenant', id: tenant.id }, sourceAddress: origin.address }, tx);
      return { tenant, admin, event };
    });
    this.audit.publish(event);
    this.log.info({ tenant: tenant.id, user: admin.id }, 'platform bootstrapped');
    return { tenant, admin };
  }

  /** Creates a tenant with its first admin. */
  async create(actor: Principal, input: NewTenantInput, origin: RequestOrigin): Promise<{ tenant: TenantRecord; admin: UserRecord }> {
    const passwordHash = await hashPassword(input.password, this.settings.passwordCost);
    const { tenant, admin, events } = await this.store.transaction(async (tx) => {
      if (await tx.tenants.byName(input.name)) throw errors.alreadyExists(`tenant ${JSON.stringify(input.name)} already exists`);
      const tenant = await tx.tenants.insert({ id: crypto.randomUUID(), name: input.name, platform: false });
      const admin = await tx.users.insert({ id: crypto.randomUUID(), tenantId: tenant.id, email: input.email, displayName: input.displayName, role: 'admin', passwordHash });
      const base = { actorId: actor.id, sourceAddress: origin.address };
      const events = [
        await this.audit.store({ ...base, tenantId: actor.tenantId, type: 'tenant.created', subject: { kind: 'tenant', id: tenant.id }, details: { name: tenant.name } }, tx),
        await this.audit.store({ ...base, tenantId: tenant.id, type: 'user.created', subject: { kind: 'user', id: admin.id }, details: { role: 'admin' } }, tx),
      ];
      return { tenant, admin, events };
    });
    this.audit.publish(...events);
    return { tenant, admin };
  }

  /** A tenant the caller may see: their own, or any for platform admins; NOT_FOUND otherwise. */
  async get(caller: Principal, id: string): Promise<TenantRecord> {
    if (id !== caller.tenantId && !caller.platformAdmin) throw errors.notFound('tenant', id);
    const tenant = await this.store.tenants.byId(id);
    if (!tenant) throw errors.notFound('tenant', id);
    return tenant;
  }

  /** Every tenant, oldest first (platform admins only, by the RPC's access rule). */
  async list(limit: number, pageToken?: string): Promise<Page<TenantRecord>> {
    return pageOf(await this.store.tenants.list(limit + 1, cursorOf(pageToken)), limit, byCreateTime);
  }
}
