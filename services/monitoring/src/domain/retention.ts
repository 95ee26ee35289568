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

/** How telemetry is kept: global and per-tenant retention, partitions prepared ahead. */
export interface RetentionPolicy {
  globalDays: number;
  perTenant: Map<string, number>;
  /** Days of partitions created ahead of time (stores that partition). */
  partitionsAheadDays: number;
}

/**
 * One round of upkeep: partitions from yesterday to `partitionsAheadDays`
 * ahead exist (where the store partitions), and retention is applied.
 */
export async function maintainTelemetry(store: TelemetryStore, now: number, policy: RetentionPolicy, log: Logger): Promise<void> {
  await store.ensurePartitions?.(new Date(now - DAY_MS), new Date(now + policy.partitionsAheadDays * DAY_MS));
  await applyRetention(store, now, policy.globalDays, policy.perTenant, log);
}
