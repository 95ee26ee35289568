import crypto from 'node:crypto';
import { createLogger, createRedis, LeasedBuckets, leaseSize, Redis } from '@iot-mesh/runtime';
import { TEST_REDIS_URL } from '../../../testing/test-services';

// The per-tenant call rate's shared bucket, against a real Redis: two "replicas" (clients of their own)
// spend leases of one bucket.
const log = createLogger('token-bucket-test', 'warn');
let replicas: Redis[];
let inspector: Redis;

beforeAll(async () => {
  replicas = [createRedis(TEST_REDIS_URL, log), createRedis(TEST_REDIS_URL, log)];
  inspector = createRedis(TEST_REDIS_URL, log);
  await Promise.all([...replicas, inspector].map((r) => r.connect()));
});
afterAll(async () => {
  await Promise.all([...replicas, inspector].map((r) => r.quit()));
});

const key = () => `iot:test:limits:${crypto.randomUUID()}`;
const tokensIn = async (k: string) => Number(await inspector.hget(k, 'tokens'));

test('a lease is one Redis round trip for many calls, and a lease left unspent expires', async () => {
  let now = 1_000_000;
  // One token a second: the refill during the test is at most a token or two.
  const bucket = new LeasedBuckets(replicas[0], { ratePerS: 1, burst: 100 }, { lease: 10, now: () => now });
  const k = key();
  expect(await bucket.take(k)).toEqual({ allowed: true, retryAfterMs: 0 });
  expect(await tokensIn(k)).toBe(90);
  for (let i = 0; i < 9; i++) expect((await bucket.take(k)).allowed).toBe(true);
  // Ten calls, one lease: Redis was not asked again.
  expect(await tokensIn(k)).toBe(90);
  await bucket.take(k);
  expect(await tokensIn(k)).toBeLessThan(82);
  // Its nine unspent tokens are dropped after the lease's second, never given back.
  now += 1001;
  await bucket.take(k);
  expect(await tokensIn(k)).toBeLessThan(72);
});

test('replicas together admit no more than the bucket holds, and refuse the rest with the wait', async () => {
  const settings = { ratePerS: 1, burst: 100 };
  const k = key();
  const buckets = replicas.map((r) => new LeasedBuckets(r, settings, { lease: 10 }));
  const started = Date.now();
  const takes = await Promise.all(Array.from({ length: 150 }, (_, i) => buckets[i % 2].take(k)));
  const refillAllowance = Math.ceil(((Date.now() - started) / 1000) * settings.ratePerS) + 1;
  const admitted = takes.filter((t) => t.allowed).length;
  expect(admitted).toBeLessThanOrEqual(settings.burst + refillAllowance);
  // At most one lease per replica is left unspent when the other replica runs dry.
  expect(admitted).toBeGreaterThanOrEqual(settings.burst - 2 * 10);
  const refused = takes.filter((t) => !t.allowed);
  expect(refused.length).toBe(150 - admitted);
  for (const r of refused) expect(r.retryAfterMs).toBeGreaterThan(0);
});

test('lease sizes: one token for small limits, a twentieth of the smaller of rate and burst, at most 1,000', () => {
  expect(leaseSize({ ratePerS: 1, burst: 10 })).toBe(1);
  expect(leaseSize({ ratePerS: 200, burst: 400 })).toBe(10);
  expect(leaseSize({ ratePerS: 1_000_000, burst: 1_000_000 })).toBe(1000);
});
