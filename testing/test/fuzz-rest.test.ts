/*
 * REST transcoder fuzzing (issue 13): every `google.api.http` binding of the
 * route table, called through the Node gateway in front of the three real
 * services with requests fast-check generates: bad path parameters (hostile
 * text, broken percent-encoding, dot segments, long ones), bad query strings
 * (unknown and repeated keys, wrong types, nested names), and bodies that are
 * malformed JSON, JSON of the wrong type per field, unknown fields, deeply
 * nested or larger than the gateway takes. Every answer must be a 2xx, or a
 * 4xx whose body is a `google.rpc.Status` (numeric code, string message);
 * never a 5xx; and the gateway still answers afterwards. FUZZ_RUNS scales it.
 */
import fc from 'fast-check';
import { DescField, DescMessage } from '@bufbuild/protobuf';
import { fuzz, fuzzSeed, hostileString, printFuzzCounts } from '../fuzz';
import { startMeshForTest, TestMesh } from '../mesh';
import { TestTenant } from '../signing';
import { rest, startTestGateway } from '../../gateway/test/gateway-harness';
import { MAX_REQUEST_BYTES } from '../../gateway/src/edge-policy';
import { buildRouteTable, HttpBinding, RouteMethod } from '../../gateway/src/route-table';

/** Cases per REST binding (FUZZ_RUNS scales the RPC and REST fuzzing alike). */
const RUNS = Math.max(2, Math.round(Number(process.env.FUZZ_RUNS ?? 20) / 2));

jest.setTimeout(Math.max(300_000, RUNS * 20_000));

const table = buildRouteTable();

let mesh: TestMesh;
let tenant: TestTenant;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

/** Percent-encodes the UTF-8 bytes of `s` (lone surrogates as U+FFFD): encodeURIComponent throws on those. */
function percentEncode(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
}

/** A path segment or query value as an attacker writes it: encoded hostile text, or raw bytes a decoder chokes on. */
const urlText: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: hostileString.map(percentEncode) },
  { weight: 2, arbitrary: fc.constantFrom('%', '%zz', '%00', '%C0%AF', '%ED%A0%80', '..', '.', '%2e%2e', '%2F', '~', '-1', '1e999', 'true', 'null', '[]', '{}') },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => 'a'.repeat(n)) },
);

/** A JSON value of any type, deep ones included: whatever a field gets, it is probably the wrong type. */
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.constantFrom(-1, 2 ** 53 + 1, 1e308, -1e308, 0.5, '9223372036854775808', '-1', 'NaN', 'Infinity', '') },
);

/** The JSON names of a message's fields, nested ones as `a.b` (for query strings). */
function queryNames(desc: DescMessage, prefix = '', depth = 2): string[] {
  return desc.fields.flatMap((f: DescField) => {
    const name = `${prefix}${f.jsonName}`;
    return f.fieldKind === 'message' && depth > 0 ? [name, ...queryNames(f.message, `${name}.`, depth - 1)] : [name];
  });
}

/** A request body: JSON objects with wrong-typed and unknown fields, malformed text, deep nesting, oversize. */
function bodyOf(desc: DescMessage): fc.Arbitrary<string> {
  const names = desc.fields.map((f) => f.jsonName);
  const object = fc
    .tuple(fc.subarray(names), fc.array(fc.tuple(hostileString, anyJson), { maxLength: 3 }))
    .chain(([chosen, unknown]) => fc.tuple(...chosen.map(() => anyJson)).map((values) => Object.fromEntries([...chosen.map((n, i) => [n, values[i]]), ...unknown])));
  return fc.oneof(
    { weight: 8, arbitrary: object.map((o) => JSON.stringify(o)) },
    { weight: 2, arbitrary: fc.string({ maxLength: 60 }) },
    { weight: 2, arbitrary: object.map((o) => JSON.stringify(o)).chain((text) => fc.nat({ max: Math.max(0, text.length - 1) }).map((cut) => text.slice(0, cut))) },
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 200_000 }).map((n) => `{"${names[0] ?? 'x'}":${'['.repeat(n)}${']'.repeat(n)}}`) },
    { weight: 1, arbitrary: fc.constantFrom('null', '[]', '1', '"s"', 'true', '{"__proto__":{"polluted":1}}') },
    { weight: 1, arbitrary: fc.constant(`{"${names[0] ?? 'x'}":"${'a'.repeat(MAX_REQUEST_BYTES + 10)}"}`) },
  );
}

/** One REST request for a binding: its path with generated parameters, a query string, maybe a body. */
function requestFor(binding: HttpBinding, route: RouteMethod): fc.Arbitrary<{ path: string; body?: string }> {
  const variables = binding.template.variables.length;
  const query = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...queryNames(route.method.input), 'x'), hostileString.map(percentEncode)), urlText), { maxLength: 4 });
  const body = binding.body ? fc.option(bodyOf(route.method.input), { nil: undefined, freq: 6 }) : fc.constant(undefined);
  return fc.tuple(fc.array(urlText, { minLength: variables, maxLength: variables }), query, body).map(([values, pairs, text]) => {
    let i = 0;
    const path = binding.template.source.replace(/\{[^}]*\}/g, () => values[i++] || 'x');
    const search = pairs.map(([k, v]) => `${k}=${v}`).join('&');
    return { path: search ? `${path}?${search}` : path, body: text };
  });
}

beforeAll(async () => {
  console.log(`fuzz testing/test/fuzz-rest.test.ts: seed ${fuzzSeed} (FUZZ_SEED=${fuzzSeed} replays it)`);
  mesh = await startMeshForTest({ API_RATE_PER_TENANT: '100000', API_BURST_PER_TENANT: '100000' });
  tenant = await mesh.signing.createTenant();
  gateway = await startTestGateway(mesh.addresses, ['*']);
}, 120_000);

afterAll(async () => {
  printFuzzCounts('testing/test/fuzz-rest.test.ts');
  await gateway?.close();
  await mesh?.stop();
});

/** Why an answer is a defect, or undefined. */
function defectOf(res: { status: number; json: unknown }): string | undefined {
  if (res.status >= 500) return `HTTP ${res.status}: ${JSON.stringify(res.json)?.slice(0, 300)}`;
  if (res.status >= 400) {
    const body = res.json as { code?: unknown; message?: unknown } | undefined;
    if (typeof body !== 'object' || body === null || typeof body.code !== 'number' || typeof body.message !== 'string') {
      return `HTTP ${res.status} without a google.rpc.Status body: ${String(JSON.stringify(res.json)).slice(0, 300)}`;
    }
  }
  return undefined;
}

test('every REST binding answers generated requests with a 2xx or a 4xx google.rpc.Status, never a 5xx', async () => {
  const bindings = table.methods.flatMap((route) => route.http.filter(() => route.kind === 'unary').map((binding) => ({ route, binding })));
  expect(bindings.length).toBeGreaterThan(0);
  const statuses = new Map<number, number>();
  const failures: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < bindings.length) {
      const { route, binding } = bindings[next++];
      const name = `${binding.verb} ${binding.template.source}`;
      const property = fc.asyncProperty(requestFor(binding, route), async ({ path, body }) => {
        const res = await rest(gateway.base, binding.verb, path, { body, authorization: tenant.admin.authorization });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const defect = defectOf(res);
        if (defect) throw new Error(`${binding.verb} ${path.slice(0, 200)} answered ${defect}`);
      });
      await fuzz(`rest: ${name}`, property, RUNS).catch((err: Error) => failures.push(err.message));
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  console.log(`REST fuzzing: ${bindings.length} bindings; HTTP statuses: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`);
  expect(failures).toEqual([]);
  // The gateway and the services behind it still answer.
  const who = await rest(gateway.base, 'GET', '/v1/auth/me', { authorization: tenant.admin.authorization });
  expect(who.status).toBe(200);
});

test('requests the parser, the body limit or the JSON decoder refuse get a google.rpc.Status too', async () => {
  const auth = { authorization: tenant.admin.authorization };
  const cases: [string, string, string | undefined, number][] = [
    // Node's parser refused a request line above 16 KiB with a bare status line and no body.
    ['GET', `/v1/devices/${'a'.repeat(30_000)}`, undefined, 431],
    ['POST', '/v1/devices', '{', 400],
    ['POST', '/v1/devices', `{"device":${'['.repeat(200_000)}${']'.repeat(200_000)}}`, 400],
    ['POST', '/v1/devices', `{"device":{"name":"${'a'.repeat(MAX_REQUEST_BYTES)}"}}`, 413],
    ['GET', '/v1/devices/%zz', undefined, 404],
  ];
  for (const [verb, path, body, expected] of cases) {
    const res = await rest(gateway.base, verb, path, { ...auth, body });
    expect({ path: path.slice(0, 40), status: res.status }).toEqual({ path: path.slice(0, 40), status: expected });
    expect(defectOf(res)).toBeUndefined();
  }
});
