import { isSubjectToken, Logger } from '@iot-mesh/runtime';
import type { TelemetryStore } from './store/telemetry-store';

const DAY_MS = 86_400_000;

/**
 * Parses `TELEMETRY_TENANT_RETENTION_DAYS`: `tenantA=7,tenantB=14`. Returns
 * the problem as a string when the value is not of that form.
 */
export function parseTenantRetention(value: string | undefined): Map<string, number> | string {
  const out = new Map<string, number>();
  if (!value) return out;
  for (const part of value.split(',')) {
    const m = /^\s*([^=\s]+)\s*=\s*(\d+)\s*$/.exec(part);
    if (!m || !isSubjectToken(m[1]) || Number(m[2]) < 1) return `"${part.trim()}" is not <tenant>=<days> with days ≥ 1`;
    out.set(m[1], Number(m[2]));
  }
  return out;
}

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
