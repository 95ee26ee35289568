/*
 * API-key verification single-flight (issue 13): concurrent verifications
 * of the same key that miss the cache do one lookup (one hash and one store
 * or signing round trip), not one per caller; different keys do not wait for
 * each other, and a failed lookup is not remembered.
 */
import { cachedApiKeyLookup, metrics, Principal, singleFlightApiKeyLookup } from '@iot-mesh/runtime';

const PRINCIPAL: Principal = { kind: 'api_key', id: 'k1', tenantId: 't1', role: 1 as Principal['role'], platformAdmin: false, name: 'bot' };

/** A lookup whose answers the test releases, counting its calls per secret. */
function gatedLookup() {
  const calls: string[] = [];
  const pending: (() => void)[] = [];
  const lookup = (secret: string) => {
    calls.push(secret);
    return new Promise<Principal | undefined>((resolve) => pending.push(() => resolve(secret === 'iotk_good' ? PRINCIPAL : undefined)));
  };
  return { lookup, calls, release: () => pending.splice(0).forEach((r) => r()) };
}

async function lookupsCounted(): Promise<number> {
  return Number(/^iot_auth_api_key_lookups_total (\d+)$/m.exec(await metrics.text())?.[1] ?? 0);
}

test('fifty concurrent cache misses of one key: one lookup, counted once, every caller gets its answer', async () => {
  const gate = gatedLookup();
  const verify = cachedApiKeyLookup(gate.lookup);
  const before = await lookupsCounted();
  const answers = Array.from({ length: 50 }, () => verify('iotk_good'));
  const other = verify('iotk_bad');
  await new Promise((r) => setImmediate(r));
  gate.release();
  expect(await Promise.all(answers)).toEqual(Array(50).fill(PRINCIPAL));
  expect(await other).toBeUndefined();
  expect(gate.calls).toEqual(['iotk_good', 'iotk_bad']);
  expect((await lookupsCounted()) - before).toBe(2);
  // Now cached: no further lookup.
  expect(await verify('iotk_good')).toEqual(PRINCIPAL);
  expect(gate.calls).toHaveLength(2);
});

test('single-flight without a cache (signing itself): shared while in flight, asked again afterwards; a failure reaches every waiter and is not kept', async () => {
  let calls = 0;
  let fail = true;
  const verify = singleFlightApiKeyLookup(async () => {
    calls++;
    await new Promise((r) => setImmediate(r));
    if (fail) throw new Error('store down');
    return PRINCIPAL;
  });
  const failed = await Promise.allSettled([verify('iotk_x'), verify('iotk_x'), verify('iotk_x')]);
  expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
  expect(calls).toBe(1);
  fail = false;
  expect(await Promise.all([verify('iotk_x'), verify('iotk_x')])).toEqual([PRINCIPAL, PRINCIPAL]);
  expect(calls).toBe(2);
  await verify('iotk_x');
  expect(calls).toBe(3);
});
