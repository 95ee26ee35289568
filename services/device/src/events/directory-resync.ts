import { KV } from 'nats';

/**
 * Makes a directory bucket equal to `source` (PostgreSQL, the source of
 * truth): writes every batch with `put`, then deletes the keys of records
 * that are gone. How many records were written and keys removed.
 */
export async function resyncBucket<T>(kv: KV, source: AsyncIterable<T[]>, put: (batch: T[]) => Promise<void>, keyOf: (record: T) => string): Promise<{ count: number; removed: number }> {
  const stale = new Set<string>();
  for await (const key of await kv.keys()) stale.add(key);
  let count = 0;
  for await (const batch of source) {
    await put(batch);
    for (const record of batch) stale.delete(keyOf(record));
    count += batch.length;
  }
  for (const key of stale) await kv.delete(key).catch(() => undefined);
  return { count, removed: stale.size };
}
