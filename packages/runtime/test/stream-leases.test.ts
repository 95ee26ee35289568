import crypto from 'node:crypto';
import { createLogger, createRedis, Redis, SharedStreamCounts, STREAM_LEASE_MS } from '@iot-mesh/runtime';
import { TEST_REDIS_URL } from '../../../testing/test-services';

// Open streams per principal over replicas, against a real Redis: two "replicas" with clients of their own.
const log = createLogger('stream-leases-test', 'warn');
let redis: Redis[];

beforeAll(async () => {
  redis = [createRedis(TEST_REDIS_URL, log), createRedis(TEST_REDIS_URL, log)];
  await Promise.all(redis.map((r) => r.connect()));
});
afterAll(async () => {
  await Promise.all(redis.map((r) => r.quit()));
});

const key = () => `iot:test:streams:${crypto.randomUUID()}`;

test('leases of every replica count toward the limit; a closed one frees its place; renewal keeps them', async () => {
  const [a, b] = redis.map((r) => new SharedStreamCounts(r));
  const k = key();
  const first = await a.open(k, 2);
  expect(first).toBeDefined();
  expect(await b.open(k, 2)).toBeDefined();
  expect(await a.open(k, 2)).toBeUndefined();
  expect(await b.open(k, 2)).toBeUndefined();
  await a.close(first!);
  expect(await b.open(k, 2)).toBeDefined();
  expect(await redis[0].zcard(k)).toBe(2);
  const before = Number((await redis[0].zrange(k, 0, -1, 'WITHSCORES'))[1]);
  await b.renew();
  const after = Number((await redis[0].zrange(k, 0, -1, 'WITHSCORES'))[1]);
  expect(after).toBeGreaterThanOrEqual(before);
  expect(await redis[0].pttl(k)).toBeGreaterThan(STREAM_LEASE_MS - 5000);
});

test("a dead replica's leases (not renewed, past their end) no longer count", async () => {
  const counts = new SharedStreamCounts(redis[0]);
  const k = key();
  // Two streams of a process that died a lease ago.
  await redis[1].zadd(k, Date.now() - 1000, 'dead:1', Date.now() - 1, 'dead:2');
  expect(await counts.open(k, 2)).toBeDefined();
  expect(await counts.open(k, 2)).toBeDefined();
  expect(await counts.open(k, 2)).toBeUndefined();
  expect(await redis[0].zrange(k, 0, -1)).not.toContain('dead:1');
});
