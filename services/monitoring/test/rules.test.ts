import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { status } from '@grpc/grpc-js';
import { propagation } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { headers as natsHeaders } from 'nats';
import {
  DeliveryState,
  Notification,
  NotificationChannelServiceClient,
  Rule,
  RuleServiceClient,
} from '../../../gen/ts/iot/monitoring/v1/rules';
import { StreamLiveResponse, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { Telemetry } from '../../../gen/ts/iot/telemetry/v1/telemetry';
import { deviceSubject, eventSubject, metrics, serverStream, unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { eventually, MonitoringWorld, protobufPayload, SignedWorld, startSignedWorld } from './harness';
import { ReceivedMail, startSmtpServer, verifySignature } from './receivers';

jest.setTimeout(60_000);
// W3C trace context, as the service's tracing entry installs it: the trace of a device message must reach its webhook calls.
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

let signed: SignedWorld;
let world: MonitoringWorld;
let closeSmtp: (() => Promise<void>) | undefined;
let smtpPort: number;
let mails: ReceivedMail[];
let a: TestTenant;
let rules: RuleServiceClient;
let channels: NotificationChannelServiceClient;
let telemetry: TelemetryServiceClient;
let operator: { authorization: string };
let viewer: { authorization: string };

beforeAll(async () => {
  // A real SMTP server in-process: nodemailer talks SMTP to it.
  ({ port: smtpPort, mails, close: closeSmtp } = await startSmtpServer());

  ({ world, a } = signed = await startSignedWorld({
    RULES_ACTION_INITIAL_BACKOFF_MS: '50',
    RULES_ACTION_MAX_BACKOFF_MS: '200',
    RULES_ACTION_MAX_ATTEMPTS: '6',
    RULES_STATS_FLUSH_MS: '100',
    RULES_WEBHOOK_TIMEOUT_MS: '2000',
    RULES_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
  }));
  operator = { authorization: a.operator.authorization };
  viewer = { authorization: a.viewer.authorization };
  rules = signed.client(RuleServiceClient);
  channels = signed.client(NotificationChannelServiceClient);
  telemetry = signed.client(TelemetryServiceClient);
  await world.registerDevice(a.tenantId, 'd1', { labels: { site: 'north' } });
  await world.registerDevice(a.tenantId, 'd2', { labels: { site: 'south' } });
});
afterAll(async () => {
  await signed?.close();
  await closeSmtp?.();
});

const rulesIdle = () => world.services[0].stats.rulesIdle();

function rule(partial: Partial<Rule>): Rule {
  return { id: '', tenantId: '', name: 'r', source: { groupIds: [], deviceTypes: [], deviceIds: [], labels: {}, metrics: [] }, condition: 'true', actions: [], enabled: true, ...partial };
}

/** A free local port with nothing listening on it (connections are refused). */
async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('only operators write rules; a rule deriving a metric it listens to is refused before it can loop', async () => {
  const derive = rule({ name: 'loop', source: { groupIds: [], deviceTypes: [], deviceIds: [], labels: {}, metrics: ['temp'] }, actions: [{ derivedMetric: { metric: 'temp', expression: 'm.temp + 1.0' } }] });
  await expect(unary(rules, rules.createRule, { rule: { ...derive, actions: [{ republish: { topic: 'x' } }] } }, viewer)).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
  await expect(unary(rules, rules.createRule, { rule: derive }, operator)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/would loop: temp is one of the rule's own source metrics/) });
  // Listening to every metric includes the derived one.
  const everyMetric = { ...derive, source: { ...derive.source!, metrics: [] }, actions: [{ derivedMetric: { metric: 'temp2', expression: '1.0' } }] };
  await expect(unary(rules, rules.createRule, { rule: everyMetric }, operator)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/would loop: the rule listens to every metric/) });
  await expect(unary(rules, rules.createRule, { rule: { ...derive, condition: 'm.temp >' } }, operator)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/rule.condition: is not CEL/) });
});

test('rules are the tenant’s own; an update replaces the definition and keeps the webhook secret', async () => {
  const created = await unary(rules, rules.createRule, { rule: rule({ name: 'mine', actions: [{ webhook: { url: 'http://127.0.0.1:9/x', secret: '' } }] }) }, operator);
  const secret = created.rule!.actions[0].webhook!.secret;
  await expect(unary(rules, rules.createRule, { rule: rule({ name: 'mine', actions: [{ republish: { topic: 'x' } }] }) }, operator)).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
  const other = await signed.signing.createTenant();
  await expect(unary(rules, rules.getRule, { id: created.rule!.id }, { authorization: other.viewer.authorization })).rejects.toMatchObject({ code: status.NOT_FOUND });
  expect((await unary(rules, rules.listRules, {}, { authorization: other.viewer.authorization })).rules).toEqual([]);

  const updated = await unary(rules, rules.updateRule, { rule: { ...created.rule!, condition: 'depth == 0', enabled: false, actions: [{ webhook: { url: 'http://127.0.0.1:9/y', secret: '' } }] } }, operator);
  expect(updated.rule).toMatchObject({ condition: 'depth == 0', enabled: false, actions: [{ webhook: { url: 'http://127.0.0.1:9/y', secret } }] });
  await expect(unary(rules, rules.updateRule, { rule: { ...updated.rule!, condition: '(' } }, operator)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  await unary(rules, rules.deleteRule, { id: created.rule!.id }, operator);
  await expect(unary(rules, rules.getRule, { id: created.rule!.id }, viewer)).rejects.toMatchObject({ code: status.NOT_FOUND });
});

test('CEL conditions select exactly the messages the test computes, live and in a dry run', async () => {
  const created = await unary(
    rules,
    rules.createRule,
    {
      rule: rule({
        name: 'cel-check',
        source: { groupIds: [], deviceTypes: ['sensor'], deviceIds: [], labels: {}, metrics: ['temp'] },
        condition: '(m.temp * 1.8 + 32.0 > 80.0 && m.hum < 50.0) || (device.labels.site == "south" && m.temp < 0.0)',
        actions: [{ republish: { topic: 'cel' } }],
      }),
    },
    operator,
  );
  const republished = new Set<string>();
  const sub = world.nc.subscribe(eventSubject(a.tenantId, 'rule', 'cel'), { callback: (_e, msg) => republished.add(Telemetry.decode(msg.data).messageId) });
  await world.nc.flush();

  const base = Date.now() - 60_000;
  const expected = new Set<string>();
  let errors = 0;
  for (let i = 0; i < 40; i++) {
    const device = i % 2 === 0 ? 'd1' : 'd2';
    const temp = ((i * 37) % 61) - 20; // -20 … 40
    const hum = (i * 13) % 90;
    const withHum = i % 5 !== 0;
    const points = [{ metric: 'temp', time: new Date(base + i * 100), numberValue: temp }, ...(withHum ? [{ metric: 'hum', time: new Date(base + i * 100), numberValue: hum }] : [])];
    await world.publish(a.tenantId, device, protobufPayload({ messageId: `cel-${i}`, points }));
    const fahrenheit = temp * 1.8 + 32;
    // CEL's || and && absorb errors when the other side decides; m.hum missing is an error otherwise.
    const left = fahrenheit > 80 ? (withHum ? hum < 50 : undefined) : false;
    const right = device === 'd2' && temp < 0;
    const verdict = right || left === true;
    if (verdict) expected.add(`cel-${i}`);
    else if (left === undefined) errors++;
  }
  await rulesIdle();
  sub.unsubscribe();
  expect([...republished].sort()).toEqual([...expected].sort());
  expect(expected.size).toBeGreaterThan(3);
  const got = await unary(rules, rules.getRule, { id: created.rule!.id }, viewer);
  expect(got.rule!.stats).toMatchObject({ matched: BigInt(expected.size), actionsOk: BigInt(expected.size), actionsDeadLettered: 0n, evaluationErrors: BigInt(errors) });

  // The dry run reads the same points back from the store and reaches the same verdicts, doing nothing.
  await eventually(async () => (await world.rowCount(a.tenantId)) >= 72, 'stored cel points');
  const dry = await unary(rules, rules.dryRunRule, { ruleId: created.rule!.id, range: { start: new Date(base - 1000), end: new Date() }, maxMessages: 0 }, viewer);
  expect(dry.messagesEvaluated).toBe(40);
  expect(dry.messagesMatched).toBe(expected.size);
  expect(dry.results.filter((r) => r.matched).every((r) => r.actions[0].target === eventSubject(a.tenantId, 'rule', 'cel'))).toBe(true);
});

test('a derived metric is stored like any other point, and rules feeding each other stop at the depth limit', async () => {
  await unary(
    rules,
    rules.createRule,
    {
      rule: rule({
        name: 'celsius',
        source: { groupIds: [], deviceTypes: [], deviceIds: ['d1'], labels: {}, metrics: ['temp_f'] },
        actions: [{ derivedMetric: { metric: 'temp_c', expression: '(m.temp_f - 32.0) * 5.0 / 9.0' } }],
      }),
    },
    operator,
  );
  // Two rules that feed each other: x → y → x … only the depth header stops them.
  const ping = await unary(rules, rules.createRule, { rule: rule({ name: 'ping', source: { groupIds: [], deviceTypes: [], deviceIds: ['d2'], labels: {}, metrics: ['ping'] }, actions: [{ derivedMetric: { metric: 'pong', expression: 'm.ping + 1.0' } }] }) }, operator);
  const pong = await unary(rules, rules.createRule, { rule: rule({ name: 'pong', source: { groupIds: [], deviceTypes: [], deviceIds: ['d2'], labels: {}, metrics: ['pong'] }, actions: [{ derivedMetric: { metric: 'ping', expression: 'm.pong + 1.0' } }] }) }, operator);

  const start = Date.now() - 30_000;
  const fahrenheit = [32, 50, 98.6, 212];
  for (const [i, f] of fahrenheit.entries()) await world.publish(a.tenantId, 'd1', protobufPayload({ messageId: `f-${i}`, points: [{ metric: 'temp_f', time: new Date(start + i * 1000), numberValue: f }] }));
  await world.publish(a.tenantId, 'd2', protobufPayload({ messageId: 'loop-0', points: [{ metric: 'ping', time: new Date(start), numberValue: 0 }] }));
  await rulesIdle();

  const points = async (deviceId: string, metric: string) =>
    (await unary(telemetry, telemetry.listPoints, { deviceId, metrics: [metric], timeRange: { start: new Date(start - 1000), end: new Date() }, page: { pageSize: 100, pageToken: '' } }, viewer)).points;
  await eventually(async () => (await points('d1', 'temp_c')).length === fahrenheit.length, 'derived temp_c in raw points');
  const celsius = await points('d1', 'temp_c');
  expect(celsius.map((p) => p.value!.numberValue)).toEqual(fahrenheit.map((f) => ((f - 32) * 5) / 9));
  expect(celsius.map((p) => p.time!.getTime())).toEqual(fahrenheit.map((_f, i) => start + i * 1000));
  const latest = await unary(telemetry, telemetry.getLatest, { deviceIds: ['d1'], metrics: ['temp_c'] }, viewer);
  expect(latest.points[0].value!.numberValue).toBe(100);

  // ping 0 (device) → pong 1 (depth 1) → ping 2 (depth 2) → pong 3 (depth 3) → the pong rule stops: the limit is 3.
  await eventually(async () => (await points('d2', 'pong')).length === 2 && (await points('d2', 'ping')).length === 2, 'the looping points stored');
  // All at the source's time: sorted by value, as their order is by (random-looking) message id.
  const values = async (metric: string) => (await points('d2', metric)).map((p) => p.value!.numberValue!).sort((x, y) => x - y);
  expect(await values('ping')).toEqual([0, 2]);
  expect(await values('pong')).toEqual([1, 3]);
  const stopped = await unary(rules, rules.listRuleDeliveries, { ruleId: pong.rule!.id, state: DeliveryState.DELIVERY_STATE_DEAD_LETTERED }, viewer);
  expect(stopped.deliveries).toHaveLength(1);
  expect(stopped.deliveries[0].lastError).toMatch(/^depth_limit/);
  expect((await unary(rules, rules.getRule, { id: ping.rule!.id }, viewer)).rule!.stats).toMatchObject({ actionsOk: 2n, actionsDeadLettered: 0n });
  expect((await unary(rules, rules.getRule, { id: pong.rule!.id }, viewer)).rule!.stats).toMatchObject({ actionsOk: 1n, actionsDeadLettered: 1n });
});

test('a webhook receiver that is down, then answers 500, then OK: every call is delivered or dead-lettered, signed, and ingest carries on', async () => {
  const port = await freePort();
  const patient = { maxAttempts: 100, initialBackoff: { seconds: 0n, nanos: 50e6 }, maxBackoff: { seconds: 0n, nanos: 200e6 } };
  const created = await unary(
    rules,
    rules.createRule,
    {
      rule: rule({
        name: 'hook',
        source: { groupIds: [], deviceTypes: [], deviceIds: ['d1'], labels: {}, metrics: ['load'] },
        condition: 'm.load >= 5.0',
        actions: [
          { webhook: { url: `http://127.0.0.1:${port}/hook`, secret: '', retry: patient } },
          // Never answers: three attempts, then the dead letter.
          { webhook: { url: `http://127.0.0.1:${await freePort()}/gone`, secret: '', retry: { maxAttempts: 3 } } },
        ],
      }),
    },
    operator,
  );
  const secret = created.rule!.actions[0].webhook!.secret;
  expect(secret).toMatch(/^whsec_/);
  // Reads never show the secret again.
  expect((await unary(rules, rules.getRule, { id: created.rule!.id }, viewer)).rule!.actions[0].webhook!.secret).toBe('');

  // A live client of the same device and metric, open while the webhooks fail.
  const frames: StreamLiveResponse[] = [];
  const live = serverStream(telemetry, telemetry.streamLive, { deviceIds: ['d1'], labels: {}, groupIds: [], metrics: ['load'] }, viewer);
  live.on('data', (f: StreamLiveResponse) => frames.push(f));
  live.on('error', () => undefined);
  await eventually(() => frames.length > 0, 'the live stream subscribed');

  const loads = Array.from({ length: 12 }, (_, i) => i);
  // Each message as a traced device would send it: its own trace id in `traceparent`.
  const traceOf = (load: number) => crypto.createHash('md5').update(`trace-${load}`).digest('hex');
  for (const load of loads) {
    const h = natsHeaders();
    h.set('traceparent', `00-${traceOf(load)}-${'ab'.repeat(8)}-01`);
    await world.nc.jetstream().publish(deviceSubject(a.tenantId, 'd1', 'tel'), protobufPayload({ messageId: `load-${load}`, points: [{ metric: 'load', numberValue: load }] }), { headers: h });
  }
  const matching = loads.filter((l) => l >= 5).map((l) => `load-${l}`);
  const loadRows = async () => (await world.pool.query(`SELECT count(*)::int AS n FROM points WHERE tenant_id = $1 AND metric = 'load'`, [a.tenantId])).rows[0].n;

  // Down: every attempt is refused, yet every point is stored and the retries go on.
  await eventually(async () => (await unary(rules, rules.getRule, { id: created.rule!.id }, viewer)).rule!.stats!.actionsFailed >= BigInt(2 * matching.length), 'failed attempts while the receiver is down');
  await eventually(async () => (await loadRows()) === loads.length, 'every point stored while the webhooks fail');
  await eventually(() => frames.flatMap((f) => f.points).length === loads.length, 'every point live while the webhooks fail');
  live.cancel();
  expect(frames.flatMap((f) => f.points.map((p) => p.value!.numberValue))).toEqual(loads);

  // Up: the first three calls get 500, then 200.
  const calls: { headers: http.IncomingHttpHeaders; body: string; answered: number }[] = [];
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answered = calls.length < 3 ? 500 : 200;
      calls.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered });
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(port, '127.0.0.1', resolve));
  try {
    await rulesIdle();
  } finally {
    await new Promise((resolve) => receiver.close(resolve));
  }

  const deliveries = (await unary(rules, rules.listRuleDeliveries, { ruleId: created.rule!.id, state: 0, page: { pageSize: 100, pageToken: '' } }, viewer)).deliveries;
  const delivered = deliveries.filter((d) => d.state === DeliveryState.DELIVERY_STATE_DELIVERED);
  const dead = deliveries.filter((d) => d.state === DeliveryState.DELIVERY_STATE_DEAD_LETTERED);
  // Every matching message has exactly one final outcome per action: delivered to the receiver, dead-lettered for the gone one.
  expect(delivered.map((d) => d.messageId).sort()).toEqual([...matching].sort());
  expect(dead.map((d) => d.messageId).sort()).toEqual([...matching].sort());
  for (const d of dead) expect(d).toMatchObject({ attempts: 3, lastError: expect.stringMatching(/ECONNREFUSED/) });
  // What the receiver accepted is exactly what the log calls delivered, one 200 per webhook-id; the 500s were retried.
  expect(calls.filter((c) => c.answered === 500)).toHaveLength(3);
  const accepted = calls.filter((c) => c.answered === 200);
  expect(accepted.map((c) => c.headers['webhook-id']).sort()).toEqual(delivered.map((d) => d.webhookId).sort());
  for (const call of calls) {
    expect(verifySignature(secret, call.headers, call.body)).toBe(true);
    const payload = JSON.parse(call.body);
    expect(payload).toMatchObject({ type: 'rule.matched', data: { ruleId: created.rule!.id, deviceId: 'd1' } });
    expect(payload.data.points[0].value).toBeGreaterThanOrEqual(5);
    // The call continues the device message's trace.
    expect(String(call.headers.traceparent).split('-')[1]).toBe(traceOf(payload.data.points[0].value));
  }
  expect(verifySignature(secret, { ...calls[0].headers, 'webhook-id': 'forged' }, calls[0].body)).toBe(false);
  const stats = (await unary(rules, rules.getRule, { id: created.rule!.id }, viewer)).rule!.stats!;
  expect(stats).toMatchObject({ matched: BigInt(matching.length), actionsOk: BigInt(matching.length), actionsDeadLettered: BigInt(matching.length) });
  // The same counters on /metrics.
  const text = await metrics.text();
  const sample = (name: string, labels: string) => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1]);
  const labels = (outcome: string) => `tenant="${a.tenantId}",rule="hook",kind="webhook",outcome="${outcome}"`;
  expect(sample('iot_rule_matched_total', `tenant="${a.tenantId}",rule="hook"`)).toBe(matching.length);
  expect(sample('iot_rule_actions_total', labels('ok'))).toBe(matching.length);
  expect(sample('iot_rule_actions_total', labels('dead_lettered'))).toBe(matching.length);
  expect(sample('iot_rule_actions_total', labels('failed'))).toBe(Number(stats.actionsFailed));
});

test('notification channels: e-mail over SMTP, a NATS subject, a rate limit, and a queryable delivery log', async () => {
  const email = await unary(channels, channels.createNotificationChannel, { channel: { id: '', tenantId: '', name: 'ops mail', email: { to: ['ops@example.com'] }, rateLimitPerMinute: 0 } }, operator);
  const nats = await unary(channels, channels.createNotificationChannel, { channel: { id: '', tenantId: '', name: 'bus', nats: { topic: 'ops' }, rateLimitPerMinute: 2 } }, operator);
  expect(email.channel!.retry).toMatchObject({ maxAttempts: 5 });
  const created = await unary(
    rules,
    rules.createRule,
    {
      rule: rule({
        name: 'notify',
        source: { groupIds: [], deviceTypes: [], deviceIds: ['d2'], labels: {}, metrics: ['smoke'] },
        condition: 'm.smoke == true',
        actions: [{ notify: { channelId: email.channel!.id, title: 'Smoke' } }, { notify: { channelId: nats.channel!.id, title: '' } }],
      }),
    },
    operator,
  );
  const onBus: Notification[] = [];
  const sub = world.nc.subscribe(eventSubject(a.tenantId, 'notification', 'ops'), { callback: (_e, msg) => onBus.push(Notification.decode(msg.data)) });
  await world.nc.flush();
  const mailsBefore = mails.length;
  for (let i = 0; i < 4; i++) await world.publish(a.tenantId, 'd2', protobufPayload({ messageId: `smoke-${i}`, points: [{ metric: 'smoke', boolValue: true }] }));
  await rulesIdle();
  await world.nc.flush();
  sub.unsubscribe();

  const newMails = mails.slice(mailsBefore);
  expect(newMails).toHaveLength(4);
  for (const m of newMails) {
    expect(m.to).toEqual(['ops@example.com']);
    expect(m.body).toMatch(/Subject: \[notify\] Smoke/);
    expect(m.body).toMatch(/smoke = true/);
  }
  // The NATS channel allows two a minute: two sent, two logged as rate limited.
  expect(onBus).toHaveLength(2);
  expect(onBus[0]).toMatchObject({ tenantId: a.tenantId, ruleId: created.rule!.id, ruleName: 'notify', title: 'notify', deviceId: 'd2' });
  const busLog = (await unary(channels, channels.listChannelDeliveries, { channelId: nats.channel!.id }, viewer)).deliveries;
  expect(busLog.map((d) => d.state).sort()).toEqual([DeliveryState.DELIVERY_STATE_DELIVERED, DeliveryState.DELIVERY_STATE_DELIVERED, DeliveryState.DELIVERY_STATE_RATE_LIMITED, DeliveryState.DELIVERY_STATE_RATE_LIMITED]);
  const mailLog = (await unary(channels, channels.listChannelDeliveries, { channelId: email.channel!.id }, viewer)).deliveries;
  expect(mailLog.map((d) => [d.state, d.attempts])).toEqual(Array(4).fill([DeliveryState.DELIVERY_STATE_DELIVERED, 1]));
});

test('rules carry on when their durable consumer is deleted', async () => {
  await unary(rules, rules.createRule, { rule: rule({ name: 'phoenix', source: { groupIds: [], deviceTypes: [], deviceIds: [], labels: {}, metrics: ['rise'] }, actions: [{ republish: { topic: 'phoenix' } }] }) }, operator);
  const seen: string[] = [];
  const sub = world.nc.subscribe(eventSubject(a.tenantId, 'rule', 'phoenix'), { callback: (_e, msg) => seen.push(Telemetry.decode(msg.data).messageId) });
  await world.nc.flush();
  const jsm = await world.nc.jetstreamManager();
  await jsm.consumers.delete('TELEMETRY', 'monitoring-rules');
  // Published until one gets through: the consumer comes back with "new messages only".
  let n = 0;
  await eventually(async () => {
    await world.publish(a.tenantId, 'd1', protobufPayload({ messageId: `rise-${n++}`, points: [{ metric: 'rise', numberValue: 1 }] }));
    return seen.length > 0;
  }, 'a republished message after the consumer was deleted');
  sub.unsubscribe();
  expect((await jsm.consumers.info('TELEMETRY', 'monitoring-rules')).config.durable_name).toBe('monitoring-rules');
});

test('a rule selects the devices of its groups as they are when each message arrives: relabelled, regrouped or deleted, without a restart', async () => {
  const north = crypto.randomUUID();
  const spare = crypto.randomUUID();
  await world.registerDevice(a.tenantId, 'g1', { labels: { site: 'north' } });
  await world.registerDevice(a.tenantId, 'g2', { labels: { site: 'south' } });
  await world.putGroup(a.tenantId, north, { site: 'north' });
  await world.putGroup(a.tenantId, spare, { site: 'nowhere' });
  const source = { deviceTypes: [], deviceIds: [], labels: {}, metrics: ['grouped'] };
  const created = await eventually(
    () => unary(rules, rules.createRule, { rule: rule({ name: 'by-group', source: { ...source, groupIds: [north, spare] }, actions: [{ republish: { topic: 'by-group' } }] }) }, operator).catch(() => false as const),
    'the rule created once monitoring knows both groups',
  );
  expect(created.rule!.source!.groupIds).toEqual([north, spare]);
  const seen: string[] = [];
  const sub = world.nc.subscribe(eventSubject(a.tenantId, 'rule', 'by-group'), { callback: (_e, msg) => seen.push(Telemetry.decode(msg.data).messageId) });
  await world.nc.flush();
  let n = 0;
  const send = async (deviceId: string) => {
    const id = `${deviceId}-${n++}`;
    await world.publish(a.tenantId, deviceId, protobufPayload({ messageId: id, points: [{ metric: 'grouped', numberValue: 1 }] }));
    return id;
  };
  /** Sends from `deviceId` until one of its messages is republished (monitoring saw the directory change), then clears what was seen. */
  const selectedAgain = async (deviceId: string, what: string) => {
    await eventually(async () => {
      const id = await send(deviceId);
      await rulesIdle();
      return seen.includes(id);
    }, what);
    seen.length = 0;
  };
  /** One message from each device, all evaluated: which were republished. */
  const round = async (...devices: string[]) => {
    const ids = [];
    for (const d of devices) ids.push(await send(d));
    await rulesIdle();
    return ids.map((id) => seen.includes(id));
  };

  await selectedAgain('g1', 'g1 selected through the north group');
  expect(await round('g1', 'g2')).toEqual([true, false]);

  // Membership follows the device directory: g1 leaves north, then g2 joins it (one bucket, so seen in that order).
  seen.length = 0;
  await world.registerDevice(a.tenantId, 'g1', { labels: { site: 'south' } });
  await world.registerDevice(a.tenantId, 'g2', { labels: { site: 'north' } });
  await selectedAgain('g2', 'g2 selected once relabelled into the north group');
  expect(await round('g1', 'g2')).toEqual([false, true]);

  // Membership follows the group: its selector changed to south.
  seen.length = 0;
  await world.putGroup(a.tenantId, north, { site: 'south' });
  await selectedAgain('g1', 'g1 selected once the group selects south');
  expect(await round('g1', 'g2')).toEqual([true, false]);

  // A deleted group selects nothing; the rule's other group still does (written after the delete, so seen after it).
  seen.length = 0;
  await world.putGroup(a.tenantId, north, undefined);
  await world.putGroup(a.tenantId, spare, { site: 'north' });
  await selectedAgain('g2', 'g2 selected through the spare group');
  expect(await round('g1', 'g2')).toEqual([false, true]);
  sub.unsubscribe();

  // Group ids are checked in the caller's tenant: another tenant's group, an unknown one, one that is not an id.
  const b = await signed.signing.createTenant();
  await world.putGroup(b.tenantId, north, { site: 'north' });
  const other = crypto.randomUUID();
  await world.putGroup(b.tenantId, other, { site: 'north' });
  const tryCreate = (groupIds: string[], authorization = operator) =>
    unary(rules, rules.createRule, { rule: rule({ name: 'foreign', source: { ...source, groupIds }, actions: [{ republish: { topic: 'foreign' } }] }) }, authorization);
  await expect(tryCreate([other])).rejects.toMatchObject({ code: status.NOT_FOUND });
  await expect(tryCreate([crypto.randomUUID()])).rejects.toMatchObject({ code: status.NOT_FOUND });
  await expect(tryCreate(['north'])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('rule.source.group_ids[0]') });
  // Updating to a deleted group is NOT_FOUND too.
  await expect(unary(rules, rules.updateRule, { rule: { ...created.rule!, source: { ...source, groupIds: [north] } } }, operator)).rejects.toMatchObject({ code: status.NOT_FOUND });
});

test('a live stream of a group streams its members as they are when each message arrives', async () => {
  const group = crypto.randomUUID();
  await world.registerDevice(a.tenantId, 'l1', { labels: { zone: 'x' } });
  await world.registerDevice(a.tenantId, 'l2', { labels: { zone: 'y' } });
  await world.putGroup(a.tenantId, group, { zone: 'x' });
  const open = (request: { deviceIds?: string[]; groupIds: string[] }) => {
    const values: number[] = [];
    const call = serverStream(telemetry, telemetry.streamLive, { deviceIds: [], labels: {}, metrics: ['lv'], ...request }, viewer);
    const opened = new Promise<true | Error>((resolve) => {
      call.on('data', (f: StreamLiveResponse) => {
        values.push(...f.points.map((p) => p.value!.numberValue!));
        resolve(true);
      });
      call.on('error', (err: Error) => resolve(err));
    });
    return { values, call, opened };
  };
  // Refused before it opens: an unknown group, a malformed id, devices and groups together.
  await expect(open({ groupIds: [crypto.randomUUID()] }).opened).resolves.toMatchObject({ code: status.NOT_FOUND });
  await expect(open({ groupIds: ['zone-x'] }).opened).resolves.toMatchObject({ code: status.INVALID_ARGUMENT });
  await expect(open({ groupIds: [group], deviceIds: ['l1'] }).opened).resolves.toMatchObject({ code: status.INVALID_ARGUMENT });

  // Every device of the tenant, as a reference: a point it got was offered to every stream in the same delivery.
  const everything = open({ groupIds: [] });
  await everything.opened;
  const grouped = await eventually(async () => {
    const stream = open({ groupIds: [group] });
    if ((await stream.opened) === true) return stream;
    stream.call.cancel();
    return undefined;
  }, 'a live stream of the group open once monitoring knows it');
  let value = 0;
  const send = async (deviceId: string) => {
    const v = ++value;
    await world.publish(a.tenantId, deviceId, protobufPayload({ messageId: `lv-${v}`, points: [{ metric: 'lv', numberValue: v }] }));
    await eventually(() => everything.values.includes(v), `point ${v} live`);
    return v;
  };
  /** Sends from `deviceId` until the group's stream carries one of its points. */
  const streamsFrom = (deviceId: string, what: string) =>
    eventually(async () => {
      const v = await send(deviceId);
      return eventually(() => grouped.values.includes(v), `point ${v} in the group's stream`, 1000).catch(() => false);
    }, what);
  /** A point of `outside`, then one of `inside`: once the second is in the group's stream, the first would have come before it. */
  const excluded = async (outside: string, inside: string) => {
    const out = await send(outside);
    const last = await send(inside);
    await eventually(() => grouped.values.includes(last), `point ${last} in the group's stream`);
    return !grouped.values.includes(out);
  };

  await streamsFrom('l1', 'l1 in the group stream');
  expect(await excluded('l2', 'l1')).toBe(true);
  // l1 relabelled out, then l2 in (one bucket, seen in that order): the open stream follows.
  await world.registerDevice(a.tenantId, 'l1', { labels: { zone: 'y' } });
  await world.registerDevice(a.tenantId, 'l2', { labels: { zone: 'x' } });
  await streamsFrom('l2', 'l2 in the group stream once relabelled into it');
  expect(await excluded('l1', 'l2')).toBe(true);
  grouped.call.cancel();
  everything.call.cancel();
});

test('a slow webhook receiver holds only its own rule: at most RULES_ACTION_CONCURRENCY calls in flight, the rest queued and all delivered, another tenant’s webhooks go through meanwhile', async () => {
  // The slow receiver answers only when the test lets it: every call it has stays open until then.
  let open = 0;
  let mostOpen = 0;
  const held: http.ServerResponse[] = [];
  const slowIds = new Set<string>();
  const slow = http.createServer((req, res) => {
    open++;
    mostOpen = Math.max(mostOpen, open);
    req.on('close', () => open--);
    req.resume();
    req.on('end', () => {
      slowIds.add(String(req.headers['webhook-id']));
      held.push(res);
    });
  });
  const fastIds = new Set<string>();
  const fast = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      fastIds.add(String(req.headers['webhook-id']));
      res.writeHead(204).end();
    });
  });
  await Promise.all([slow, fast].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const url = (s: http.Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/hook`;
  const c = await signed.signing.createTenant();
  await world.registerDevice(c.tenantId, 'c1');
  const hookRule = (name: string, deviceId: string, target: string) =>
    rule({ name, source: { groupIds: [], deviceTypes: [], deviceIds: [deviceId], labels: {}, metrics: ['slowness'] }, condition: 'true', actions: [{ webhook: { url: target, secret: '' } }] });
  const slowRule = (await unary(rules, rules.createRule, { rule: hookRule('slow-hook', 'd1', url(slow)) }, operator)).rule!;
  const fastRule = (await unary(rules, rules.createRule, { rule: hookRule('fast-hook', 'c1', url(fast)) }, { authorization: c.operator.authorization })).rule!;
  try {
    const SLOW = 20;
    const CONCURRENCY = 8; // RULES_ACTION_CONCURRENCY's default
    for (let i = 0; i < SLOW; i++) await world.publish(a.tenantId, 'd1', protobufPayload({ messageId: `slow-${i}`, points: [{ metric: 'slowness', numberValue: i }] }));
    await eventually(() => held.length === CONCURRENCY, 'the slow receiver holding as many calls as the rule may have in flight');
    // While those hang: another tenant's rule delivers, and ingest stores every point.
    for (let i = 0; i < 5; i++) await world.publish(c.tenantId, 'c1', protobufPayload({ messageId: `fast-${i}`, points: [{ metric: 'slowness', numberValue: i }] }));
    await eventually(() => fastIds.size === 5, "the other tenant's five webhooks delivered while the slow receiver holds its calls");
    await eventually(async () => (await world.pool.query(`SELECT count(*)::int AS n FROM points WHERE metric = 'slowness' AND tenant_id = ANY($1)`, [[a.tenantId, c.tenantId]])).rows[0].n === SLOW + 5, 'every point stored');
    expect(open).toBeLessThanOrEqual(CONCURRENCY);
    // Released one answer at a time, the queued rest follow, none lost, never more than the bound in flight.
    await eventually(() => {
      for (const res of held.splice(0)) if (!res.writableEnded) res.writeHead(200).end();
      return slowIds.size === SLOW && open === 0;
    }, 'all slow calls answered');
    await rulesIdle();
    expect(mostOpen).toBeLessThanOrEqual(CONCURRENCY);
    expect([...slowIds].sort()).toEqual(Array.from({ length: SLOW }, (_, i) => `msg_${slowRule.id}_0_slow-${i}`).sort());
    const delivered = async (ruleId: string, authorization: string) =>
      (await unary(rules, rules.listRuleDeliveries, { ruleId, state: DeliveryState.DELIVERY_STATE_DELIVERED, page: { pageSize: 100, pageToken: '' } }, { authorization })).deliveries.length;
    expect(await delivered(slowRule.id, a.viewer.authorization)).toBe(SLOW);
    expect(await delivered(fastRule.id, c.viewer.authorization)).toBe(5);
  } finally {
    for (const res of held.splice(0)) if (!res.writableEnded) res.writeHead(200).end();
    await unary(rules, rules.deleteRule, { id: slowRule.id }, operator).catch(() => undefined);
    await Promise.all([slow, fast].map((s) => new Promise((resolve) => s.close(resolve))));
  }
});
