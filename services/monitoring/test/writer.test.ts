import { Client } from 'pg';
import { testPgAdminUrl } from '../../../testing/postgres';
import { eventually, jsonPayload, MonitoringWorld, newTenant, protobufPayload, startWorld } from './harness';

jest.setTimeout(60_000);

let world: MonitoringWorld;

beforeAll(async () => {
  world = await startWorld({ WRITER_BATCH_MAX: '50', WRITER_MAX_BACKOFF_MS: '300' }, { replicas: 2 });
});
afterAll(async () => {
  await world?.close();
});

async function distinctRows(tenantId: string): Promise<{ total: number; distinct: number }> {
  const { rows } = await world.pool.query(
    `SELECT count(*)::int AS total, count(DISTINCT (device_id, message_id, point_index))::int AS distinct FROM points WHERE tenant_id = $1`,
    [tenantId],
  );
  return rows[0];
}

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: testPgAdminUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

test('two writer replicas share the work and store every point exactly once', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const [a, b] = world.services.map((s) => s.stats.ingest);
  const before = [a.messagesReceived, b.messagesReceived];
  const publishes: Promise<void>[] = [];
  for (let i = 0; i < 1000; i++) {
    publishes.push(world.publish(t, 'd1', protobufPayload({ messageId: `m${i}`, points: [{ metric: 'x', numberValue: i }, { metric: 'y', numberValue: -i }] })));
  }
  await Promise.all(publishes);
  await eventually(async () => (await world.rowCount(t)) === 2000, '2000 rows');
  expect(await distinctRows(t)).toEqual({ total: 2000, distinct: 2000 });
  expect(a.messagesReceived - before[0]).toBeGreaterThan(0);
  expect(b.messagesReceived - before[1]).toBeGreaterThan(0);
  expect(a.messagesReceived - before[0] + (b.messagesReceived - before[1])).toBeGreaterThanOrEqual(1000);
});

test('replaying the whole stream (a new consumer) adds no rows, even for points without their own time', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  for (let i = 0; i < 20; i++) await world.publish(t, 'd1', jsonPayload({ points: [{ metric: 'temp', numberValue: i }, { metric: 'hum', numberValue: i }] }));
  await eventually(async () => (await world.rowCount(t)) === 40, '40 rows');
  // A third replica on a fresh durable consumer reads the stream from the start again: every message is redelivered.
  const replay = await world.startReplica({ WRITER_CONSUMER: 'replay-writer' });
  const jsm = await world.nc.jetstreamManager();
  const { state } = await jsm.streams.info('TELEMETRY');
  await eventually(async () => (await jsm.consumers.info('TELEMETRY', 'replay-writer')).ack_floor.stream_seq >= state.last_seq, 'the replay to finish');
  expect(replay.stats.ingest.pointsCommitted).toBeGreaterThanOrEqual(40);
  expect(await distinctRows(t)).toEqual({ total: 40, distinct: 40 });
  await world.stopReplica();
  await jsm.consumers.delete('TELEMETRY', 'replay-writer');
});

test('the writer holds the batch while the database is down, JetStream keeps the backlog, and it drains afterwards', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  await world.publish(t, 'd1', jsonPayload({ messageId: 'first', points: [{ metric: 'temp', numberValue: 0 }] }));
  await eventually(async () => (await world.rowCount(t)) === 1, 'the first row');
  const jsm = await world.nc.jetstreamManager();
  // Everything published so far is acknowledged: the ack floor stands at the stream's last message.
  const { state: before } = await jsm.streams.info('TELEMETRY');
  await eventually(async () => (await jsm.consumers.info('TELEMETRY', 'monitoring-writer')).ack_floor.stream_seq === before.last_seq, 'the first message acked');
  await world.pool.end();
  const failuresBefore = world.services.reduce((n, s) => n + s.stats.ingest.writeFailures, 0);

  await admin(async (c) => {
    await c.query(`ALTER DATABASE "${world.db.name}" ALLOW_CONNECTIONS false`);
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [world.db.name]);
  });
  try {
    for (let i = 0; i < 300; i++) await world.publish(t, 'd1', jsonPayload({ messageId: `during-${i}`, points: [{ metric: 'temp', numberValue: i }] }));
    // Wait for the writers to retry at least twice each side of the publishes, so a batch acked by mistake would show.
    await eventually(() => world.services.reduce((n, s) => n + s.stats.ingest.writeFailures, 0) >= failuresBefore + 4, 'failed write attempts');
    const info = await jsm.consumers.info('TELEMETRY', 'monitoring-writer');
    // Nothing was acknowledged while the database was down: the ack floor has not moved, and
    // every one of the 300 messages is still held (delivered and unacknowledged) or waiting.
    expect(info.ack_floor.stream_seq).toBe(before.last_seq);
    expect(info.num_ack_pending + info.num_pending).toBe(300);
  } finally {
    await admin((c) => c.query(`ALTER DATABASE "${world.db.name}" ALLOW_CONNECTIONS true`));
  }
  const { createPool, createLogger } = await import('@iot-mesh/runtime');
  world.pool = createPool(world.db.url, 'monitoring', createLogger('test', 'silent'));
  await eventually(async () => (await world.rowCount(t)) === 301, 'the backlog to drain', 30_000);
  expect(await distinctRows(t)).toEqual({ total: 301, distinct: 301 });
  // And now everything is acknowledged.
  await eventually(async () => (await jsm.consumers.info('TELEMETRY', 'monitoring-writer')).ack_floor.stream_seq === before.last_seq + 300, 'the backlog acked');
});

test('the writer carries on after the NATS server is killed and restarted, storing everything once', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  for (let i = 0; i < 100; i++) await world.publish(t, 'd1', jsonPayload({ messageId: `before-${i}`, points: [{ metric: 'temp', numberValue: i }] }));
  await world.nats.kill();
  await world.nats.restart();
  // Publishing waits for the client to reconnect.
  await eventually(async () => {
    await world.publish(t, 'd1', jsonPayload({ messageId: 'after-0', points: [{ metric: 'temp', numberValue: -1 }] }));
    return true;
  }, 'a publish after the restart');
  for (let i = 1; i < 100; i++) await world.publish(t, 'd1', jsonPayload({ messageId: `after-${i}`, points: [{ metric: 'temp', numberValue: -1 - i }] }));
  await eventually(async () => (await world.rowCount(t)) === 200, 'all 200 rows', 40_000);
  expect(await distinctRows(t)).toEqual({ total: 200, distinct: 200 });
});

test('the writers recreate their consumer when it is deleted under them', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const jsm = await world.nc.jetstreamManager();
  await jsm.consumers.delete('TELEMETRY', 'monitoring-writer');
  await eventually(async () => {
    await jsm.consumers.info('TELEMETRY', 'monitoring-writer');
    return true;
  }, 'the consumer to be recreated');
  // The recreated consumer starts from the beginning of the stream: nothing stored before is duplicated.
  for (let i = 0; i < 10; i++) await world.publish(t, 'd1', jsonPayload({ messageId: `m${i}`, points: [{ metric: 'temp', numberValue: i }] }));
  await eventually(async () => (await world.rowCount(t)) === 10, '10 rows');
  const { rows } = await world.pool.query(`SELECT count(*)::int AS n, count(DISTINCT (tenant_id, device_id, metric, time, message_id, point_index))::int AS d FROM points`);
  expect(rows[0].n).toBe(rows[0].d);
});
