import { metrics } from '@iot-mesh/runtime';
import { eventually, jsonPayload, MonitoringWorld, newTenant, startWorld } from './harness';

jest.setTimeout(90_000);

/** The writer's bounds in this test: far below what is published while the database is blocked. */
const MAX_HELD_BYTES = 16 * 1024;
const BATCH_MAX_POINTS = 100;
const BATCHES_IN_FLIGHT = 3;
const DEVICES = 10;
const MESSAGES_PER_DEVICE = 300;
const POINTS_PER_MESSAGE = 20;

let world: MonitoringWorld;

beforeAll(async () => {
  world = await startWorld({
    WRITER_BATCH_MAX: '50',
    WRITER_BATCH_MAX_POINTS: String(BATCH_MAX_POINTS),
    WRITER_BATCH_MAX_BYTES: '4096',
    WRITER_MAX_HELD_BYTES: String(MAX_HELD_BYTES),
    WRITER_BATCHES_IN_FLIGHT: String(BATCHES_IN_FLIGHT),
    TELEMETRY_STREAM_MAX_MSG_SIZE: '8192',
    INGEST_MAX_PAYLOAD_BYTES: '8192',
    WRITER_MAX_BACKOFF_MS: '300',
  });
});
afterAll(async () => {
  await world?.close();
});

function message(device: number, i: number): Uint8Array {
  return jsonPayload({ messageId: `d${device}-m${i}`, points: Array.from({ length: POINTS_PER_MESSAGE }, (_, p) => ({ metric: `m${p}`, numberValue: i * 100 + p })) });
}

async function gauge(name: string): Promise<number> {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  return metric?.values[0]?.value ?? NaN;
}

test('while the database is blocked the writer holds no more than its byte bound, the stream keeps the rest, and every point is stored once afterwards', async () => {
  const t = newTenant();
  for (let d = 0; d < DEVICES; d++) await world.registerDevice(t, `d${d}`);
  const { stats } = world.services[0];
  const ingest = stats.ingest;
  const messageBytes = message(0, 0).length;
  const total = DEVICES * MESSAGES_PER_DEVICE;
  // ~20x the held bound in payload bytes.
  expect(total * messageBytes).toBeGreaterThan(20 * MAX_HELD_BYTES);

  // An exclusive lock on the points table: every write waits on it (or times out and is retried).
  const blocker = await world.pool.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE points IN ACCESS EXCLUSIVE MODE');
    for (let i = 0; i < MESSAGES_PER_DEVICE; i++) {
      await Promise.all(Array.from({ length: DEVICES }, (_, d) => world.publish(t, `d${d}`, message(d, i))));
    }
    // The writer fills up to its bound and stops taking from the pull.
    await eventually(() => ingest.heldBytes > MAX_HELD_BYTES - 2 * messageBytes, 'the writer to hold about its bound');
    const jsm = await world.nc.jetstreamManager();
    const info = await jsm.consumers.info('TELEMETRY', 'monitoring-writer');
    // The server kept the backlog: delivered-and-unacked is what the writer holds plus one pull (nats.js asks for ≤ 100 messages by bytes).
    expect(info.num_ack_pending).toBeLessThanOrEqual(Math.floor(MAX_HELD_BYTES / messageBytes) + 100 + 1);
    expect(info.num_pending).toBeGreaterThan(total / 2);
    expect(await gauge('iot_writer_held_bytes')).toBeLessThanOrEqual(MAX_HELD_BYTES);
    expect(await gauge('iot_writer_held_bytes')).toBeGreaterThan(0);
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    blocker.release();
  }

  await eventually(async () => (await world.rowCount(t)) === total * POINTS_PER_MESSAGE, 'every point stored', 60_000);
  const { rows } = await world.pool.query(
    `SELECT count(*)::int AS total, count(DISTINCT (device_id, message_id, point_index))::int AS distinct FROM points WHERE tenant_id = $1`,
    [t],
  );
  expect(rows[0]).toEqual({ total: total * POINTS_PER_MESSAGE, distinct: total * POINTS_PER_MESSAGE });
  // Never above the bounds, at any moment of the run: the peaks are taken at every change.
  expect(ingest.heldBytesPeak).toBeLessThanOrEqual(MAX_HELD_BYTES);
  // A transaction holds at most BATCH_MAX_POINTS; each batch in flight may hold the next message decoded besides.
  expect(ingest.heldPointsPeak).toBeLessThanOrEqual(BATCHES_IN_FLIGHT * (BATCH_MAX_POINTS + POINTS_PER_MESSAGE));
  expect(ingest.lastBatchPoints).toBeLessThanOrEqual(BATCH_MAX_POINTS);
  // Everything is acknowledged and given back.
  await eventually(() => ingest.heldBytes === 0 && ingest.heldPoints === 0, 'nothing held after the drain');
  expect(await gauge('iot_writer_held_bytes')).toBe(0);
});

test('a message larger than one pull (stored before the size limit) does not stop the writer: it is taken alone and dead-lettered', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const jsm = await world.nc.jetstreamManager();
  await world.stopReplica();
  // As the stream was before its message size limit (8 KiB here; a pull asks for 8 KiB + 64 KiB): a 200 kB message in it.
  await world.liftStreamSizeLimit();
  await world.publish(t, 'd1', Buffer.from('{' + ' '.repeat(200_000) + '}'));
  await world.publish(t, 'd1', jsonPayload({ messageId: 'after-the-big-one', points: [{ metric: 'temp', numberValue: 1 }] }));
  const restarted = await world.startReplica();
  await eventually(async () => (await world.rowCount(t)) === 1, 'the message behind it stored', 30_000);
  expect(restarted.stats.ingest.deadLetters.oversize).toBe(1);
  expect((await jsm.streams.info('TELEMETRY')).config.max_msg_size).toBe(8192);
});
