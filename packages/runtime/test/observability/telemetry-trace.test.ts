import { connect } from 'nats';
import { checkHealth, DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey } from '../../src';
import { CredentialState } from '../../../../gen/ts/iot/device/v1/device';
import { DeviceDirectoryEntry } from '../../../../gen/ts/iot/device/v1/directory';
import { repoPath } from '../../src/repo-paths';
import { TestNatsServer } from '../../../../testing/nats-server';
import { createTestDatabase, TestDatabase } from '../../../../testing/postgres';
import { Client } from 'pg';
import { OtlpReceiver, ReceivedSpan } from './otlp-receiver';
import { CONSUMER, isPostgres, PRODUCER } from './trace-helpers';
import { otelEnv, startTracedProcess, TracedProcess } from './traced-process';


/** The SQL text of a PostgreSQL span. */
const queryOf = (s: ReceivedSpan) => String(s.attributes['db.query.text'] ?? s.attributes['db.statement'] ?? s.name).trim();

/**
 * The device half of the platform's trace, with the real processes: the
 * simulator publishes telemetry with producer spans, the monitoring writer
 * stores it in a batch span linked to each message, and the batch's queries
 * hang under that span.
 */
describe('a device publish traced through the monitoring writer to the database', () => {
  let receiver: OtlpReceiver;
  let db: TestDatabase;
  let nats: TestNatsServer;
  let monitoring: TracedProcess;
  const tenant = `ttrace${Date.now().toString(36)}`;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    db = await createTestDatabase();
    nats = await TestNatsServer.start({ jetstream: true });
    monitoring = startTracedProcess(repoPath('services', 'monitoring', 'src', 'main.ts'), {
      ...otelEnv(receiver.endpoint, 'iot-monitoring'),
      GRPC_PORT: '0',
      DATABASE_URL: db.url,
      NATS_URL: nats.url,
      WRITER_BATCH_WAIT_MS: '20',
      // info: the line reporting the port it bound.
      LOG_LEVEL: 'info',
    });
    const port = await monitoring.reportedPort();
    for (;;) {
      if (monitoring.child.exitCode !== null) throw new Error(`monitoring exited: ${monitoring.output()}`);
      if ((await checkHealth(`127.0.0.1:${port}`, '', 1000).catch(() => undefined)) === 'SERVING') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    // Register the simulator's device as the device service would.
    const nc = await connect({ servers: nats.url });
    const directory = await nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
    const entry = DeviceDirectoryEntry.fromPartial({ tenantId: tenant, deviceId: 'sim-1', name: 'sim-1', type: 'weather', labels: {}, credentialState: CredentialState.CREDENTIAL_STATE_ACTIVE, updateTime: new Date() });
    await directory.put(deviceDirectoryKey(tenant, 'sim-1'), DeviceDirectoryEntry.encode(entry).finish());
    await nc.close();
  }, 60_000);

  afterAll(async () => {
    await monitoring?.stop();
    await receiver?.close();
    await nats?.stop();
    await db?.drop();
  });

  it('links the writer batch to the simulator\'s publish spans and parents the inserts under it', async () => {
    const args = ['--tenant', tenant, '--devices', '1', '--transport', 'nats', '--url', nats.url, '--rate', '10', '--duration', '2', '--passive', '--quiet'];
    const run = startTracedProcess(repoPath('simulator', 'src', 'main.ts'), otelEnv(receiver.endpoint, 'iot-simulator'), args);
    expect(await run.exited).toBe(0);

    const spans = await receiver.waitFor('a writer batch linked to a simulator publish, with its inserts', (all) => {
      const publishes = new Set(all.filter((s) => s.service === 'iot-simulator' && s.kind === PRODUCER).map((s) => s.spanId));
      return all.some(
        (s) => s.service === 'iot-monitoring' && s.kind === CONSUMER && s.links.some((l) => publishes.has(l.spanId)) && all.some((c) => c.parentSpanId === s.spanId && isPostgres(c) && /^COMMIT/.test(queryOf(c))),
      );
    }, 30_000);

    const publishes = spans.filter((s) => s.service === 'iot-simulator' && s.kind === PRODUCER);
    const publish = publishes[0];
    expect(publish.name).toBe(`publish iot.${tenant}.dev.sim-1.tel`);
    expect(publish.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.destination.name': `iot.${tenant}.dev.sim-1.tel`, 'messaging.operation.type': 'send' });
    expect(publish.attributes['messaging.message.id']).toEqual(expect.any(String));

    const batch = spans.find((s) => s.service === 'iot-monitoring' && s.kind === CONSUMER && s.links.some((l) => publishes.some((p) => p.spanId === l.spanId)))!;
    expect(batch.name).toBe('process TELEMETRY');
    expect(batch.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.operation.type': 'process', 'messaging.consumer.group.name': 'monitoring-writer' });
    // Each link names the exact publish span (and its trace) of a message in the batch.
    for (const link of batch.links) {
      const linked = publishes.find((p) => p.spanId === link.spanId);
      if (linked) expect(link.traceId).toBe(linked.traceId);
    }
    expect(batch.links.length).toBeLessThanOrEqual(Number(batch.attributes['messaging.batch.message_count']));
    // The batch's transaction runs under it. (The COPY of the points themselves goes through
    // pg-copy-streams, which the pg instrumentation does not trace; the statements around it are.)
    const queries = spans.filter((s) => s.parentSpanId === batch.spanId && isPostgres(s)).map(queryOf);
    expect(queries).toEqual(expect.arrayContaining([expect.stringMatching(/^BEGIN/), expect.stringMatching(/INSERT INTO latest_points/), expect.stringMatching(/^COMMIT/)]));

    // And the points are there.
    const client = new Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query('SELECT count(*)::int AS n FROM monitoring.points WHERE tenant_id = $1', [tenant]);
    await client.end();
    expect(rows[0].n).toBeGreaterThan(0);
  }, 60_000);
});
