import type { Pool } from '@iot-mesh/runtime';

/**
 * Runs a DELETE that removes at most `chunkSize` rows (its last parameter)
 * until one removes fewer: a long-idle retention round does not hold one huge
 * transaction. How many rows went.
 */
export async function deleteInChunks(pool: Pool, sql: string, params: unknown[], chunkSize: number): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(sql, [...params, chunkSize]);
    total += rowCount ?? 0;
    if (!rowCount || rowCount < chunkSize) return total;
  }
}
