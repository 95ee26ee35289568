import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DeliveryState, Rule, RuleServiceClient } from '../../../gen/ts/iot/monitoring/v1/rules';
import { insecureClient, unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { eventually, MonitoringWorld, protobufPayload, SignedWorld, startSignedWorld } from './harness';

jest.setTimeout(60_000);

let signed: SignedWorld;
let world: MonitoringWorld;
let receiver: http.Server;
let a: TestTenant;
/** What the receiver answers right now. */
let answer = 500;
const calls: { webhookId: string; answered: number }[] = [];

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      calls.push({ webhookId: String(req.headers['webhook-id']), answered: answer });
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  ({ world, a } = signed = await startSignedWorld({
    RULES_ACTION_INITIAL_BACKOFF_MS: '100',
    RULES_ACTION_MAX_BACKOFF_MS: '200',
    RULES_ACTION_MAX_ATTEMPTS: '100',
  }));
  await world.registerDevice(a.tenantId, 'd1');
});
afterAll(async () => {
  await signed?.close();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve(undefined)));
});

test('queued webhook retries survive the monitoring service stopping mid-retry: a new replica resumes them at their attempt and delivers each once', async () => {
  const first = world.services[0];
  const rules = insecureClient(RuleServiceClient, first.service.address);
  const port = (receiver.address() as AddressInfo).port;
  const rule = Rule.fromPartial({
    name: 'durable',
    source: { deviceIds: ['d1'], metrics: ['v'] },
    condition: 'm.v > 0.0',
    actions: [{ webhook: { url: `http://127.0.0.1:${port}/hook`, secret: '' } }],
    enabled: true,
  });
  const created = (await unary(rules, rules.createRule, { rule }, { authorization: a.operator.authorization })).rule!;
  rules.close();
  for (let i = 1; i <= 3; i++) await world.publish(a.tenantId, 'd1', protobufPayload({ messageId: `m${i}`, points: [{ metric: 'v', numberValue: i }] }));

  // Mid-retry: every delivery has failed at least twice and is backing off.
  await eventually(() => new Set(calls.filter((c) => c.answered === 500).map((c) => c.webhookId)).size === 3 && calls.length >= 6, 'failing attempts of all three');
  await first.service.stop();
  const queued = (await world.pool.query('SELECT attempt FROM rule_action_queue WHERE rule_id = $1', [created.id])).rows;
  expect(queued).toHaveLength(3);
  expect(queued.every((r) => r.attempt >= 2)).toBe(true);
  const failedBefore = calls.length;

  // Nothing runs them while no replica is up; the receiver recovers; a new replica takes the released jobs over.
  answer = 200;
  const second = await world.startReplica();
  await second.stats.rulesIdle();

  const accepted = calls.filter((c) => c.answered === 200).map((c) => c.webhookId);
  expect(accepted.sort()).toEqual([1, 2, 3].map((i) => `msg_${created.id}_0_m${i}`).sort());
  expect(calls.length).toBe(failedBefore + 3);
  const { rows: log } = await world.pool.query('SELECT message_id, state, attempts FROM rule_deliveries WHERE rule_id = $1 ORDER BY message_id', [created.id]);
  expect(log.map((r) => [r.message_id, r.state])).toEqual([1, 2, 3].map((i) => [`m${i}`, DeliveryState.DELIVERY_STATE_DELIVERED]));
  // The attempt count carried over the restart.
  for (const r of log) expect(r.attempts).toBeGreaterThan(2);
  expect((await world.pool.query('SELECT count(*)::int AS n FROM rule_action_queue')).rows[0].n).toBe(0);
});

test('jobs a crashed replica still holds (its lease never released) are resumed by another once the lease runs out', async () => {
  const running = world.services[world.services.length - 1];
  answer = 500;
  await world.publish(a.tenantId, 'd1', protobufPayload({ messageId: 'm4', points: [{ metric: 'v', numberValue: 4 }] }));
  await eventually(() => calls.filter((c) => c.webhookId.endsWith('_m4') && c.answered === 500).length >= 2, 'failing attempts of m4');
  await running.service.stop();
  // As a crash leaves them: held by a replica that is gone, under a lease nobody renews.
  await world.pool.query(`UPDATE rule_action_queue SET owner = 'crashed-replica', lease_until = now() + interval '1 second'`);
  answer = 200;
  const next = await world.startReplica({ RULES_QUEUE_LEASE_MS: '300' });
  await eventually(async () => (await world.pool.query('SELECT count(*)::int AS n FROM rule_action_queue')).rows[0].n === 0, 'the crashed replica’s job resumed and finished');
  await next.stats.rulesIdle();
  expect(calls.filter((c) => c.webhookId.endsWith('_m4') && c.answered === 200)).toHaveLength(1);
  const { rows } = await world.pool.query(`SELECT state FROM rule_deliveries WHERE message_id = 'm4'`);
  expect(rows).toEqual([{ state: DeliveryState.DELIVERY_STATE_DELIVERED }]);
});
