/*
 * The authorization matrix (issue 13): every `iot.*` RPC of the descriptor
 * set × the callers an attacker can be → the code the mesh must answer, over
 * the real gRPC stack of the three services. The RPC list and each RPC's
 * rule come from gen/iot.binpb (the `(iot.common.v1.access)` option), so an
 * RPC is covered the day it is added. Requests are empty, except for the
 * caller of another tenant, whose requests name tenant A's resources; no
 * answer may carry any of tenant A's identifiers to it. The table is printed.
 */
import { Client, credentials, Metadata, ServiceError, status } from '@grpc/grpc-js';
import { create, DescMessage, DescMethod, toBinary } from '@bufbuild/protobuf';
import { Access, accessReader, descriptorRegistry, insecureClient, meshMethods, methodPath, readDescriptorSet, Role, unary } from '@iot-mesh/runtime';
import { claimsFor, currentSigningKey, signAccessToken } from '@iot-mesh/signing/test-support';
import { eventually, protobufPayload } from '@iot-mesh/monitoring/test-harness';
import { Device, DeviceServiceClient } from '../../gen/ts/iot/device/v1/device';
import { TelemetryServiceClient } from '../../gen/ts/iot/monitoring/v1/telemetry';
import { startMeshForTest, TestMesh } from '../mesh';
import { TestTenant } from '../signing';

jest.setTimeout(120_000);

/** The callers of the matrix, in column order. */
const CALLERS = ['none', 'expired', 'other tenant', 'viewer', 'operator', 'revoked key', 'tenant admin', 'platform key'] as const;
type Caller = (typeof CALLERS)[number];

/** What a cell must show: refused with a code, or let past authorization (then validation or lookup decides). */
type Expected = 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'passes';

type UserAccess = Exclude<Access, 'device_credential'>;
const RANK: Record<UserAccess, number> = { public: 0, authenticated: 1, viewer: 2, operator: 3, admin: 4, platform_admin: 5 };

/** The rule of the matrix: what each caller must get for an RPC with the given access. */
function expectedFor(caller: Caller, access: Access): Expected {
  // Every caller of the matrix presents a user's or a key's token, or none, never a device's own credential.
  if (access === 'device_credential') return 'UNAUTHENTICATED';
  switch (caller) {
    case 'none':
    case 'expired':
    case 'revoked key':
      return access === 'public' ? 'passes' : 'UNAUTHENTICATED';
    case 'viewer':
      return RANK[access] > RANK.viewer ? 'PERMISSION_DENIED' : 'passes';
    case 'operator':
      return RANK[access] > RANK.operator ? 'PERMISSION_DENIED' : 'passes';
    case 'other tenant':
    case 'tenant admin':
    // An admin API key of the platform tenant is still never a platform admin.
    case 'platform key':
      return access === 'platform_admin' ? 'PERMISSION_DENIED' : 'passes';
  }
}

/** Codes that never mean "authorized, then refused for the request itself". */
const NOT_PASSING = new Set<number>([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.UNIMPLEMENTED, status.INTERNAL, status.UNKNOWN, status.DEADLINE_EXCEEDED]);

/** How long a server stream that was let through is watched before it counts as open (refusals come before any handler runs). */
const STREAM_OPEN_MS = 3000;

interface Cell {
  code: number;
  /** The status message, shown for mismatches. */
  message?: string;
  /** The stream was let through and stayed open. */
  open?: boolean;
  /** Bytes of every response message. */
  body: Buffer;
}

let mesh: TestMesh;
let a: TestTenant;
let b: TestTenant;
let aDeviceId: string;
let aKeyId: string;
let authorization: Record<Caller, string | undefined>;
const grpcClients = new Map<string, Client>();

const registry = descriptorRegistry(readDescriptorSet());
const reader = accessReader(registry);
const methods = meshMethods(registry);

/** The service that answers a method: its package's second part (`iot.device.v1` → device). */
function addressOf(method: DescMethod): string {
  const service = method.parent.file.proto.package.split('.')[1] as keyof TestMesh['addresses'];
  const address = mesh.addresses[service];
  if (!address) throw new Error(`no service of the mesh answers ${methodPath(method)}`);
  return address;
}

/** A request naming tenant A's resources in every top-level id field: what an attacker of tenant B would send. */
function requestAgainstA(method: DescMethod): Uint8Array {
  const input: DescMessage = method.input;
  const message = create(input) as unknown as Record<string, unknown>;
  const service = method.parent.name;
  for (const field of input.fields) {
    if (field.fieldKind === 'list' && field.listKind === 'scalar' && field.scalar === 9 && field.name === 'device_ids') message[field.localName] = [aDeviceId];
    if (field.fieldKind !== 'scalar' || field.scalar !== 9 /* string */) continue;
    if (field.name === 'tenant_id') message[field.localName] = a.tenantId;
    else if (field.name === 'device_id') message[field.localName] = aDeviceId;
    else if (field.name === 'user_id') message[field.localName] = a.viewer.userId;
    else if (field.name === 'id' || field.name === 'name') {
      message[field.localName] = service.startsWith('User') ? a.viewer.userId : service.startsWith('Tenant') ? a.tenantId : service.startsWith('ApiKey') ? aKeyId : aDeviceId;
    }
  }
  return toBinary(input, message as never);
}

/** Calls one RPC with raw bytes and the caller's authorization; never throws. */
function call(method: DescMethod, caller: Caller, request: Uint8Array): Promise<Cell> {
  const address = addressOf(method);
  let client = grpcClients.get(address);
  if (!client) grpcClients.set(address, (client = new Client(address, credentials.createInsecure())));
  const metadata = new Metadata();
  const auth = authorization[caller];
  if (auth) metadata.set('authorization', auth);
  const identity = (b: Buffer) => b;
  const path = methodPath(method);
  return new Promise((resolve) => {
    if (method.methodKind === 'unary') {
      client!.makeUnaryRequest(path, identity, identity, Buffer.from(request), metadata, (err: ServiceError | null, value?: Buffer) =>
        resolve({ code: err ? err.code : status.OK, message: err?.details, body: value ?? Buffer.alloc(0) }),
      );
      return;
    }
    const chunks: Buffer[] = [];
    const stream = client!.makeServerStreamRequest(path, identity, identity, Buffer.from(request), metadata);
    let settled = false;
    const settle = (cell: Cell) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(cell);
    };
    // A stream that was let through may legitimately stay silent: after a while it counts as open.
    const timer = setTimeout(() => {
      settle({ code: status.OK, open: true, body: Buffer.concat(chunks) });
      stream.cancel();
    }, STREAM_OPEN_MS);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (err: ServiceError) => settle({ code: err.code, message: err.details, body: Buffer.concat(chunks) }));
    stream.on('end', () => settle({ code: status.OK, body: Buffer.concat(chunks) }));
  });
}

beforeAll(async () => {
  mesh = await startMeshForTest();
  const { signing } = mesh;
  [a, b] = await Promise.all([signing.createTenant(), signing.createTenant()]);
  const devices = insecureClient(DeviceServiceClient, mesh.addresses.device);
  try {
    aDeviceId = (await unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'a-device', type: 'weather' }) }, { authorization: a.admin.authorization })).device!.id;
  } finally {
    devices.close();
  }
  // Tenant A's device has telemetry on record, and keeps sending it while the matrix runs (see the test).
  // The monitoring world has a NATS server of its own: its device directory learns A's device as the device service would tell it.
  await mesh.monitoring.registerDevice(a.tenantId, aDeviceId);
  await publishA();
  const telemetry = insecureClient(TelemetryServiceClient, mesh.addresses.monitoring);
  try {
    await eventually(async () => (await unary(telemetry, telemetry.getLatest, { deviceIds: [aDeviceId], metrics: [] }, { authorization: a.viewer.authorization })).points.length > 0, "tenant A's telemetry stored");
  } finally {
    telemetry.close();
  }
  const revoked = await a.createApiKey('admin', 'revoked-admin-key');
  await unary(signing.clients.apiKeys, signing.clients.apiKeys.revokeApiKey, { id: revoked.id }, { authorization: a.admin.authorization });
  aKeyId = (await a.createApiKey('viewer', 'a-viewer-key')).id;
  const platformKey = await unary(signing.clients.apiKeys, signing.clients.apiKeys.createApiKey, { name: 'platform-admin-key', role: Role.ROLE_ADMIN }, { authorization: signing.platformAdmin.authorization });
  // A token signing itself signed, for tenant A's admin, that expired a minute ago.
  const key = await currentSigningKey(signing.database.url, signing.service.ctx.config.SIGNING_KEY_ENCRYPTION_KEY!);
  const past = Math.floor(Date.now() / 1000) - 60;
  const expired = signAccessToken(claimsFor({ sub: a.admin.userId, tid: a.tenantId, role: 'admin' }, { iat: past - 300, exp: past }), key.privateKey, key.kid);
  authorization = {
    none: undefined,
    expired: `Bearer ${expired}`,
    'other tenant': b.admin.authorization,
    viewer: a.viewer.authorization,
    operator: a.operator.authorization,
    'revoked key': revoked.authorization,
    'tenant admin': a.admin.authorization,
    'platform key': `ApiKey ${platformKey.secret}`,
  };
}, 120_000);

afterAll(async () => {
  for (const client of grpcClients.values()) client.close();
  await mesh?.stop();
});

/** One telemetry message of tenant A's device, as the device would publish it. */
function publishA(): Promise<void> {
  return mesh.monitoring.publish(a.tenantId, aDeviceId, protobufPayload({ points: [{ metric: 'temperature', numberValue: 21.5 }] }));
}

/** `fn` over `items`, at most `limit` at a time, results in order: a burst the size of a busy client, not of the whole matrix. */
async function mapWithConcurrency<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** How a cell reads in the printed table. */
function label(cell: Cell): string {
  if (cell.open) return 'open';
  return status[cell.code];
}

test('every RPC × every caller answers as its access option says, and tenant B never sees tenant A’s data', async () => {
  expect(methods.length).toBeGreaterThan(0);
  const empty = new Uint8Array(0);
  // Each service learns every credential once first (JWKS, API-key lookups), as it would over a day's traffic,
  // so no cell of the matrix depends on how long a cold lookup takes under the burst.
  const firstUnaryPerService = new Map<string, DescMethod>();
  for (const method of methods) if (method.methodKind === 'unary' && !firstUnaryPerService.has(addressOf(method))) firstUnaryPerService.set(addressOf(method), method);
  await Promise.all([...firstUnaryPerService.values()].map((method) => Promise.all(CALLERS.map((caller) => call(method, caller, empty)))));

  // Live streams opened by tenant B for A's device would carry A's frames: A keeps publishing meanwhile.
  const publishing = setInterval(() => void publishA().catch(() => undefined), 100);
  const rows = await mapWithConcurrency(methods, 8, async (method) => {
    const access = reader.accessOf(method);
    const cells = await Promise.all(CALLERS.map((caller) => call(method, caller, caller === 'other tenant' ? requestAgainstA(method) : empty)));
    return { method, access, cells };
  }).finally(() => clearInterval(publishing));

  const mismatches: string[] = [];
  const leaks: string[] = [];
  const secretsOfA = [a.tenantId, a.tenantName, aDeviceId, aKeyId, a.admin.userId, a.operator.userId, a.viewer.userId, a.admin.email];
  for (const { method, access, cells } of rows) {
    if (!access) {
      mismatches.push(`${methodPath(method)}: declares no access rule`);
      continue;
    }
    CALLERS.forEach((caller, i) => {
      const cell = cells[i];
      const expected = expectedFor(caller, access);
      const ok = expected === 'passes' ? cell.open === true || !NOT_PASSING.has(cell.code) : !cell.open && status[cell.code] === expected;
      if (!ok) mismatches.push(`${methodPath(method)} (${access}) as ${caller}: expected ${expected}, got ${label(cell)} ${cell.message ?? ''}`);
    });
    const other = cells[CALLERS.indexOf('other tenant')];
    const text = other.body.toString('latin1');
    for (const secret of secretsOfA) if (text.includes(secret)) leaks.push(`${methodPath(method)}: answered tenant B with tenant A's ${JSON.stringify(secret)}`);
  }

  const header = ['RPC', 'access', ...CALLERS];
  const lines = rows.map(({ method, access, cells }) => [`${method.parent.name}/${method.name}`, access ?? '—', ...cells.map(label)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const row = (cols: string[]) => `| ${cols.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  const refused = rows.reduce((n, r) => n + r.cells.filter((c, i) => expectedFor(CALLERS[i], r.access ?? 'public') !== 'passes' && !c.open && NOT_PASSING.has(c.code)).length, 0);
  console.log(
    [
      `Authorization matrix: ${rows.length} RPCs × ${CALLERS.length} callers = ${rows.length * CALLERS.length} calls; ${refused} refused as expected, ${mismatches.length} mismatches, ${leaks.length} leaks`,
      row(header),
      row(widths.map((w) => '-'.repeat(w))),
      ...lines.map(row),
    ].join('\n'),
  );
  expect(mismatches).toEqual([]);
  expect(leaks).toEqual([]);

  // Tenant B's mutating calls named A's device, user and key: all of them are still there, untouched.
  const { signing } = mesh;
  const devices = insecureClient(DeviceServiceClient, mesh.addresses.device);
  try {
    expect((await unary(devices, devices.getDevice, { id: aDeviceId }, { authorization: a.admin.authorization })).device?.name).toBe('a-device');
  } finally {
    devices.close();
  }
  expect((await unary(signing.clients.users, signing.clients.users.getUser, { id: a.viewer.userId }, { authorization: a.admin.authorization })).user?.role).toBe(Role.ROLE_VIEWER);
  const keys = await unary(signing.clients.apiKeys, signing.clients.apiKeys.listApiKeys, {}, { authorization: a.admin.authorization });
  expect(keys.apiKeys.find((k) => k.id === aKeyId)?.revokeTime).toBeUndefined();
});
