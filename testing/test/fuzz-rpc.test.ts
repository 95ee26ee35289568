/*
 * Request-validation fuzzing (issue 13): every `iot.*` RPC of the descriptor
 * set gets requests fast-check generates from its input message (testing/
 * fuzz.ts wireMessage: hostile and huge strings, invalid UTF-8, edge and
 * truncated integers, unknown enums, deep nesting, unknown fields, wrong wire
 * types, truncated and random bytes), sent over the real gRPC stack of the
 * three services as an authorized caller (a tenant's admin; the platform
 * admin for platform RPCs). No answer may be INTERNAL, UNKNOWN, UNAVAILABLE,
 * DEADLINE_EXCEEDED or UNIMPLEMENTED; every INVALID_ARGUMENT names the bad
 * fields in `google.rpc.BadRequest`; the services still answer afterwards.
 * Server streams are opened, read briefly and cancelled. FUZZ_RUNS scales the
 * cases per RPC; the codes per RPC are printed as a table.
 */
import { Client, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { DescMethod, fromJson, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { accessReader, descriptorRegistry, insecureClient, meshMethods, methodPath, readDescriptorSet, rpcStatusDetails, unary } from '@iot-mesh/runtime';
import { Device, DeviceServiceClient, ListDevicesRequest } from '../../gen/ts/iot/device/v1/device';
import { fuzz, fuzzSeed, printFuzzCounts, wireMessage } from '../fuzz';
import { startMeshForTest, TestMesh } from '../mesh';
import { TestTenant } from '../signing';

/** Cases per unary RPC (FUZZ_RUNS to scale up); streams and RPCs without request fields get fewer. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 20);

// About 90 s at the default count on a busy 2-core machine; longer runs get time in proportion.
jest.setTimeout(Math.max(300_000, RUNS * 10_000));
const STREAM_RUNS = Math.max(2, Math.round(RUNS / 5));

/** Codes that mean the server failed rather than judged the request. */
const FAILURES = new Set<number>([status.INTERNAL, status.UNKNOWN, status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.UNIMPLEMENTED, status.DATA_LOSS]);

/**
 * How long one unary call may take before it counts as a blocked server: generous, since a legal
 * request can be heavy (BatchCreateDevices with 1,000 devices and their credentials took 20 s on a loaded machine).
 */
const CALL_DEADLINE_MS = 60_000;

/** How long a server stream that opened is read before the test cancels it. */
const STREAM_READ_MS = 200;

interface Outcome {
  code: number;
  details?: string;
  violations: number;
  /** The fields the violations name. */
  fields?: string[];
}

const registry = descriptorRegistry(readDescriptorSet());
const reader = accessReader(registry);
const methods = meshMethods(registry);

let mesh: TestMesh;
let tenant: TestTenant;
let deviceId: string;
const grpcClients = new Map<string, Client>();
/** Codes seen per RPC, for the table. */
const tally = new Map<string, Map<number, number>>();

function addressOf(method: DescMethod): string {
  const service = method.parent.file.proto.package.split('.')[1] as keyof TestMesh['addresses'];
  return mesh.addresses[service];
}

function authorizationFor(method: DescMethod): string {
  return reader.accessOf(method) === 'platform_admin' ? mesh.signing.platformAdmin.authorization : tenant.admin.authorization;
}

/** Sends raw request bytes; a server stream is read for a moment and cancelled (CANCELLED is then its outcome). */
function call(method: DescMethod, request: Uint8Array, readMs = STREAM_READ_MS): Promise<Outcome> {
  const address = addressOf(method);
  let client = grpcClients.get(address);
  if (!client) grpcClients.set(address, (client = new Client(address, credentials.createInsecure())));
  const metadata = new Metadata();
  metadata.set('authorization', authorizationFor(method));
  const identity = (b: Buffer) => b;
  const path = methodPath(method);
  const failed = (err: ServiceError): Outcome => {
    const violations = rpcStatusDetails(err.metadata).fieldViolations;
    return { code: err.code, details: err.details, violations: violations.length, fields: violations.map((v) => v.field) };
  };
  return new Promise((resolve) => {
    if (method.methodKind === 'unary') {
      client!.makeUnaryRequest(path, identity, identity, Buffer.from(request), metadata, { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null) =>
        resolve(err ? failed(err) : { code: status.OK, violations: 0 }),
      );
      return;
    }
    const stream = client!.makeServerStreamRequest(path, identity, identity, Buffer.from(request), metadata);
    const timer = setTimeout(() => stream.cancel(), readMs);
    stream.on('data', () => undefined);
    stream.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      resolve(failed(err));
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ code: status.OK, violations: 0 });
    });
  });
}

/** Why an outcome is a defect, or undefined when it is an answer a client can act on. */
function defectOf(outcome: Outcome): string | undefined {
  if (FAILURES.has(outcome.code)) return `${status[outcome.code]}: ${outcome.details}`;
  if (outcome.code === status.INVALID_ARGUMENT && outcome.violations === 0) return `INVALID_ARGUMENT without google.rpc.BadRequest field violations: ${outcome.details}`;
  return undefined;
}

beforeAll(async () => {
  // Printed first too: a run that never reaches afterAll (killed, timed out) can still be replayed.
  console.log(`fuzz testing/test/fuzz-rpc.test.ts: seed ${fuzzSeed} (FUZZ_SEED=${fuzzSeed} replays it)`);
  mesh = await startMeshForTest({ API_RATE_PER_TENANT: '100000', API_BURST_PER_TENANT: '100000', SIGNING_KEY_RETIRE_GRACE_MS: '3600000' });
  tenant = await mesh.signing.createTenant();
  const devices = insecureClient(DeviceServiceClient, mesh.addresses.device);
  try {
    deviceId = (await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'fuzz-device', type: 'weather' }) }, { authorization: tenant.admin.authorization })).device!.id;
  } finally {
    devices.close();
  }
}, 120_000);

afterAll(async () => {
  printFuzzCounts('testing/test/fuzz-rpc.test.ts');
  for (const client of grpcClients.values()) client.close();
  await mesh?.stop();
});

/** `fn` over `items`, at most `limit` at a time. */
async function eachWithConcurrency<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

test('every RPC answers generated requests with a code a client can act on, and the services stay up', async () => {
  expect(methods.length).toBeGreaterThan(0);
  // Fields named after resources sometimes carry the caller's own, so handlers get past their lookups.
  const known = { device_id: [deviceId], device_ids: [deviceId], id: [deviceId, tenant.viewer.userId, tenant.tenantId], tenant: [tenant.tenantName], user_id: [tenant.viewer.userId] };
  const failures: string[] = [];
  // An RPC whose proto is in the descriptor set but that no server serves yet is the authorization
  // matrix's finding (UNIMPLEMENTED fails there); here it is listed and skipped.
  const unserved: string[] = [];
  await eachWithConcurrency(methods, 8, async (method) => {
    if ((await call(method, new Uint8Array(0), 3000)).code === status.UNIMPLEMENTED) unserved.push(methodPath(method));
  });
  const served = methods.filter((m) => !unserved.includes(methodPath(m)));
  await eachWithConcurrency(served, 6, async (method) => {
    const name = `${method.parent.name}/${method.name}`;
    const codes = new Map<number, number>();
    tally.set(name, codes);
    const runs = method.methodKind === 'unary' ? (method.input.fields.length === 0 ? Math.max(3, Math.round(RUNS / 5)) : RUNS) : STREAM_RUNS;
    const property = fc.asyncProperty(wireMessage(method.input, 3, known), async (request) => {
      const outcome = await call(method, request);
      codes.set(outcome.code, (codes.get(outcome.code) ?? 0) + 1);
      const defect = defectOf(outcome);
      if (defect) throw new Error(`${methodPath(method)} answered ${defect}`);
    });
    await fuzz(`rpc: ${name}`, property, runs).catch((err: Error) => failures.push(err.message));
  });

  const all = [...tally.values()].reduce((sum, codes) => new Map([...sum, ...[...codes].map(([c, n]) => [c, (sum.get(c) ?? 0) + n] as [number, number])]), new Map<number, number>());
  const lines = [...tally].map(([name, codes]) => `  ${name.padEnd(58)} ${[...codes].sort((x, y) => x[0] - y[0]).map(([c, n]) => `${status[c]}×${n}`).join(' ')}`);
  const total = [...all.values()].reduce((s, n) => s + n, 0);
  console.log(`RPC fuzzing: ${served.length} RPCs (not served, skipped: ${unserved.join(', ') || 'none'}), ${total} calls (shrinking included); codes: ${[...all].map(([c, n]) => `${status[c]}×${n}`).join(' ')}\n${lines.join('\n')}`);
  expect(failures).toEqual([]);

  // Every service still answers an ordinary call.
  const devices = insecureClient(DeviceServiceClient, mesh.addresses.device);
  try {
    await unary(devices, devices.listDevices, ListDevicesRequest.fromPartial({}), { authorization: tenant.admin.authorization });
  } finally {
    devices.close();
  }
  expect((await unary(mesh.signing.clients.auth, mesh.signing.clients.auth.whoAmI, {}, { authorization: tenant.admin.authorization })).principal).toBeDefined();
  const monitoringHealth = await call(methods.find((m) => m.name === 'ListRules')!, new Uint8Array(0));
  expect(status[monitoringHealth.code]).toBe('OK');
});

/** The request of `name`'s RPC from plain field values (proto JSON names), as bytes. */
function requestOf(name: string, init: Record<string, unknown>): { method: DescMethod; bytes: Uint8Array } {
  const method = methods.find((m) => `${m.parent.name}/${m.name}` === name)!;
  return { method, bytes: toBinary(method.input, fromJson(method.input, init as never)) };
}

test('the requests fuzzing found defects with are refused with field violations, and the connection survives them', async () => {
  const cases: [string, Uint8Array, Outcome['code'], string | undefined][] = [];
  const add = (name: string, init: Record<string, unknown> | Uint8Array, code: number, field?: string) => {
    const { method, bytes } = init instanceof Uint8Array ? { method: methods.find((m) => `${m.parent.name}/${m.name}` === name)!, bytes: init } : requestOf(name, init);
    cases.push([methodPath(method), bytes, code, field]);
  };
  // Bytes grpc-js cannot decode (a lone tag) were INTERNAL.
  add('GroupService/CreateGroup', Uint8Array.from([5]), status.INVALID_ARGUMENT, '');
  // U+0000 reached PostgreSQL, which refused it: INTERNAL.
  add('GroupService/CreateGroup', { group: { name: 'g', description: 'a\u0000b' } }, status.INVALID_ARGUMENT, 'group.description');
  // A device type filter that is not a UUID failed in PostgreSQL without naming the field.
  add('DeviceService/ListDevices', { deviceTypeId: 'x' }, status.INVALID_ARGUMENT, 'device_type_id');
  // A 1 MiB id echoed into a 1 MiB grpc-message dropped the client's connection (UNAVAILABLE for every call on it).
  add('DeviceService/GetDevice', { id: 'a'.repeat(1 << 20) }, status.NOT_FOUND);
  // A timestamp past year 9999 (here 8,640,000,000,001 seconds, past the last date JavaScript can hold) reached PostgreSQL as an invalid date: INVALID_ARGUMENT naming no field.
  add('AuditService/ListAuditEvents', Uint8Array.from([18, 14, 10, 9, 8, 129, 128, 134, 193, 186, 251, 1, 16, 18, 1, 16, 18, 5, 18, 3, 16, 128, 2]), status.INVALID_ARGUMENT, 'time_range.start');
  // An expected_version near 2^63 rounded past int64 on its way to PostgreSQL (numeric out of range): INVALID_ARGUMENT naming no field.
  add('TwinService/UpdateDesired', Uint8Array.from([10, 1, 120, 18, 0, 24, 128, 252, 255, 255, 255, 255, 255, 255, 127]), status.INVALID_ARGUMENT, 'expected_version');
  // A command to an existing device that is offline was UNAVAILABLE (the client's cue to retry at once); the service is up, the device is not.
  // Its own device: the fuzzing above may have deleted the shared one (DeleteDevice with a known id).
  const devices = insecureClient(DeviceServiceClient, mesh.addresses.device);
  const offline = await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'offline-device' }) }, { authorization: tenant.admin.authorization }).finally(() => devices.close());
  add('CommandService/SendCommand', { deviceId: offline.device!.id, name: 'reboot' }, status.FAILED_PRECONDITION);
  for (const [path, bytes, code, field] of cases) {
    const method = methods.find((m) => methodPath(m) === path)!;
    const outcome = await call(method, bytes);
    expect({ path, code: status[outcome.code] }).toEqual({ path, code: status[code] });
    if (field !== undefined) expect(outcome.fields).toContain(field);
    expect(status[(await call(method, new Uint8Array(0))).code]).not.toBe('UNAVAILABLE');
  }
});
