import { ServiceError as GrpcError } from '@grpc/grpc-js';
import { DeviceServiceClient } from '../../../../gen/ts/iot/device/v1/device';
import { TwinServiceClient } from '../../../../gen/ts/iot/device/v1/twin';
import { createTestDatabase, TestDatabase } from '../../../../testing/postgres';
import { startTestService, TestService } from '../../../../testing/services';
import { countCacheLookups, insecureClient, metrics, serverStream, unary } from '../../src';
import { echoService } from '../fixtures/echo-service';
import { sampleValue, scrape } from './prometheus-text';

describe('Prometheus metrics of a service', () => {
  let db: TestDatabase;
  let service: TestService<{}>;
  let twins: TwinServiceClient;
  let metricsPort: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    service = await startTestService(echoService, { DATABASE_URL: db.url, METRICS_PORT: '0' });
    metricsPort = service.running.metricsPort!;
    twins = insecureClient(TwinServiceClient, service.address);
  });
  afterAll(async () => {
    twins.close();
    await service.stop();
    await db.drop();
  });

  const server = { grpc_type: 'unary', grpc_service: 'iot.device.v1.TwinService', grpc_method: 'GetTwin' };

  it('serves go-grpc-prometheus server metrics, initialised at zero for every method', async () => {
    const { samples, families } = await scrape(metricsPort);
    expect(families.get('grpc_server_handled_total')).toBe('counter');
    expect(families.get('grpc_server_handling_seconds')).toBe('histogram');
    // Declared methods appear before any call, so dashboards and absent() alerts work from the start.
    const watch = { grpc_type: 'server_stream', grpc_service: 'iot.device.v1.DeviceService', grpc_method: 'WatchDevices' };
    expect(samples.some((s) => s.name === 'grpc_server_started_total' && s.labels.grpc_method === 'WatchDevices' && s.labels.grpc_type === 'server_stream')).toBe(true);
    expect(samples.some((s) => s.name === 'grpc_server_handling_seconds_count' && s.labels.grpc_method === 'CreateDevice')).toBe(true);
    expect(sampleValue(samples, 'grpc_server_handled_total', { ...watch, grpc_code: 'OK' })).toBe(0);
    // A client made by insecureClient exports its methods at zero too.
    expect(samples.some((s) => s.name === 'grpc_client_handled_total' && s.labels.grpc_service === 'iot.device.v1.TwinService' && s.labels.grpc_method === 'UpdateDesired' && s.value === 0)).toBe(true);
  });

  it('counts started and handled calls by status code and observes latency', async () => {
    const before = (await scrape(metricsPort)).samples;
    await unary(twins, twins.updateDesired, { deviceId: 'm1', desired: { body: 'x' }, expectedVersion: 0n });
    await unary(twins, twins.getTwin, { deviceId: 'm1' });
    await unary(twins, twins.getTwin, { deviceId: 'm1' });
    const missing = (await unary(twins, twins.getTwin, { deviceId: 'missing' }).catch((e: GrpcError) => e)) as GrpcError;
    expect(missing.code).toBe(5);
    await unary(twins, twins.getTwin, { deviceId: '' }).catch(() => undefined);

    const after = (await scrape(metricsPort)).samples;
    const delta = (name: string, labels: Record<string, string>) => sampleValue(after, name, labels) - sampleValue(before, name, labels);
    expect(delta('grpc_server_started_total', server)).toBe(4);
    expect(delta('grpc_server_handled_total', { ...server, grpc_code: 'OK' })).toBe(2);
    expect(delta('grpc_server_handled_total', { ...server, grpc_code: 'NotFound' })).toBe(1);
    expect(delta('grpc_server_handled_total', { ...server, grpc_code: 'InvalidArgument' })).toBe(1);
    expect(delta('grpc_server_handling_seconds_count', server)).toBe(4);
    expect(delta('grpc_server_handling_seconds_bucket', { ...server, le: '+Inf' })).toBe(4);
    expect(delta('grpc_server_msg_received_total', server)).toBe(4);
    expect(delta('grpc_server_msg_sent_total', server)).toBe(2);

    // The same calls seen by the client interceptor the runtime's insecureClient installs.
    expect(delta('grpc_client_started_total', server)).toBe(4);
    expect(delta('grpc_client_handled_total', { ...server, grpc_code: 'NotFound' })).toBe(1);
    expect(delta('grpc_client_handled_total', { ...server, grpc_code: 'OK' })).toBe(2);
    expect(delta('grpc_client_handling_seconds_count', server)).toBe(4);
  });

  it('counts a deadline the client set as DeadlineExceeded on both sides', async () => {
    const before = (await scrape(metricsPort)).samples;
    await unary(twins, twins.getTwin, { deviceId: 'slow' }, { deadlineMs: 100 }).catch(() => undefined);
    // The server records the call when its handler gives up, a moment after the client did.
    let after = (await scrape(metricsPort)).samples;
    for (let i = 0; i < 50 && sampleValue(after, 'grpc_server_handled_total', { ...server, grpc_code: 'DeadlineExceeded' }) === sampleValue(before, 'grpc_server_handled_total', { ...server, grpc_code: 'DeadlineExceeded' }); i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = (await scrape(metricsPort)).samples;
    }
    const delta = (name: string, labels: Record<string, string>) => sampleValue(after, name, labels) - sampleValue(before, name, labels);
    expect(delta('grpc_server_handled_total', { ...server, grpc_code: 'DeadlineExceeded' })).toBe(1);
    expect(delta('grpc_client_handled_total', { ...server, grpc_code: 'DeadlineExceeded' })).toBe(1);
  });

  it('counts server-stream messages received by the client', async () => {
    const devices = insecureClient(DeviceServiceClient, service.address);
    const labels = { grpc_type: 'server_stream', grpc_service: 'iot.device.v1.DeviceService', grpc_method: 'WatchDevices' };
    const before = (await scrape(metricsPort)).samples;
    await new Promise<void>((resolve, reject) => {
      const stream = serverStream(devices, devices.watchDevices, { deviceIds: ['a', 'b', 'c'], labels: {} });
      stream.on('data', () => undefined);
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    devices.close();
    const after = (await scrape(metricsPort)).samples;
    const delta = (name: string, l: Record<string, string>) => sampleValue(after, name, l) - sampleValue(before, name, l);
    expect(delta('grpc_client_msg_received_total', labels)).toBe(3);
    expect(delta('grpc_server_handled_total', { ...labels, grpc_code: 'OK' })).toBe(1);
    expect(delta('grpc_client_handled_total', { ...labels, grpc_code: 'OK' })).toBe(1);
  });

  it('serves process metrics, the database pool and domain metrics registered through the shared helpers', async () => {
    const declare = () => metrics.counter('iot_dead_letters_total', 'Telemetry messages sent to the dead-letter subject, by reason.', ['reason']);
    const first = declare();
    expect(declare()).toBe(first);
    first.inc({ reason: 'malformed' }, 2);
    expect(() => metrics.gauge('iot_dead_letters_total', 'clash')).toThrow(/already registered as a counter/);

    const { samples, families } = await scrape(metricsPort);
    expect(families.get('process_cpu_seconds_total')).toBe('counter');
    expect(families.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(sampleValue(samples, 'iot_dead_letters_total', { reason: 'malformed' })).toBe(2);
    expect(sampleValue(samples, 'iot_db_pool_connections', { pool: 'echo_test', state: 'total' })).toBeGreaterThan(0);
  });

  it('counts cache hits, misses and errors of a decorated cache', async () => {
    const store = new Map([['a', { id: 'a' }]]);
    const cache = countCacheLookups({ async get(key: string) { if (key === 'boom') throw new Error('redis down'); return store.get(key); } }, 'get', 'test-cache');
    expect((await scrape(metricsPort)).samples.filter((s) => s.name === 'iot_cache_requests_total' && s.labels.cache === 'test-cache').map((s) => [s.labels.result, s.value])).toEqual([['hit', 0], ['miss', 0]]);
    expect(await cache.get('a')).toEqual({ id: 'a' });
    expect(await cache.get('a')).toEqual({ id: 'a' });
    expect(await cache.get('b')).toBeUndefined();
    await expect(cache.get('boom')).rejects.toThrow('redis down');
    const { samples } = await scrape(metricsPort);
    expect(sampleValue(samples, 'iot_cache_requests_total', { cache: 'test-cache', result: 'hit' })).toBe(2);
    expect(sampleValue(samples, 'iot_cache_requests_total', { cache: 'test-cache', result: 'miss' })).toBe(1);
    expect(sampleValue(samples, 'iot_cache_requests_total', { cache: 'test-cache', result: 'error' })).toBe(1);
  });

  it('stops serving /metrics when the service stops', async () => {
    const other = await startTestService(echoService, { DATABASE_URL: db.url, METRICS_PORT: '0' });
    const port = other.running.metricsPort!;
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
    await other.stop();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it('has no endpoint when METRICS_PORT is unset', async () => {
    const other = await startTestService(echoService, { DATABASE_URL: db.url });
    expect(other.running.metricsPort).toBeUndefined();
    await other.stop();
  });
});
