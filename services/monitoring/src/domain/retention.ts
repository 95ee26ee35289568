import type { Logger } from '@iot-mesh/runtime';
import type { TelemetryStore } from '../store/telemetry-store';

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
