import { ClientReadableStream, status } from '@grpc/grpc-js';
import { insecureClient, metrics, rpcStatusDetails, serverStream, unary } from '@iot-mesh/runtime';
import { eventually, MonitoringWorld, startWorld } from '@iot-mesh/monitoring/test-harness';
import { StreamLiveResponse, TelemetryServiceClient } from '../../gen/ts/iot/monitoring/v1/telemetry';
import { startSigningForTest, TestSigning, TestTenant } from '../signing';

jest.setTimeout(60_000);

// Limits a client can act on, against a real signing and monitoring: low enough to reach in a few calls.
let signing: TestSigning;
let world: MonitoringWorld;
let address: string;
const clients: TelemetryServiceClient[] = [];

beforeAll(async () => {
  signing = await startSigningForTest();
  world = await startWorld({
    SIGNING_ADDRESS: signing.address,
    API_RATE_PER_TENANT: '1',
    API_BURST_PER_TENANT: '10',
    STREAMS_PER_PRINCIPAL: '2',
    STREAMS_PER_CONNECTION: '3',
  });
  address = world.services[0].service.address;
});

afterAll(async () => {
  for (const c of clients) c.close();
  await world?.close();
  await signing?.stop();
});

/** A client on a connection of its own (grpc-js otherwise shares one per address). */
function newConnection(): TelemetryServiceClient {
  const client = insecureClient(TelemetryServiceClient, address, { options: { 'grpc.use_local_subchannel_pool': 1 } });
  clients.push(client);
  return client;
}

async function failureOf(call: Promise<unknown>): Promise<{ code: number; details: ReturnType<typeof rpcStatusDetails> }> {
  const err = (await call.then(
    () => {
      throw new Error('the call succeeded');
    },
    (e: unknown) => e,
  )) as { code: number; metadata?: { get(key: string): unknown[] } };
  return { code: err.code, details: rpcStatusDetails(err.metadata) };
}

/** A live stream, resolved once the server has sent its first (empty) frame: it then counts as open. */
async function openLive(client: TelemetryServiceClient, authorization: string): Promise<ClientReadableStream<StreamLiveResponse>> {
  const call = serverStream(client, client.streamLive, { deviceIds: [], labels: {}, groupIds: [], metrics: [] }, { authorization });
  await new Promise<void>((resolve, reject) => {
    call.once('data', () => resolve());
    call.once('error', reject);
  });
  call.on('error', () => undefined);
  return call;
}

/** Opens a stream expected to be refused and returns how. */
function refusedLive(client: TelemetryServiceClient, authorization: string) {
  return failureOf(openLive(client, authorization));
}

/** Streams the limits count as open in this process (the services run in-process). */
async function openStreams(): Promise<number> {
  return Number(/^iot_limits_open_streams (\d+)$/m.exec(await metrics.text())?.[1] ?? 0);
}

/** Cancels a stream and waits until the server has seen it go (the client sees its own cancel first). */
async function close(call: ClientReadableStream<StreamLiveResponse>): Promise<void> {
  const before = await openStreams();
  call.cancel();
  await eventually(async () => (await openStreams()) < before, 'the server freed the stream');
}

test('a tenant above its call rate gets RESOURCE_EXHAUSTED with RetryInfo; another tenant is not held back', async () => {
  const [a, b]: TestTenant[] = await Promise.all([signing.createTenant(), signing.createTenant()]);
  const client = newConnection();
  const call = (tenant: TestTenant) => unary(client, client.getLatest, { deviceIds: [], metrics: [] }, { authorization: tenant.viewer.authorization });
  // Burst 10 at 1/s: a few more calls than the burst cannot all find a token.
  let refused: Awaited<ReturnType<typeof failureOf>> | undefined;
  for (let i = 0; i < 30 && !refused; i++) {
    refused = await call(a).then(
      () => undefined,
      (err: { code: number; metadata?: { get(key: string): unknown[] } }) => ({ code: err.code, details: rpcStatusDetails(err.metadata) }),
    );
  }
  expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: { reason: 'TENANT_RATE_LIMITED' } });
  expect(refused!.details.retryAfterMs).toBeGreaterThan(0);
  expect(refused!.details.retryAfterMs).toBeLessThanOrEqual(1000);
  // Buckets are per tenant.
  await expect(call(b)).resolves.toMatchObject({ points: [] });
});

test('open streams are capped per principal and per connection, and freed when a stream ends', async () => {
  const t = await signing.createTenant();
  const shared = newConnection();
  const first = await openLive(shared, t.viewer.authorization);
  const second = await openLive(newConnection(), t.viewer.authorization);
  // A third stream of the same viewer, on any connection, is refused.
  const refused = await refusedLive(newConnection(), t.viewer.authorization);
  expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: { reason: 'TOO_MANY_STREAMS' } });
  // Other principals of the tenant hold their own streams: two more on the shared connection fill it (3).
  const byOperator = await openLive(shared, t.operator.authorization);
  const byAdmin = await openLive(shared, t.admin.authorization);
  expect(await refusedLive(shared, t.admin.authorization)).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: { reason: 'TOO_MANY_STREAMS' } });
  // Ending a stream gives its place back.
  await close(second);
  const again = await openLive(newConnection(), t.viewer.authorization);
  for (const call of [first, again, byOperator, byAdmin]) await close(call);
});

test('the cap per principal holds over replicas: streams open on one count on the other, and a lease ends with its stream', async () => {
  const t = await signing.createTenant();
  const other = await world.startReplica();
  const otherClient = insecureClient(TelemetryServiceClient, other.service.address, { options: { 'grpc.use_local_subchannel_pool': 1 } });
  clients.push(otherClient);
  // Two on this replica fill the viewer's cap (2): the other replica refuses a third.
  const first = await openLive(newConnection(), t.viewer.authorization);
  const second = await openLive(newConnection(), t.viewer.authorization);
  expect(await refusedLive(otherClient, t.viewer.authorization)).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: { reason: 'TOO_MANY_STREAMS' } });
  // One ends here: its place is free over there.
  await close(first);
  const there = await openLive(otherClient, t.viewer.authorization);
  expect(await refusedLive(newConnection(), t.viewer.authorization)).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: { reason: 'TOO_MANY_STREAMS' } });
  await close(second);
  await close(there);
});

test('a history query over more than the span (default 400 days) is INVALID_ARGUMENT with a field violation', async () => {
  const t = await signing.createTenant();
  const client = newConnection();
  const end = new Date('2026-06-01T00:00:00Z');
  const tooLong = { start: new Date(end.getTime() - 401 * 86_400_000), end };
  const viewer = { authorization: t.viewer.authorization };
  for (const query of [
    unary(client, client.queryHistory, { deviceId: 'd1', metrics: ['temp'], maxPoints: 100, aggregations: [], timeRange: tooLong }, viewer),
    unary(client, client.listPoints, { deviceId: 'd1', metrics: [], timeRange: tooLong }, viewer),
  ]) {
    const refused = await failureOf(query);
    expect(refused.code).toBe(status.INVALID_ARGUMENT);
    expect(refused.details.fieldViolations).toEqual([{ field: 'time_range', description: 'spans more than 400 days' }]);
  }
  const withinSpan = { start: new Date(end.getTime() - 400 * 86_400_000), end };
  await expect(unary(client, client.listPoints, { deviceId: 'd1', metrics: [], timeRange: withinSpan }, viewer)).resolves.toMatchObject({ points: [] });
});
