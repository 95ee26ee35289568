import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AlertRule, AlertServiceClient, AlertState, Comparison, Severity } from '../../../gen/ts/iot/monitoring/v1/alerts';
import { DeliveryState, NotificationChannelServiceClient } from '../../../gen/ts/iot/monitoring/v1/rules';
import { deviceSubject, unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { eventually, jsonPayload, MonitoringWorld, SignedWorld, startSignedWorld } from './harness';
import { ReceivedMail, startSmtpServer, verifySignature } from './receivers';

jest.setTimeout(60_000);

let signed: SignedWorld;
let world: MonitoringWorld;
let closeSmtp: (() => Promise<void>) | undefined;
let receiver: http.Server;
let receiverUrl: string;
const posts: { headers: http.IncomingHttpHeaders; body: string }[] = [];
let smtpPort: number;
let mails: ReceivedMail[];
let a: TestTenant;
let alerts: AlertServiceClient;
let channels: NotificationChannelServiceClient;
let operator: { authorization: string };

beforeAll(async () => {
  ({ port: smtpPort, mails, close: closeSmtp } = await startSmtpServer());
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/alerts`;

  ({ world, a } = signed = await startSignedWorld({
    // Repeats are driven by the test (stats.alertRepeats(now)), not by the periodic check.
    ALERT_CHECK_INTERVAL_MS: '3600000',
    RULES_ACTION_INITIAL_BACKOFF_MS: '50',
    RULES_ACTION_MAX_BACKOFF_MS: '200',
    RULES_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
  }));
  operator = { authorization: a.operator.authorization };
  alerts = signed.client(AlertServiceClient);
  channels = signed.client(NotificationChannelServiceClient);
  for (const d of ['d1', 'd2', 'd3']) await world.registerDevice(a.tenantId, d);
});
afterAll(async () => {
  await signed?.close();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve(undefined)));
  await closeSmtp?.();
});

const stats = () => world.services[0].stats;

function thresholdRule(name: string, deviceId: string, notification: AlertRule['notification']): AlertRule {
  return AlertRule.fromPartial({
    name,
    metric: 'temp',
    deviceIds: [deviceId],
    threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold: 30, hysteresis: 0 },
    severity: Severity.SEVERITY_CRITICAL,
    enabled: true,
    notification,
  });
}

/** Publishes one temp sample of a device (core NATS: the fan-out hands it to the evaluator). */
function sample(deviceId: string, value: number): void {
  world.nc.publish(deviceSubject(a.tenantId, deviceId, 'tel'), jsonPayload({ points: [{ metric: 'temp', time: new Date().toISOString(), numberValue: value }] }));
}

/** Waits until the alert of a rule has reached `state`; the alert. */
async function alertOf(ruleId: string, state: AlertState) {
  return eventually(async () => {
    const { alerts: list } = await unary(alerts, alerts.listAlerts, { state, deviceId: '', unacknowledgedOnly: false }, operator);
    return list.find((x) => x.ruleId === ruleId);
  }, `alert in state ${AlertState[state]}`);
}

/** Every change handed over, every queued notification finished. */
async function settled(): Promise<void> {
  await stats().alertsIdle();
  await stats().rulesIdle();
}

test('an alert rule notifies its channels on raise, on every repeat interval while raised, and on resolve; the delivery log lists them per alert', async () => {
  const webhook = (await unary(channels, channels.createNotificationChannel, { channel: { id: '', tenantId: '', name: 'pager', webhook: { url: receiverUrl, secret: '' }, rateLimitPerMinute: 0 } }, operator)).channel!;
  const email = (await unary(channels, channels.createNotificationChannel, { channel: { id: '', tenantId: '', name: 'ops mail', email: { to: ['ops@example.test'] }, rateLimitPerMinute: 0 } }, operator)).channel!;
  await expect(
    unary(alerts, alerts.createAlertRule, { rule: thresholdRule('bad', 'd1', { channelIds: ['nope'], repeatInterval: { seconds: 0n, nanos: 5 }, quietHours: { start: '25:00', end: '07:00', timeZone: 'Mars/Olympus' } }) }, operator),
  ).rejects.toMatchObject({ details: expect.stringMatching(/channel_ids\[0\].*repeat_interval.*quiet_hours.start.*quiet_hours.time_zone/s) });
  const rule = (await unary(alerts, alerts.createAlertRule, { rule: thresholdRule('hot d1', 'd1', { channelIds: [webhook.id, email.id], repeatInterval: { seconds: 3600n, nanos: 0 } }) }, operator)).rule!;
  expect(rule.notification).toMatchObject({ channelIds: [webhook.id, email.id], repeatInterval: { seconds: 3600n } });

  sample('d1', 35);
  const raised = await alertOf(rule.id, AlertState.ALERT_STATE_RAISED);
  await settled();
  expect(posts).toHaveLength(1);
  const first = JSON.parse(posts[0].body);
  expect(first).toMatchObject({ type: 'alert.raised', data: { alertId: raised.id, alertEvent: 'raised', ruleId: rule.id, deviceId: 'd1', alertSeverity: 'SEVERITY_CRITICAL' } });
  expect(first.data.alertMessage).toMatch(/temp > 30 \(value 35\) on d1/);
  expect(verifySignature(webhook.webhook!.secret, posts[0].headers, posts[0].body)).toBe(true);
  expect(mails).toHaveLength(1);
  expect(mails[0].to).toEqual(['ops@example.test']);
  expect(mails[0].body).toMatch(new RegExp(`X-Iot-Alert: ${raised.id}\\s+X-Iot-Alert-Event: raised`));

  // Not due before the interval has passed; due once it has, and then taken once only.
  expect(await stats().alertRepeats(new Date(Date.now() + 60_000))).toBe(0);
  const later = new Date(Date.now() + 3_601_000);
  expect(await stats().alertRepeats(later)).toBe(1);
  expect(await stats().alertRepeats(later)).toBe(0);
  await settled();
  expect(posts.map((p) => JSON.parse(p.body).type)).toEqual(['alert.raised', 'alert.repeat']);
  expect(mails[1].body).toMatch(/X-Iot-Alert-Event: repeat/);

  sample('d1', 20);
  await alertOf(rule.id, AlertState.ALERT_STATE_RESOLVED);
  await settled();
  expect(posts.map((p) => JSON.parse(p.body).type)).toEqual(['alert.raised', 'alert.repeat', 'alert.resolved']);
  expect(mails).toHaveLength(3);
  // A resolved alert repeats no more.
  expect(await stats().alertRepeats(new Date(Date.now() + 10 * 3_600_000))).toBe(0);

  const log = (await unary(alerts, alerts.listAlertDeliveries, { alertId: raised.id }, { authorization: a.viewer.authorization })).deliveries;
  expect(log).toHaveLength(6);
  expect(log.every((d) => d.state === DeliveryState.DELIVERY_STATE_DELIVERED && d.alertId === raised.id && d.ruleId === rule.id)).toBe(true);
  expect(log.map((d) => d.alertEvent).sort()).toEqual(['raised', 'raised', 'repeat', 'repeat', 'resolved', 'resolved']);
  expect(new Set(log.map((d) => d.channelId))).toEqual(new Set([webhook.id, email.id]));
  const other = await signed.signing.createTenant();
  await expect(unary(alerts, alerts.listAlertDeliveries, { alertId: raised.id }, { authorization: other.viewer.authorization })).rejects.toMatchObject({ code: 5 });
});

test('inside quiet hours notifications are suppressed (logged, not sent); a channel’s rate limit holds for alerts too', async () => {
  const webhook = (await unary(channels, channels.createNotificationChannel, { channel: { id: '', tenantId: '', name: 'one a minute', webhook: { url: receiverUrl, secret: '' }, rateLimitPerMinute: 1 } }, operator)).channel!;
  // A window around the current time, in a zone other than UTC.
  const zone = 'Asia/Kolkata';
  const local = (offsetMin: number) =>
    new Intl.DateTimeFormat('en-GB', { timeZone: zone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(Date.now() + offsetMin * 60_000));
  const quietRule = (await unary(alerts, alerts.createAlertRule, { rule: thresholdRule('quiet d2', 'd2', { channelIds: [webhook.id], quietHours: { start: local(-60), end: local(60), timeZone: zone } }) }, operator)).rule!;
  const before = posts.length;
  sample('d2', 40);
  const quietAlert = await alertOf(quietRule.id, AlertState.ALERT_STATE_RAISED);
  await settled();
  expect(posts.length).toBe(before);
  const quietLog = (await unary(alerts, alerts.listAlertDeliveries, { alertId: quietAlert.id }, operator)).deliveries;
  expect(quietLog).toMatchObject([{ state: DeliveryState.DELIVERY_STATE_SUPPRESSED, alertEvent: 'raised', lastError: 'quiet hours' }]);

  // Outside any quiet hours, the second notification within the minute is over the channel's limit of one.
  const limited = (await unary(alerts, alerts.createAlertRule, { rule: thresholdRule('limited d3', 'd3', { channelIds: [webhook.id] }) }, operator)).rule!;
  sample('d3', 40);
  const alert = await alertOf(limited.id, AlertState.ALERT_STATE_RAISED);
  await settled();
  sample('d3', 10);
  await alertOf(limited.id, AlertState.ALERT_STATE_RESOLVED);
  await settled();
  expect(posts.length).toBe(before + 1);
  const log = (await unary(alerts, alerts.listAlertDeliveries, { alertId: alert.id }, operator)).deliveries;
  expect(log.map((d) => [d.alertEvent, DeliveryState[d.state]])).toEqual([
    ['resolved', 'DELIVERY_STATE_RATE_LIMITED'],
    ['raised', 'DELIVERY_STATE_DELIVERED'],
  ]);
});
