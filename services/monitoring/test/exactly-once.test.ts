/**
 * Exactly once for every way a message can come twice (issue 12 item 4):
 * an MQTT QoS 1 retransmission of the same packet, a device's replay of a
 * message after reconnecting, a JetStream redelivery after the ack wait, and a
 * writer killed between its commit and its acks. A point is identified by its
 * message id and its index in the message — also a point without its own
 * time, which takes the time its message was first received (README
 * "Delivery guarantees").
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { startService } from '../../../bench/src/processes';
import { eventually, jsonPayload, MonitoringWorld, newTenant, protobufPayload, startWorld } from './harness';

jest.setTimeout(90_000);

const ACK_WAIT_MS = 1000;
const STREAM = 'TELEMETRY';
const DURABLE = 'monitoring-writer';

let world: MonitoringWorld;

beforeAll(async () => {
  // No replica yet: each test starts the writers it needs (directly or behind a proxy).
  world = await startWorld({ WRITER_ACK_WAIT_MS: String(ACK_WAIT_MS), WRITER_BATCH_MAX: '50' }, { replicas: 0 });
});
afterAll(async () => {
  await world?.close();
});

/** A direct replica, started once for the tests that need only one writer. */
async function directWriter(): Promise<void> {
  if (world.services.length === 0) await world.startReplica();
}

/** Resolves once the writers' consumer has acknowledged everything in the stream. */
async function settled(): Promise<void> {
  const jsm = await world.nc.jetstreamManager();
  await eventually(async () => {
    const { state } = await jsm.streams.info(STREAM);
    const c = await jsm.consumers.info(STREAM, DURABLE);
    return c.ack_floor.stream_seq >= state.last_seq && c.num_ack_pending === 0 && c.num_pending === 0;
  }, 'the writers to acknowledge the whole stream', 60_000);
}

/** Rows of a tenant and distinct (device, message id, point index) among them. */
async function identities(tenantId: string): Promise<{ rows: number; points: number }> {
  const { rows } = await world.pool.query(`SELECT count(*)::int AS rows, count(DISTINCT (device_id, message_id, point_index))::int AS points FROM points WHERE tenant_id = $1`, [tenantId]);
  return rows[0];
}

/** Messages the stream holds on a device's telemetry subject. */
async function streamed(tenantId: string, deviceId: string): Promise<number> {
  const jsm = await world.nc.jetstreamManager();
  const subject = `iot.${tenantId}.dev.${deviceId}.tel`;
  const info = await jsm.streams.info(STREAM, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

/** A message with one point without its own time and one with it. */
function mixedMessage(messageId: string | undefined, n: number): Record<string, unknown> {
  return { ...(messageId === undefined ? {} : { messageId }), points: [{ metric: 'untimed', numberValue: n }, { metric: 'timed', time: new Date(Date.now() - 60_000).toISOString(), numberValue: n }] };
}

// ---- a raw MQTT 3.1.1 client: the same PUBLISH packet, byte for byte, sent again with DUP set ----

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function mqttString(s: string): Buffer {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

function connectPacket(clientId: string): Buffer {
  const body = Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 30]), mqttString(clientId)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

function publishPacket(topic: string, packetId: number, payload: Buffer, dup: boolean): Buffer {
  const body = Buffer.concat([mqttString(topic), Buffer.from([packetId >> 8, packetId & 0xff]), payload]);
  return Buffer.concat([Buffer.from([0x32 | (dup ? 0x08 : 0)]), remainingLength(body.length), body]);
}

/** Connects a raw MQTT client; `pubacks` counts the PUBACKs received per packet id. */
async function rawMqtt(clientId: string): Promise<{ socket: net.Socket; pubacks: Map<number, number> }> {
  const socket = net.connect(world.nats.mqttPort!, '127.0.0.1');
  const pubacks = new Map<number, number>();
  let buffered = Buffer.alloc(0);
  let connacked = false;
  socket.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 2 && buffered.length >= 2 + buffered[1]) {
      const type = buffered[0] >> 4;
      if (type === 2) connacked = buffered[3] === 0;
      if (type === 4) {
        const id = buffered.readUInt16BE(2);
        pubacks.set(id, (pubacks.get(id) ?? 0) + 1);
      }
      buffered = buffered.subarray(2 + buffered[1]);
    }
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(connectPacket(clientId));
  await eventually(() => connacked, 'CONNACK');
  return { socket, pubacks };
}

test('an MQTT QoS 1 retransmission of the same packet (DUP) is stored once, points without a time included', async () => {
  await directWriter();
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const { socket, pubacks } = await rawMqtt(`raw-${t}`);
  try {
    const topic = `iot/${t}/dev/d1/tel`;
    const messages = [mixedMessage('dup-json', 1), mixedMessage(undefined, 2)].map((m) => Buffer.from(jsonPayload(m)));
    messages.push(Buffer.from(protobufPayload({ messageId: 'dup-proto', points: [{ metric: 'untimed', numberValue: 3 }, { metric: 'untimed2', numberValue: 4 }] })));
    for (const [i, payload] of messages.entries()) {
      socket.write(publishPacket(topic, i + 1, payload, false));
      // The retransmission a client makes when it saw no PUBACK: the same packet id and bytes, DUP set.
      await sleep(20);
      socket.write(publishPacket(topic, i + 1, payload, true));
    }
    await eventually(() => messages.every((_m, i) => (pubacks.get(i + 1) ?? 0) >= 2), 'a PUBACK for every publish');
  } finally {
    socket.destroy();
  }
  await settled();
  // Both copies reached the stream as messages of their own (nats-server does not deduplicate QoS 1) ...
  expect(await streamed(t, 'd1')).toBe(6);
  // ... and every point is stored once.
  expect(await identities(t)).toEqual({ rows: 6, points: 6 });
});

test("a device's replay after reconnecting (same messageId, a new connection, seconds later) is stored once, over MQTT and NATS", async () => {
  await directWriter();
  const t = newTenant();
  await world.registerDevice(t, 'mq');
  await world.registerDevice(t, 'nt');
  // The device keeps what it sent and sends the same bytes again.
  const mqttMessages = Array.from({ length: 5 }, (_, i) => Buffer.from(jsonPayload(mixedMessage(`mq-${i}`, i))));
  const natsMessages = Array.from({ length: 5 }, (_, i) =>
    protobufPayload({ messageId: `nt-${i}`, points: [{ metric: 'untimed', numberValue: i }, { metric: 'timed', time: new Date(Date.now() - 60_000 - i), numberValue: i }] }),
  );
  const send = async () => {
    const client = await mqtt.connectAsync(world.nats.mqttUrl, { protocolVersion: 4, clientId: `replay-${t}`, clean: true, reconnectPeriod: 0 });
    try {
      for (const payload of mqttMessages) await client.publishAsync(`iot/${t}/dev/mq/tel`, payload, { qos: 1 });
    } finally {
      await client.endAsync();
    }
    // NATS without a Nats-Msg-Id header: the stream keeps both copies, the store must not.
    for (const payload of natsMessages) await world.publish(t, 'nt', payload);
  };
  await send();
  await settled();
  expect(await identities(t)).toEqual({ rows: 20, points: 20 });
  const { rows: first } = await world.pool.query(`SELECT device_id, message_id, point_index, time FROM points WHERE tenant_id = $1 AND metric = 'untimed' ORDER BY 1, 2, 3`, [t]);
  await sleep(1100);
  await send();
  await settled();
  expect(await streamed(t, 'mq')).toBe(10);
  expect(await streamed(t, 'nt')).toBe(10);
  expect(await identities(t)).toEqual({ rows: 20, points: 20 });
  // A point without its own time keeps the time its message was first received.
  const { rows: after } = await world.pool.query(`SELECT device_id, message_id, point_index, time FROM points WHERE tenant_id = $1 AND metric = 'untimed' ORDER BY 1, 2, 3`, [t]);
  expect(after).toEqual(first);
});

// ---- a TCP proxy between a writer and nats-server that can hold what the writer sends ----

/** Forwards to nats-server; while held, the writer's bytes (acks, in-progress marks, pulls) wait in the proxy. */
class HoldingProxy {
  private held = false;
  private armed = false;
  private readonly waiting: Array<() => void> = [];
  private readonly sockets = new Set<net.Socket>();
  private constructor(private readonly server: net.Server) {}

  static async start(target: number): Promise<HoldingProxy> {
    const server = net.createServer();
    const proxy = new HoldingProxy(server);
    server.on('connection', (client) => {
      const upstream = net.connect(target, '127.0.0.1');
      proxy.sockets.add(client).add(upstream);
      upstream.on('data', (d) => client.write(d));
      client.on('data', (d) => {
        if (proxy.held) return void proxy.waiting.push(() => upstream.write(d));
        upstream.write(d);
        // Armed: hold from just after a pull request went out, so the server has a fresh pull (5 s, a batch) to deliver on.
        if (proxy.armed && d.includes('CONSUMER.MSG.NEXT')) proxy.held = true;
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `nats://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /** Holds everything the writer sends after its next pull request; resolves once holding. */
  async holdAfterNextPull(): Promise<void> {
    this.armed = true;
    await eventually(() => this.held, 'the writer to pull again');
    this.armed = false;
  }

  /** Sends what was held, in order, and forwards again. */
  release(): void {
    this.held = false;
    this.armed = false;
    for (const send of this.waiting.splice(0)) send();
  }

  /** Cuts every connection; what was held is never sent. */
  async close(): Promise<void> {
    this.waiting.length = 0;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

test('a JetStream redelivery after the ack wait (the writer committed, its acks were late) is stored once', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  // The other writers stopped, so the redelivery comes back to the one behind the proxy.
  for (const s of world.services.splice(0)) await s.service.stop();
  const proxy = await HoldingProxy.start(world.nats.port);
  const jsm = await world.nc.jetstreamManager();
  const replica = await world.startReplica({ NATS_URL: proxy.url });
  try {
    await settled();
    const before = await jsm.consumers.info(STREAM, DURABLE);
    const received = replica.stats.ingest.messagesReceived;
    // From the writer's next pull on, what it sends (acks, in-progress marks) waits in the proxy.
    await proxy.holdAfterNextPull();
    for (let i = 0; i < 5; i++) await world.publish(t, 'd1', jsonPayload(mixedMessage(`m${i}`, i)));
    await eventually(async () => (await identities(t)).rows === 10, 'the first delivery committed');
    // The server heard no ack within the ack wait: it delivers the messages again, to the same writer.
    await eventually(async () => (await jsm.consumers.info(STREAM, DURABLE)).num_redelivered > before.num_redelivered, 'a redelivery', 30_000);
    await eventually(() => replica.stats.ingest.messagesReceived - received >= 10, 'the redelivered messages processed');
    proxy.release();
    await settled();
    expect(await identities(t)).toEqual({ rows: 10, points: 10 });
  } finally {
    proxy.release();
    await replica.service.stop();
    world.services.splice(world.services.indexOf(replica), 1);
    await proxy.close();
  }
});

test('a writer killed (SIGKILL) between its commit and its acks: the next writer gets the messages again and stores nothing twice', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  // Every other writer stopped, so the child is the one that takes the messages.
  for (const s of world.services.splice(0)) await s.service.stop();
  const proxy = await HoldingProxy.start(world.nats.port);
  const child = await startService('monitoring', { ...world.env, NATS_URL: proxy.url });
  const jsm = await world.nc.jetstreamManager();
  try {
    await settled();
    await proxy.holdAfterNextPull();
    for (let i = 0; i < 5; i++) await world.publish(t, 'd1', jsonPayload(mixedMessage(`k${i}`, i)));
    await eventually(async () => (await identities(t)).rows === 10, 'the child writer committed');
    // Committed, acks not yet at the server: kill -9 now.
    child.process.kill();
    await child.process.exited();
    await proxy.close();
    const next = await world.startReplica();
    await settled();
    // The next writer was handed the killed writer's messages again.
    expect(next.stats.ingest.messagesReceived).toBeGreaterThanOrEqual(5);
    expect(await identities(t)).toEqual({ rows: 10, points: 10 });
  } finally {
    if (child.process.running) await child.process.stop(5000);
    await proxy.close().catch(() => undefined);
  }
});
