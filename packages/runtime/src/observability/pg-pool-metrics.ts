import type { Pool } from 'pg';
import { metrics } from './metrics-registry';

const pools = new Map<string, Pool>();

/**
 * Reports a PostgreSQL pool's connections as
 * `iot_db_pool_connections{pool,state="total|idle|waiting"}`, read at scrape
 * time. The runtime calls it for every service pool; a later pool under the
 * same name replaces the earlier one.
 */
export function observePgPool(name: string, pool: Pool): void {
  pools.set(name, pool);
  metrics.gauge('iot_db_pool_connections', 'PostgreSQL pool connections by state (total, idle, waiting).', ['pool', 'state'], function collect() {
    for (const [poolName, p] of pools) {
      this.set({ pool: poolName, state: 'total' }, p.totalCount);
      this.set({ pool: poolName, state: 'idle' }, p.idleCount);
      this.set({ pool: poolName, state: 'waiting' }, p.waitingCount);
    }
  });
}
