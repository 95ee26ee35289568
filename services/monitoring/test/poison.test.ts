import fc from 'fast-check';
import mqtt from 'mqtt';
import { headers, JsMsg } from 'nats';
import { ALL_DEAD_LETTERS, deadLettersOf, deviceSubject } from '@iot-mesh/runtime';
import { DEAD_LETTER_HEADERS } from '../src/events/dead-letters';
import { eventually, jsonPayload, MonitoringWorld, newTenant, protobufPayload, startWorld } from './harness';

jest.setTimeout(60_000);

let world: MonitoringWorld;

beforeAll(async () => {
  world = await startWorld({ WRITER_BATCH_MAX: '50', WRITER_MAX_BACKOFF_MS: '300', DEAD_LETTER_PREFIX_BYTES: '1024', INGEST_MAX_PAYLOAD_BYTES: '8192' });
});
afterAll(async () => {
  await world?.close();
});

/** Every dead letter of a tenant stored in the DEAD_LETTERS stream, oldest first. */
async function storedDeadLetters(tenantId: string): Promise<JsMsg[]> {
  const jsm = await world.nc.jetstreamManager();
  const { state } = await jsm.streams.info('DEAD_LETTERS', { subjects_filter: deadLettersOf(tenantId) });
  const expected = Object.values(state.subjects ?? {}).reduce((a, b) => a + b, 0);
  if (expected === 0) return [];
  const consumer = await world.nc.jetstream().consumers.get('DEAD_LETTERS', { filterSubjects: deadLettersOf(tenantId) });
  const out: JsMsg[] = [];
  for await (const m of await consumer.fetch({ max_messages: expected, expires: 2000 })) {
    out.push(m);
    if (out.length === expected) break;
  }
  await consumer.delete().catch(() => undefined);
  return out;
}

/** The writer consumer's ack floor reached the stream's last message: everything published so far is done. */
async function allAcknowledged(): Promise<boolean> {
  const jsm = await world.nc.jetstreamManager();
  const { state } = await jsm.streams.info('TELEMETRY');
  const info = await jsm.consumers.info('TELEMETRY', 'monitoring-writer');
  return info.ack_floor.stream_seq === state.last_seq && info.num_ack_pending === 0;
}

test('an MQTT publish above max_payload (1.1 MB) stops nothing: the stream refuses it, later messages are stored', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const client = await mqtt.connectAsync(world.nats.mqttUrl, { protocolVersion: 4, clientId: `c${t}`, reconnectPeriod: 0 });
  try {
    const huge = Buffer.from('{' + ' '.repeat(1_100_000) + '}');
    await client.publishAsync(`iot/${t}/dev/d1/tel`, huge, { qos: 1 });
    await client.publishAsync(`iot/${t}/dev/d1/tel`, Buffer.from(jsonPayload({ messageId: 'after', points: [{ metric: 'temp', numberValue: 1 }] })), { qos: 1 });
  } finally {
    await client.endAsync();
  }
  await eventually(async () => (await world.rowCount(t)) === 1, 'the message after the huge one stored');
  const jsm = await world.nc.jetstreamManager();
  expect((await jsm.streams.info('TELEMETRY')).config.max_msg_size).toBe(1024 * 1024);
});

test('a 1.1 MB message already in the stream (stored before the limit) is dead-lettered with its headers and a bounded prefix', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const jsm = await world.nc.jetstreamManager();
  await world.stopReplica();
  await world.liftStreamSizeLimit();
  const client = await mqtt.connectAsync(world.nats.mqttUrl, { protocolVersion: 4, clientId: `c${t}`, reconnectPeriod: 0 });
  try {
    await client.publishAsync(`iot/${t}/dev/d1/tel`, Buffer.from('{' + ' '.repeat(1_100_000) + '}'), { qos: 1 });
  } finally {
    await client.endAsync();
  }
  await world.publish(t, 'd1', jsonPayload({ messageId: 'good', points: [{ metric: 'temp', numberValue: 1 }] }));
  const restarted = await world.startReplica();
  await eventually(async () => (await world.rowCount(t)) === 1, 'the good message stored after the restart');
  await eventually(allAcknowledged, 'everything acknowledged');
  const [dead] = await storedDeadLetters(t);
  expect(dead.subject).toBe(`iot.${t}.dlq.tel.d1`);
  expect(dead.headers?.get(DEAD_LETTER_HEADERS.reason)).toBe('oversize');
  expect(dead.headers?.get(DEAD_LETTER_HEADERS.size)).toBe('1100002');
  expect(dead.headers?.get(DEAD_LETTER_HEADERS.truncated)).toBe('true');
  expect(dead.headers?.get(DEAD_LETTER_HEADERS.subject)).toBe(deviceSubject(t, 'd1', 'tel'));
  // The MQTT listener's own header (the QoS of the publish) came along.
  expect(dead.headers?.get('Nmqtt-Pub')).toBeTruthy();
  expect(dead.data.byteLength).toBe(1024);
  expect(restarted.stats.ingest.deadLetters.oversize).toBe(1);
  // The next start puts the limit back.
  await world.stopReplica();
  await world.startReplica();
  expect((await jsm.streams.info('TELEMETRY')).config.max_msg_size).toBe(1024 * 1024);
});

test('what PostgreSQL cannot store (U+0000, control characters, a 4000-character id) is refused by the decoder, over NATS and MQTT, JSON and Protobuf', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const ok = (id: string) => jsonPayload({ messageId: id, points: [{ metric: 'temp', numberValue: 1 }] });
  const hostile: { reason: string; data: Uint8Array }[] = [
    { reason: 'invalid_text', data: jsonPayload({ messageId: 'nul-value', points: [{ metric: 'mode', stringValue: 'a\u0000b' }] }) },
    { reason: 'invalid_text', data: protobufPayload({ messageId: 'nul-value-pb', points: [{ metric: 'mode', stringValue: '\u0000' }] }) },
    { reason: 'invalid_text', data: jsonPayload({ messageId: 'bell\u0007', points: [{ metric: 'temp', numberValue: 1 }] }) },
    { reason: 'invalid_text', data: protobufPayload({ messageId: 'n\u0000l', points: [{ metric: 'temp', numberValue: 1 }] }) },
    { reason: 'id_too_long', data: jsonPayload({ messageId: 'x'.repeat(4000), points: [{ metric: 'temp', numberValue: 1 }] }) },
    { reason: 'id_too_long', data: protobufPayload({ messageId: 'y'.repeat(4000), points: [{ metric: 'temp', numberValue: 1 }] }) },
  ];
  await world.publish(t, 'd1', ok('v0'));
  for (const [i, h] of hostile.entries()) {
    await world.publish(t, 'd1', h.data);
    await world.publish(t, 'd1', ok(`v${i + 1}`));
  }
  const client = await mqtt.connectAsync(world.nats.mqttUrl, { protocolVersion: 4, clientId: `c${t}`, reconnectPeriod: 0 });
  try {
    for (const h of hostile) await client.publishAsync(`iot/${t}/dev/d1/tel`, Buffer.from(h.data), { qos: 1 });
    await client.publishAsync(`iot/${t}/dev/d1/tel`, Buffer.from(ok('mqtt-after')), { qos: 1 });
  } finally {
    await client.endAsync();
  }
  // Tabs and line breaks in a string value are fine.
  await world.publish(t, 'd1', jsonPayload({ messageId: 'layout', points: [{ metric: 'note', stringValue: 'a\tb\r\nc' }] }));
  await eventually(async () => (await world.rowCount(t)) === hostile.length + 3, 'every valid message stored');
  await eventually(allAcknowledged, 'everything acknowledged');
  const dead = await storedDeadLetters(t);
  expect(dead.map((m) => m.headers?.get(DEAD_LETTER_HEADERS.reason)).sort()).toEqual([...hostile, ...hostile].map((h) => h.reason).sort());
  const { rows } = await world.pool.query(`SELECT string_value FROM points WHERE tenant_id = $1 AND metric = 'note'`, [t]);
  expect(rows).toEqual([{ string_value: 'a\tb\r\nc' }]);
});

test('a message the database refuses is found by splitting the batch: the rest is stored, it is dead-lettered with its SQLSTATE, ingest goes on', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  // A constraint the decoder knows nothing about: PostgreSQL refuses these rows (23514) however often they are retried.
  await world.pool.query(`ALTER TABLE points ADD CONSTRAINT poison_check CHECK (metric <> 'poison') NOT VALID`);
  try {
    const publishes: Promise<void>[] = [];
    for (let i = 0; i < 120; i++) {
      const metric = i === 17 || i === 90 ? 'poison' : 'temp';
      publishes.push(world.publish(t, 'd1', protobufPayload({ messageId: `m${i}`, points: [{ metric, numberValue: i }] })));
    }
    await Promise.all(publishes);
    await eventually(async () => (await world.rowCount(t)) === 118, '118 rows');
    await eventually(allAcknowledged, 'everything acknowledged');
    const dead = await storedDeadLetters(t);
    expect(dead.map((m) => [m.headers?.get(DEAD_LETTER_HEADERS.reason), m.headers?.get(DEAD_LETTER_HEADERS.sqlstate), m.headers?.get(DEAD_LETTER_HEADERS.messageId)]).sort()).toEqual([
      ['store_rejected', '23514', 'm17'],
      ['store_rejected', '23514', 'm90'],
    ]);
  } finally {
    await world.pool.query(`ALTER TABLE points DROP CONSTRAINT poison_check`);
  }
  await world.publish(t, 'd1', jsonPayload({ messageId: 'later', points: [{ metric: 'temp', numberValue: -1 }] }));
  await eventually(async () => (await world.rowCount(t)) === 119, 'a later message stored');
});

test('the original is acknowledged only after its dead letter is stored', async () => {
  const t = newTenant();
  const jsm = await world.nc.jetstreamManager();
  const stats = world.services[0].stats.ingest;
  await jsm.streams.delete('DEAD_LETTERS');
  const failures = stats.deadLetterFailures;
  await world.publish(t, 'ghost', jsonPayload({ messageId: 'u1', points: [{ metric: 'temp', numberValue: 1 }] }));
  await eventually(() => stats.deadLetterFailures >= failures + 2, 'failed attempts to store the dead letter');
  const info = await jsm.consumers.info('TELEMETRY', 'monitoring-writer');
  expect(info.num_ack_pending).toBe(1);
  // A restart recreates the stream; the held message is dead-lettered and only then acknowledged.
  await world.stopReplica();
  await world.startReplica();
  await eventually(allAcknowledged, 'the message acknowledged');
  const dead = await storedDeadLetters(t);
  expect(dead.map((m) => [m.subject, m.headers?.get(DEAD_LETTER_HEADERS.reason)])).toEqual([[`iot.${t}.dlq.tel.ghost`, 'unknown_device']]);
  expect((await jsm.streams.info('DEAD_LETTERS')).config.subjects).toEqual([ALL_DEAD_LETTERS]);
});

test('a message a writer took and never acknowledged (it was killed) comes back after the short ack wait; on its last delivery it is dead-lettered, not retried', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const jsm = await world.nc.jetstreamManager();
  await world.stopReplica();
  expect((await jsm.consumers.info('TELEMETRY', 'monitoring-writer')).config.ack_wait).toBe(5000 * 1e6);
  const h = headers();
  h.set('Nats-Msg-Id', `${t}-once`);
  await world.nc.jetstream().publish(deviceSubject(t, 'd1', 'tel'), jsonPayload({ messageId: 'once', points: [{ metric: 'temp', numberValue: 1 }] }), { headers: h });
  // A "writer" that takes the message and dies without acking: its delivery counts.
  const consumer = await world.nc.jetstream().consumers.get('TELEMETRY', 'monitoring-writer');
  const taken = await consumer.next({ expires: 5000 });
  expect(taken?.info.redeliveryCount).toBe(1);
  const restarted = await world.startReplica({ WRITER_MAX_DELIVER: '2' });
  try {
    await eventually(allAcknowledged, 'the message redelivered and acknowledged');
    const dead = await storedDeadLetters(t);
    expect(dead.map((m) => [m.headers?.get(DEAD_LETTER_HEADERS.reason), m.headers?.get('Iot-Original-Nats-Msg-Id')])).toEqual([['max_deliver', `${t}-once`]]);
    expect(await world.rowCount(t)).toBe(0);
    expect(restarted.stats.ingest.deadLetters.max_deliver).toBe(1);
  } finally {
    await world.stopReplica();
    await world.startReplica();
  }
});

/** One generated message: what it is, and the bytes published. */
type Generated =
  | { kind: 'valid'; points: { metric: string; value: number | boolean | string }[]; encoding: 'json' | 'protobuf' }
  | { kind: 'duplicate' }
  | { kind: 'nul'; before: string; after: string }
  | { kind: 'long_id'; length: number }
  | { kind: 'oversize' }
  | { kind: 'wrong_type'; shape: number }
  | { kind: 'bad_json'; text: string };

const WRONG_TYPES = [
  { points: [{ metric: 'temp', numberValue: {} }] },
  { points: [{ metric: 'temp', numberValue: [1] }] },
  { points: [{ metric: 5, numberValue: 1 }] },
  { points: 'temp=1' },
  { messageId: 7, points: [{ metric: 'temp', numberValue: 1 }] },
  { points: [{ metric: 'temp', boolValue: 'yes' }] },
  [{ metric: 'temp', numberValue: 1 }],
];

const generated: fc.Arbitrary<Generated> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('valid' as const),
      points: fc.array(
        fc.record({
          metric: fc.constantFrom('temp', 'hum', 'mode'),
          value: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.string({ maxLength: 20 }).map((x) => x.replace(/[\u0000-\u001f\u007f-\u009f]/g, ''))),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      encoding: fc.constantFrom('json' as const, 'protobuf' as const),
    }),
  },
  fc.constant({ kind: 'duplicate' as const }),
  fc.record({ kind: fc.constant('nul' as const), before: fc.string({ maxLength: 10 }), after: fc.string({ maxLength: 10 }) }),
  fc.record({ kind: fc.constant('long_id' as const), length: fc.integer({ min: 129, max: 5000 }) }),
  fc.constant({ kind: 'oversize' as const }),
  fc.record({ kind: fc.constant('wrong_type' as const), shape: fc.nat({ max: WRONG_TYPES.length - 1 }) }),
  fc.record({ kind: fc.constant('bad_json' as const), text: fc.string({ maxLength: 40 }) }),
);

test('property: any mix of valid and hostile messages ends stored or dead-lettered, each exactly once', async () => {
  const js = world.nc.jetstream();
  let run = 0;
  const seen = { valid: 0, duplicate: 0, hostile: 0 };
  await fc.assert(
    // Every batch holds at least one valid message, a replay of one and a hostile one, wherever the generator's mix lands.
    fc.asyncProperty(fc.array(generated, { maxLength: 40 }).map((mix): Generated[] => [{ kind: 'valid', points: [{ metric: 'temp', value: 1 }], encoding: 'json' }, ...mix, { kind: 'duplicate' }, { kind: 'bad_json', text: '' }]), async (batch) => {
      const t = `${newTenant()}r${run++}`;
      await world.registerDevice(t, 'd1');
      const valid = new Map<string, number>(); // message id → points stored
      const hostile = new Set<string>();
      let last: Uint8Array | undefined;
      const sends: Promise<unknown>[] = [];
      for (const [i, g] of batch.entries()) {
        const id = `m${i}`;
        let data: Uint8Array;
        if (g.kind === 'duplicate' && last) {
          data = last; // the same payload again, as a device's replay would send it: stored once
          seen.duplicate++;
        } else if (g.kind === 'valid' || g.kind === 'duplicate') {
          const points = g.kind === 'valid' ? g.points : [{ metric: 'temp', value: 1 }];
          const encoding = g.kind === 'valid' ? g.encoding : 'json';
          // Points carry their own time: a point without one is stored again with the new receive time when a device replays it.
          const time = new Date(Date.now() - 1000);
          const values = points.map((p) => ({ metric: p.metric, ...(typeof p.value === 'number' ? { numberValue: p.value } : typeof p.value === 'boolean' ? { boolValue: p.value } : { stringValue: p.value }) }));
          data =
            encoding === 'json'
              ? jsonPayload({ messageId: id, points: values.map((v) => ({ ...v, time: time.toISOString() })) })
              : protobufPayload({ messageId: id, points: values.map((v) => ({ ...v, time })) });
          valid.set(id, points.length);
          last = data;
          seen.valid++;
        } else {
          hostile.add(id);
          seen.hostile++;
          data =
            g.kind === 'nul'
              ? jsonPayload({ messageId: id, points: [{ metric: 'mode', stringValue: `${g.before}\u0000${g.after}` }] })
              : g.kind === 'long_id'
                ? protobufPayload({ messageId: 'i'.repeat(g.length), points: [{ metric: 'temp', numberValue: 1 }] })
                : g.kind === 'oversize'
                  ? jsonPayload({ messageId: id, points: [{ metric: 'mode', stringValue: 'x'.repeat(9000) }] })
                  : g.kind === 'wrong_type'
                    ? jsonPayload(WRONG_TYPES[g.shape])
                    : Buffer.from(`{${g.text}`);
        }
        const h = headers();
        h.set('Nats-Msg-Id', `${t}-${i}`);
        sends.push(js.publish(deviceSubject(t, 'd1', 'tel'), data, { headers: h }));
      }
      await Promise.all(sends);
      await eventually(allAcknowledged, 'every message acknowledged');

      const { rows } = await world.pool.query(`SELECT message_id, count(*)::int AS n FROM points WHERE tenant_id = $1 GROUP BY message_id`, [t]);
      const stored = new Map<string, number>(rows.map((r: { message_id: string; n: number }) => [r.message_id, r.n]));
      const deadIds = (await storedDeadLetters(t)).map((m) => m.headers?.get('Iot-Original-Nats-Msg-Id'));
      // Stored: each valid message with all of its points, once; nothing else.
      expect(stored).toEqual(valid);
      // Dead-lettered: each hostile message once, and nothing valid. With the above: stored ∪ dead-lettered = published (replays stored once).
      expect(deadIds.map((d) => `m${d!.slice(t.length + 1)}`).sort()).toEqual([...hostile].sort());
    }),
    { numRuns: 8, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31), endOnFailure: true },
  );
  expect(Math.min(seen.valid, seen.duplicate, seen.hostile)).toBeGreaterThan(0);
});
