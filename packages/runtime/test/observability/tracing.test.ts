import { Metadata, ServiceError as GrpcError } from '@grpc/grpc-js';
import crypto from 'node:crypto';
import { TwinServiceClient } from '../../../../gen/ts/iot/device/v1/twin';
import { insecureClient, unary } from '../../src';
import { repoPath } from '../../src/repo-paths';
import { createTestDatabase, TestDatabase } from '../../../../testing/postgres';
import { OtlpReceiver, ReceivedSpan } from './otlp-receiver';
import { CLIENT, CONSUMER, isPostgres, logLines, PRODUCER, SERVER, waitServing } from './trace-helpers';
import { otelEnv, startTracedProcess, TracedProcess } from './traced-process';

describe('OpenTelemetry traces across processes', () => {
  let receiver: OtlpReceiver;
  let db: TestDatabase;
  let echo: TracedProcess;
  let echoAddress: string;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    db = await createTestDatabase();
    echo = startTracedProcess(repoPath('packages', 'runtime', 'test', 'fixtures', 'echo-service.ts'), {
      ...otelEnv(receiver.endpoint, 'echo'),
      GRPC_PORT: '0',
      DATABASE_URL: db.url,
      LOG_LEVEL: 'debug',
    });
    echoAddress = `127.0.0.1:${await echo.reportedPort()}`;
    await waitServing(echoAddress, echo);
  }, 90_000);

  afterAll(async () => {
    await echo?.stop();
    await receiver?.close();
    await db?.drop();
  });

  it('joins a client call, the server span and its PostgreSQL query in one trace with rpc.* and db.* attributes', async () => {
    const client = startTracedProcess(repoPath('packages', 'runtime', 'test', 'observability', 'fixtures', 'traced-call.ts'), {
      ...otelEnv(receiver.endpoint, 'caller'),
      ECHO_ADDRESS: echoAddress,
      NOTE_ID: 'tr1',
    });
    expect(await client.exited).toBe(0);

    const isGetTwin = (s: ReceivedSpan) => s.attributes['rpc.method'] === 'GetTwin';
    const spans = await receiver.waitFor('GetTwin client, server and pg spans', (all) => {
      const servers = all.filter((s) => s.service === 'echo' && s.kind === SERVER && isGetTwin(s));
      return all.filter((s) => s.service === 'caller' && s.kind === CLIENT && isGetTwin(s)).length >= 2 && servers.length >= 2 && servers.every((srv) => all.some((s) => s.parentSpanId === srv.spanId));
    });

    const clientSpans = spans.filter((s) => s.service === 'caller' && s.kind === CLIENT && isGetTwin(s));
    for (const clientSpan of clientSpans) {
      // The server span is the client span's child, in the other process.
      const server = spans.find((s) => s.service === 'echo' && s.kind === SERVER && s.parentSpanId === clientSpan.spanId);
      expect(server).toBeDefined();
      expect(server!.traceId).toBe(clientSpan.traceId);
      expect(server!.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'iot.device.v1.TwinService', 'rpc.method': 'GetTwin' });
      expect(clientSpan.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'iot.device.v1.TwinService', 'rpc.method': 'GetTwin' });
    }
    // The found call ran its SELECT under the server span.
    const ok = clientSpans.find((c) => c.attributes['rpc.grpc.status_code'] === 0)!;
    const okServer = spans.find((s) => s.kind === SERVER && s.parentSpanId === ok.spanId)!;
    const query = spans.find((s) => s.service === 'echo' && s.parentSpanId === okServer.spanId && isPostgres(s) && /^pg\.query/.test(s.name));
    expect(query).toBeDefined();
    expect(query!.traceId).toBe(ok.traceId);
    expect(String(query!.attributes['db.statement'] ?? query!.attributes['db.query.text'])).toMatch(/SELECT body FROM notes/);

    // The missing note: NOT_FOUND on both sides, and the server's log line carries the trace.
    const missing = clientSpans.find((c) => c.attributes['rpc.grpc.status_code'] === 5)!;
    expect(missing).toBeDefined();
    const missingServer = spans.find((s) => s.kind === SERVER && s.parentSpanId === missing.spanId)!;
    expect(missingServer.attributes['rpc.grpc.status_code']).toBe(5);
    const rejected = logLines(echo.output()).find((l) => l.msg === 'call rejected' && l.trace_id === missing.traceId);
    expect(rejected).toMatchObject({ trace_id: missing.traceId, span_id: missingServer.spanId });
  }, 60_000);

  it('links a batch consumer span to every published message and parents its insert under it', async () => {
    const messages = 5;
    const subject = `iot.trace-test.dev.d${Date.now()}.tel`;
    const pipeline = startTracedProcess(repoPath('packages', 'runtime', 'test', 'observability', 'fixtures', 'nats-pipeline.ts'), {
      ...otelEnv(receiver.endpoint, 'pipeline'),
      DATABASE_URL: db.url,
      SUBJECT: subject,
      MESSAGES: String(messages),
    });
    expect(await pipeline.exited).toBe(0);

    const spans = await receiver.waitFor('publish, batch and insert spans', (all) => {
      const batch = all.find((s) => s.service === 'pipeline' && s.name === 'process TELEMETRY');
      return all.filter((s) => s.service === 'pipeline' && s.kind === PRODUCER).length === messages && !!batch && all.some((s) => s.parentSpanId === batch.spanId);
    });
    const publishes = spans.filter((s) => s.service === 'pipeline' && s.kind === PRODUCER);
    for (const publish of publishes) {
      expect(publish.name).toBe(`publish ${subject}`);
      expect(publish.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.destination.name': subject, 'messaging.operation.type': 'send' });
      expect(publish.attributes['messaging.message.id']).toMatch(/^m\d$/);
    }
    const batch = spans.find((s) => s.name === 'process TELEMETRY')!;
    expect(batch.kind).toBe(CONSUMER);
    expect(batch.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.operation.type': 'process', 'messaging.batch.message_count': messages, 'messaging.consumer.group.name': 'writer' });
    // One link per message, each to the exact publish span that carried it.
    expect(batch.links.map((l) => `${l.traceId}/${l.spanId}`).sort()).toEqual(publishes.map((p) => `${p.traceId}/${p.spanId}`).sort());
    const insert = spans.find((s) => s.parentSpanId === batch.spanId && isPostgres(s) && /^pg\.query/.test(s.name));
    expect(insert).toBeDefined();
    expect(insert!.traceId).toBe(batch.traceId);
    const committed = logLines(pipeline.output()).find((l) => l.msg === 'batch committed');
    expect(committed).toMatchObject({ trace_id: batch.traceId, span_id: batch.spanId });
  }, 60_000);
});

describe('tracing without an exporter', () => {
  it('sends nothing anywhere, and log lines still carry the caller\'s trace context', async () => {
    const receiver = await OtlpReceiver.start();
    const db = await createTestDatabase();
    // The receiver is running, but nothing names it: no OTEL_EXPORTER_OTLP_ENDPOINT.
    const echo = startTracedProcess(repoPath('packages', 'runtime', 'test', 'fixtures', 'echo-service.ts'), { GRPC_PORT: '0', DATABASE_URL: db.url, LOG_LEVEL: 'debug', OTEL_BSP_SCHEDULE_DELAY: '50' });
    const traceId = crypto.randomBytes(16).toString('hex');
    const parentId = crypto.randomBytes(8).toString('hex');
    try {
      const port = await echo.reportedPort();
      await waitServing(`127.0.0.1:${port}`, echo);
      const twins = insecureClient(TwinServiceClient, `127.0.0.1:${port}`);
      const metadata = new Metadata();
      metadata.set('traceparent', `00-${traceId}-${parentId}-01`);
      const error = (await unary(twins, twins.getTwin, { deviceId: 'missing' }, { metadata }).catch((e: GrpcError) => e)) as GrpcError;
      twins.close();
      expect(error.code).toBe(5);
    } finally {
      expect(await echo.stop()).toBe(0);
      await db.drop();
    }
    expect(receiver.spans).toEqual([]);
    await receiver.close();
    const rejected = logLines(echo.output()).find((l) => l.msg === 'call rejected');
    expect(rejected).toMatchObject({ trace_id: traceId, span_id: parentId });
  }, 60_000);
});
