import type { DryRunResult, DryRunRuleResponse, Rule } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { eventSubject } from '@iot-mesh/runtime';
import type { PointRow, TelemetryStore } from '../store/telemetry-store';
import { CompiledRule, RuleMessage } from './rules';
import type { KnownDevices } from './telemetry';
import { toDataPoint } from './telemetry';

/** Most messages a dry run evaluates. */
export const DRY_RUN_MAX_MESSAGES = 1000;
/** Points read per page while a dry run gathers messages. */
const PAGE = 1000;

/**
 * Evaluates a rule against stored points of the devices it selects (grouped
 * into messages by their time: the store keeps no message id per point),
 * oldest first from `start`, and says what each action would have done.
 * Sends nothing.
 */
export async function dryRunRule(store: TelemetryStore, devices: KnownDevices, rule: Rule, start: Date, end: Date, maxMessages: number): Promise<DryRunRuleResponse> {
  const compiled = new CompiledRule(rule);
  const results: DryRunResult[] = [];
  let evaluated = 0;
  let matched = 0;
  const candidates = rule.source?.deviceIds.length ? rule.source.deviceIds.map((id) => devices.get(rule.tenantId, id) ?? { tenantId: rule.tenantId, deviceId: id, labels: {}, revoked: false }) : devices.devicesOf(rule.tenantId);
  for (const device of candidates) {
    if (evaluated >= maxMessages) break;
    const byMessage = new Map<string, PointRow[]>();
    let after;
    // Read this device's points until enough messages are gathered.
    do {
      const page = await store.points({ tenantId: rule.tenantId, deviceId: device.deviceId, metrics: [], start, end, after, limit: PAGE });
      for (const p of page.points) {
        // Stored points keep no message id: the points of one time stand for one message.
        const key = p.time.toISOString();
        const rows = byMessage.get(key) ?? [];
        rows.push({ tenantId: rule.tenantId, deviceId: device.deviceId, metric: p.metric, time: p.time, messageId: key, pointIndex: rows.length, value: p.value });
        byMessage.set(key, rows);
      }
      after = page.next;
    } while (after && byMessage.size < maxMessages - evaluated);
    for (const [messageId, rows] of byMessage) {
      if (evaluated >= maxMessages) break;
      const message: RuleMessage = { tenantId: rule.tenantId, deviceId: device.deviceId, messageId, rows, depth: 0 };
      if (!compiled.selects(device, message, devices)) continue;
      evaluated++;
      const verdict = compiled.evaluate(device, message);
      if (verdict.matched) matched++;
      results.push({
        deviceId: device.deviceId,
        messageId: '',
        time: rows[0].time,
        matched: verdict.matched,
        error: verdict.error ?? '',
        actions: verdict.actions.map((a) => {
          switch (a.kind) {
            case 'derived_metric':
              return {
                kind: a.kind,
                target: a.metric,
                point: a.value ? toDataPoint({ deviceId: device.deviceId, metric: a.metric, time: rows[0].time, value: a.value }) : undefined,
                error: a.error ?? '',
              };
            case 'republish':
              return { kind: a.kind, target: eventSubject(rule.tenantId, 'rule', a.topic), error: '' };
            case 'webhook':
              return { kind: a.kind, target: a.url, error: '' };
            case 'notify':
              return { kind: a.kind, target: a.channelId, error: '' };
          }
        }),
      });
    }
  }
  return { results, messagesEvaluated: evaluated, messagesMatched: matched };
}
