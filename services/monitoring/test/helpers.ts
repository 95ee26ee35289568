import { createLogger, createPool, migrate, Pool, repoPath } from '@iot-mesh/runtime';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';

/** A fresh database with the monitoring migrations applied, and a pool on it. */
export async function migratedDatabase(): Promise<{ db: TestDatabase; pool: Pool; close(): Promise<void> }> {
  const db = await createTestDatabase('iot_mon');
  const log = createLogger('monitoring-test', 'silent');
  const pool = createPool(db.url, 'monitoring', log);
  await migrate(pool, 'monitoring', repoPath('services', 'monitoring', 'migrations'), log);
  return {
    db,
    pool,
    async close() {
      await pool.end().catch(() => undefined);
      await db.drop();
    },
  };
}
