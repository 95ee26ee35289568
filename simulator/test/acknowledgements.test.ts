import { connect, NatsConnection } from 'nats';
import { TestNatsServer } from '../../testing/nats-server';
import { waitUntil } from '../../scripts/up-wait';
import { createLink, DeviceLink, Transport } from '../src/links';

jest.setTimeout(90_000);

/**
 * The simulator counts only what was really acknowledged: across a real
 * nats-server restart, NATS messages whose connection went away are "sent,
 * unacknowledged", and every message counted as acknowledged did arrive.
 */
let server: TestNatsServer;

beforeAll(async () => {
  server = await TestNatsServer.start({ jetstream: true, mqtt: true });
});
afterAll(async () => {
  await server?.stop();
});

/** A link with its acknowledgement counters. */
function countingLink(transport: Transport, clientId: string) {
  const counts = { acked: 0, unacknowledged: 0, connects: 0 };
  const link = createLink({
    transport,
    url: transport === 'nats' ? server.url : server.mqttUrl,
    clientId,
    qos: 1,
    reconnectMs: 100,
    events: {
      onAck: (n) => (counts.acked += n),
      onUnacknowledged: (n) => (counts.unacknowledged += n),
      onConnect: () => counts.connects++,
    },
  });
  return { link, counts };
}

/** Subscribes on its own connection and records every message id that arrives. */
async function receiver(subject: string): Promise<{ nc: NatsConnection; ids: Set<string> }> {
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const ids = new Set<string>();
  nc.subscribe(subject, { callback: (_err, msg) => ids.add(Buffer.from(msg.data).toString()) });
  await nc.flush();
  return { nc, ids };
}

async function publishBatch(link: DeviceLink, subject: string, prefix: string, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
  for (const id of ids) await link.publish(subject, Buffer.from(id), { msgId: id });
  return ids;
}

const until = (what: string, probe: () => boolean) => waitUntil(what, async () => probe(), { timeoutMs: 30_000, intervalMs: 20 });

describe('acknowledgements across a nats-server restart', () => {
  it('over NATS: a flush before the restart or publishes while it is down are not acknowledged; what is acknowledged arrived', async () => {
    const subject = 'iot.t-ack.dev.nats-1.tel';
    const rx = await receiver(subject);
    const { link, counts } = countingLink('nats', 'nats-1');
    await link.connect();
    try {
      const before = await publishBatch(link, subject, 'before', 100);
      await until('the server read the first batch', () => before.every((id) => rx.ids.has(id)));
      const rxInfo = rx.nc.info;

      await server.kill();
      const down = await publishBatch(link, subject, 'down', 20);
      await server.restart();
      await until('link reconnected', () => counts.connects >= 2);
      // The receiver must be subscribed again before the last batch.
      await until('receiver reconnected', () => rx.nc.info !== undefined && rx.nc.info !== rxInfo);
      await rx.nc.flush();

      const after = await publishBatch(link, subject, 'after', 100);
      await link.close();
      await until('receiver has the last batch', () => after.every((id) => rx.ids.has(id)));

      expect(counts.connects).toBe(2);
      expect(counts.acked + counts.unacknowledged).toBe(before.length + down.length + after.length);
      // What was published while down is unacknowledged, and so is the last batch the server read before the
      // kill (its flush returned, but the connection did not stay up for the next round trip).
      expect(counts.unacknowledged).toBeGreaterThan(down.length);
      // The last batch settles on close, on the connection it went out on.
      expect(counts.acked).toBeGreaterThanOrEqual(after.length);
      const arrived = [...before, ...after].filter((id) => rx.ids.has(id)).length;
      expect(counts.acked).toBeLessThanOrEqual(arrived);
    } finally {
      await link.close();
      await rx.nc.close();
    }
  });

  it('over MQTT QoS 1: only PUBACKed messages count, and none is lost across the restart', async () => {
    const subject = 'iot.t-ack.dev.mqtt-1.tel';
    const rx = await receiver(subject);
    const { link, counts } = countingLink('mqtt', 'mqtt-1');
    await link.connect();
    try {
      const before = await publishBatch(link, subject, 'before', 50);
      await until('PUBACKs of the first batch', () => counts.acked === before.length);
      const rxInfo = rx.nc.info;
      await server.kill();
      await server.restart();
      await until('receiver reconnected', () => rx.nc.info !== undefined && rx.nc.info !== rxInfo);
      await rx.nc.flush();
      const after = await publishBatch(link, subject, 'after', 50);
      await until('PUBACKs of the last batch', () => counts.acked === before.length + after.length);
      expect(counts.unacknowledged).toBe(0);
      await until('receiver has every acknowledged message after the restart', () => after.every((id) => rx.ids.has(id)));
    } finally {
      await link.close();
      await rx.nc.close();
    }
  });
});
