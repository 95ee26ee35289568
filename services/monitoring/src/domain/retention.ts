import type { Logger } from '@iot-mesh/runtime';
import type { DeviceScope, StoredRetention } from '../store/retention-store';
import type { TelemetryStore } from '../store/telemetry-store';
import type { KnownDevices } from './telemetry';

const DAY_MS = 86_400_000;

/**
 * Applies retention once: whole partitions older than the global retention
 * go; tenants with a shorter retention of their own lose their older
 * samples in bounded chunks. (A tenant cannot keep data longer than the
 * global retention: its partitions are dropped for everyone.)
 */
export async function applyRetention(store: TelemetryStore, now: number, globalDays: number, perTenant: Map<string, number>, log: Logger): Promise<void> {
  const { removed } = await store.dropBefore(new Date(now - globalDays * DAY_MS));
  if (removed.length > 0) log.info({ removed }, 'retention dropped old telemetry');
  for (const [tenantId, days] of perTenant) {
    if (days >= globalDays) continue;
    const deleted = await store.deleteTenantBefore(tenantId, new Date(now - days * DAY_MS));
    if (deleted > 0) log.info({ tenantId, deleted, days }, 'tenant retention deleted old telemetry');
  }
}

/**
 * Drops rollups (downsampled history) older than `rollupDays`, where the store
 * keeps them. Rollup retention is global: a tenant's shorter raw retention
 * does not shorten it.
 */
export async function applyRollupRetention(store: TelemetryStore, now: number, rollupDays: number, log: Logger): Promise<void> {
  const deleted = (await store.dropRollupsBefore?.(new Date(now - rollupDays * DAY_MS))) ?? 0;
  if (deleted > 0) log.info({ deleted, days: rollupDays }, 'rollup retention deleted old rollups');
}

/** How telemetry is kept: global and per-tenant retention, partitions prepared ahead. */
export interface RetentionPolicy {
  globalDays: number;
  /** Days rollups are kept (longer than raw points). */
  rollupDays: number;
  perTenant: Map<string, number>;
  /** Days of partitions created ahead of time (stores that partition). */
  partitionsAheadDays: number;
}

/**
 * One round of upkeep: partitions from yesterday to `partitionsAheadDays`
 * ahead exist (where the store partitions), and retention is applied to raw
 * points and, with its own longer limit, to rollups.
 */
export async function maintainTelemetry(store: TelemetryStore, now: number, policy: RetentionPolicy, log: Logger): Promise<void> {
  await store.ensurePartitions?.(new Date(now - DAY_MS), new Date(now + policy.partitionsAheadDays * DAY_MS));
  await applyRetention(store, now, policy.globalDays, policy.perTenant, log);
  await applyRollupRetention(store, now, policy.rollupDays, log);
}

/** What per-tenant retention needs stored: the policies and the scoped deletions (PostgreSQL; see store/retention-store.ts). */
export interface RetentionRepository {
  list(tenantId?: string): Promise<StoredRetention[]>;
  set(tenantId: string, deviceType: string, rawDays: number, rollupDays: number): Promise<void>;
  deletePoints(tenantId: string, scope: DeviceScope, before: Date): Promise<number>;
  deleteRollups(tenantId: string, scope: DeviceScope, before: Date): Promise<number>;
  oldest(tenantId: string, scope: DeviceScope): Promise<{ point?: Date; rollup?: Date }>;
}

/** A policy as the API shows it: what is stored, what it resolves to, and when data next goes. */
export interface ResolvedRetention {
  tenantId: string;
  deviceType: string;
  rawDays: number;
  rollupDays: number;
  effectiveRawDays: number;
  effectiveRollupDays: number;
  /** The first instant at which the scope's oldest point (rollup) is past its limit: the retention run at or after it deletes it. */
  nextRawDropTime?: Date;
  nextRollupDropTime?: Date;
  updateTime?: Date;
}

/** Longest a policy may ask for (the deployment's limits cap what is in force). */
export const MAX_RETENTION_DAYS = 3650;

/**
 * Retention per tenant and per device type, raw points and rollups apart,
 * on top of the deployment's limits. A device type's days win over the
 * tenant's, which win over TELEMETRY_TENANT_RETENTION_DAYS, which wins over
 * TELEMETRY_RETENTION_DAYS (rollups: over TELEMETRY_ROLLUP_RETENTION_DAYS);
 * nothing is kept longer than the deployment's limit, whose whole day
 * partitions are dropped for everyone. {@link run} is one retention round,
 * called hourly by the service and directly (with a chosen `now`) by tests.
 */
export class TelemetryRetention {
  constructor(
    private readonly deps: {
      store: TelemetryStore;
      /** Undefined where the store has no scoped deletions (MongoDB): only the deployment's limits apply there. */
      policies?: RetentionRepository;
      devices: KnownDevices;
      policy: RetentionPolicy;
      /** The delivery log and how long it is kept. */
      deliveries?: { prune(before: Date): Promise<number>; days: number };
      log: Logger;
    },
  ) {}

  /** The policy in force for the tenant (deviceType '') or a device type. */
  async get(tenantId: string, deviceType: string, now = Date.now()): Promise<ResolvedRetention> {
    const stored = (await this.deps.policies?.list(tenantId)) ?? [];
    return this.resolve(tenantId, deviceType, stored, now);
  }

  /** The tenant's stored policies, resolved (the tenant default always first, stored or not). */
  async list(tenantId: string, now = Date.now()): Promise<ResolvedRetention[]> {
    const stored = (await this.deps.policies?.list(tenantId)) ?? [];
    const types = ['', ...stored.filter((p) => p.deviceType !== '').map((p) => p.deviceType)];
    return Promise.all(types.map((t) => this.resolve(tenantId, t, stored, now)));
  }

  /** Stores a policy (0 and 0 removes it); the policy in force afterwards. */
  async set(tenantId: string, deviceType: string, rawDays: number, rollupDays: number, now = Date.now()): Promise<ResolvedRetention> {
    if (!this.deps.policies) throw new Error('retention policies need the PostgreSQL telemetry store');
    await this.deps.policies.set(tenantId, deviceType, rawDays, rollupDays);
    return this.get(tenantId, deviceType, now);
  }

  /** One round: the deployment's limits, then every tenant's own, then the delivery log. */
  async run(now = Date.now()): Promise<void> {
    const { policy, policies, log } = this.deps;
    await maintainTelemetry(this.deps.store, now, { ...policy, perTenant: policies ? new Map() : policy.perTenant }, log);
    if (policies) {
      const stored = await policies.list();
      const tenants = new Set([...stored.map((p) => p.tenantId), ...policy.perTenant.keys()]);
      for (const tenantId of tenants) await this.applyTenant(tenantId, stored.filter((p) => p.tenantId === tenantId), now);
    }
    if (this.deps.deliveries) {
      const deleted = await this.deps.deliveries.prune(new Date(now - this.deps.deliveries.days * DAY_MS));
      if (deleted > 0) log.info({ deleted }, 'delivery log retention deleted old entries');
    }
  }

  private async applyTenant(tenantId: string, stored: StoredRetention[], now: number): Promise<void> {
    const { policy, log } = this.deps;
    const policies = this.deps.policies!;
    for (const s of this.scopes(tenantId, stored)) {
      const days = this.days(tenantId, s.deviceType, stored);
      if (days.raw < policy.globalDays) {
        const deleted = await policies.deletePoints(tenantId, s.raw, new Date(now - days.raw * DAY_MS));
        if (deleted > 0) log.info({ tenantId, deviceType: s.deviceType, deleted, days: days.raw }, 'retention policy deleted old points');
      }
      if (days.rollup < policy.rollupDays) {
        const deleted = await policies.deleteRollups(tenantId, s.rollup, new Date(now - days.rollup * DAY_MS));
        if (deleted > 0) log.info({ tenantId, deviceType: s.deviceType, deleted, days: days.rollup }, 'retention policy deleted old rollups');
      }
    }
  }

  /** The days in force for a scope, after inheritance and capped by the deployment's limits. */
  private days(tenantId: string, deviceType: string, stored: StoredRetention[]): { raw: number; rollup: number } {
    const own = deviceType ? stored.find((p) => p.deviceType === deviceType) : undefined;
    const tenant = stored.find((p) => p.deviceType === '');
    const { policy } = this.deps;
    const raw = own?.rawDays || tenant?.rawDays || policy.perTenant.get(tenantId) || policy.globalDays;
    const rollup = own?.rollupDays || tenant?.rollupDays || policy.rollupDays;
    return { raw: Math.min(raw, policy.globalDays), rollup: Math.min(rollup, policy.rollupDays) };
  }

  /**
   * The device sets of a tenant's policies: each device type with a policy
   * covers its devices; the tenant default covers every other device (those
   * of a type that sets its own days, raw or rollup, are left out of that part).
   */
  private scopes(tenantId: string, stored: StoredRetention[]): { deviceType: string; raw: DeviceScope; rollup: DeviceScope }[] {
    const devices = this.deps.devices.devicesOf(tenantId);
    const ofType = (type: string) => devices.filter((d) => d.type === type).map((d) => d.deviceId);
    const typed = stored.filter((p) => p.deviceType !== '');
    const out = typed.map((p) => ({ deviceType: p.deviceType, raw: { only: ofType(p.deviceType) }, rollup: { only: ofType(p.deviceType) } }));
    const rawOwn = typed.filter((p) => p.rawDays > 0).flatMap((p) => ofType(p.deviceType));
    const rollupOwn = typed.filter((p) => p.rollupDays > 0).flatMap((p) => ofType(p.deviceType));
    return [{ deviceType: '', raw: { except: rawOwn }, rollup: { except: rollupOwn } }, ...out];
  }

  private async resolve(tenantId: string, deviceType: string, stored: StoredRetention[], now: number): Promise<ResolvedRetention> {
    const own = stored.find((p) => p.deviceType === deviceType);
    const days = this.days(tenantId, deviceType, stored);
    const out: ResolvedRetention = {
      tenantId,
      deviceType,
      rawDays: own?.rawDays ?? 0,
      rollupDays: own?.rollupDays ?? 0,
      effectiveRawDays: days.raw,
      effectiveRollupDays: days.rollup,
      updateTime: own?.updateTime,
    };
    if (!this.deps.policies) return out;
    const scope = this.scopes(tenantId, stored).find((s) => s.deviceType === deviceType) ?? { raw: { only: this.deps.devices.devicesOf(tenantId).filter((d) => d.type === deviceType).map((d) => d.deviceId) } };
    const { point } = await this.deps.policies.oldest(tenantId, scope.raw);
    const rollupScope = 'rollup' in scope ? scope.rollup : scope.raw;
    const { rollup } = await this.deps.policies.oldest(tenantId, rollupScope);
    if (point) out.nextRawDropTime = new Date(dropTime(point, days.raw, days.raw >= this.deps.policy.globalDays, now));
    if (rollup) out.nextRollupDropTime = new Date(Math.max(now, rollup.getTime() + days.rollup * DAY_MS + 1));
    return out;
  }
}

/**
 * When the oldest point `oldest` is deleted: the first instant it is older
 * than the limit, or — when only the deployment's limit applies — when its
 * whole UTC day partition is (partitions drop whole); never before `now`.
 */
function dropTime(oldest: Date, days: number, byPartition: boolean, now: number): number {
  const t = oldest.getTime();
  const due = byPartition ? Math.floor(t / DAY_MS) * DAY_MS + DAY_MS + days * DAY_MS : t + days * DAY_MS + 1;
  return Math.max(now, due);
}
