import { Command, Option } from 'commander';
import { durationToMs, msToDuration } from '@iot-mesh/runtime/client';
import { Alert, AlertRule, AlertState, alertStateToJSON, Comparison, Severity, severityToJSON } from '../../../gen/ts/iot/monitoring/v1/alerts';
import { UsageError } from '../cli-error';
import { deleteCommand, idCommand, listCommand, run } from '../command-context';
import { formatLabels, formatTime, printList, printOne, View } from '../output';
import { deliveryView } from './rules';
import { collectLabel, collectList, enumChoices, enumLabel, parseDuration, parseNumber } from '../parse';

const SEVERITY = enumChoices(Severity, 'SEVERITY_');
const STATE = enumChoices(AlertState, 'ALERT_STATE_');
const COMPARISON_SYMBOL: Record<Comparison, string> = {
  [Comparison.COMPARISON_UNSPECIFIED]: '?',
  [Comparison.COMPARISON_GREATER_THAN]: '>',
  [Comparison.COMPARISON_GREATER_OR_EQUAL]: '>=',
  [Comparison.COMPARISON_LESS_THAN]: '<',
  [Comparison.COMPARISON_LESS_OR_EQUAL]: '<=',
  [Comparison.UNRECOGNIZED]: '?',
};

/** A rule's condition in one phrase: `> 30 for 60s`, `no data for 300s`. */
function conditionOf(rule: AlertRule): string {
  if (rule.noData) return `no data for ${(durationToMs(rule.noData.timeout) ?? 0) / 1000}s`;
  const t = rule.threshold;
  if (!t) return '';
  const held = durationToMs(t.duration) ?? 0;
  return `${COMPARISON_SYMBOL[t.comparison]} ${t.threshold}${t.hysteresis ? ` (hysteresis ${t.hysteresis})` : ''}${held ? ` for ${held / 1000}s` : ''}`;
}

const ruleView: View<AlertRule> = {
  columns: [
    { header: 'ID', value: (r) => r.id },
    { header: 'NAME', value: (r) => r.name },
    { header: 'METRIC', value: (r) => r.metric },
    { header: 'CONDITION', value: conditionOf },
    { header: 'SEVERITY', value: (r) => enumLabel(severityToJSON(r.severity), 'SEVERITY_') },
    { header: 'ENABLED', value: (r) => (r.enabled ? 'yes' : 'no') },
    { header: 'DEVICES', value: (r) => r.deviceIds.join(',') },
    { header: 'LABELS', value: (r) => formatLabels(r.labels) },
    // Set on a device type's default rule (change it through the type, not here).
    { header: 'DEVICE TYPE', value: (r) => r.deviceTypeId },
  ],
  toJson: (r) => AlertRule.toJSON(r),
};

const alertView: View<Alert> = {
  columns: [
    { header: 'ID', value: (a) => a.id },
    { header: 'DEVICE', value: (a) => a.deviceId },
    { header: 'METRIC', value: (a) => a.metric },
    { header: 'SEVERITY', value: (a) => enumLabel(severityToJSON(a.severity), 'SEVERITY_') },
    { header: 'STATE', value: (a) => enumLabel(alertStateToJSON(a.state), 'ALERT_STATE_') },
    { header: 'VALUE', value: (a) => String(a.value) },
    { header: 'RAISED', value: (a) => formatTime(a.raiseTime) },
    { header: 'RESOLVED', value: (a) => formatTime(a.resolveTime) },
    { header: 'ACKNOWLEDGED', value: (a) => formatTime(a.acknowledgeTime) },
    { header: 'BY', value: (a) => a.acknowledgedBy },
    { header: 'MESSAGE', value: (a) => a.message },
    { header: 'RULE', value: (a) => a.ruleId },
  ],
  toJson: (a) => Alert.toJSON(a),
};

interface RuleOptions {
  name: string;
  metric: string;
  deviceId?: string[];
  group?: string[];
  label?: Record<string, string>;
  above?: number;
  atLeast?: number;
  below?: number;
  atMost?: number;
  hysteresis?: number;
  for?: number;
  absentFor?: number;
  severity: string;
  disabled?: boolean;
  channel?: string[];
  repeat?: number;
  quietHours?: string;
  timeZone?: string;
}

/** `--channel`, `--repeat`, `--quiet-hours 22:00-07:00`, `--time-zone`: the rule's notification settings. */
function notificationOf(options: RuleOptions): AlertRule['notification'] {
  if (!options.channel?.length) {
    if (options.repeat !== undefined || options.quietHours) throw new UsageError('--repeat and --quiet-hours need --channel');
    return undefined;
  }
  let quietHours;
  if (options.quietHours) {
    const m = /^(\d\d:\d\d)-(\d\d:\d\d)$/.exec(options.quietHours);
    if (!m) throw new UsageError("option '--quiet-hours': expected HH:MM-HH:MM, such as 22:00-07:00");
    quietHours = { start: m[1], end: m[2], timeZone: options.timeZone ?? '' };
  }
  return { channelIds: options.channel, repeatInterval: options.repeat !== undefined ? msToDuration(options.repeat) : undefined, quietHours };
}

/** The rule a `rules create` command line describes; exactly one condition must be given. */
function ruleOf(options: RuleOptions): AlertRule {
  const thresholds: Array<[Comparison, number | undefined]> = [
    [Comparison.COMPARISON_GREATER_THAN, options.above],
    [Comparison.COMPARISON_GREATER_OR_EQUAL, options.atLeast],
    [Comparison.COMPARISON_LESS_THAN, options.below],
    [Comparison.COMPARISON_LESS_OR_EQUAL, options.atMost],
  ];
  const given = thresholds.filter(([, v]) => v !== undefined);
  if (given.length + (options.absentFor !== undefined ? 1 : 0) !== 1) throw new UsageError('give exactly one condition: --above, --at-least, --below, --at-most or --absent-for');
  const [comparison, threshold] = given[0] ?? [];
  return AlertRule.fromPartial({
    name: options.name,
    metric: options.metric,
    deviceIds: options.deviceId ?? [],
    labels: options.label ?? {},
    groupIds: options.group ?? [],
    severity: SEVERITY[options.severity],
    enabled: !options.disabled,
    notification: notificationOf(options),
    ...(options.absentFor !== undefined
      ? { noData: { timeout: msToDuration(options.absentFor) } }
      : { threshold: { comparison, threshold, hysteresis: options.hysteresis ?? 0, duration: options.for !== undefined ? msToDuration(options.for) : undefined } }),
  });
}

/** `alerts rules list|create|delete`, `alerts list|ack`. */
export function alertCommands(program: Command): void {
  const alerts = program.command('alerts').description('alert rules and the alerts they raise');
  const rules = alerts.command('rules').description('alert rules (threshold and no-data)');

  listCommand(rules, 'list alert rules', ruleView, async (connection, page) => {
    const res = await connection.call(connection.alerts, connection.alerts.listAlertRules, { page });
    return { items: res.rules, page: res.page };
  });

  rules
    .command('create')
    .description('create a rule on one metric, for some devices (--device-id, --label, --group) or all of them')
    .requiredOption('--name <name>', 'rule name')
    .requiredOption('--metric <metric>', 'metric it watches')
    .addOption(new Option('--device-id <id>', 'only this device (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--label <key=value>', 'only devices with this label (repeatable)').argParser(collectLabel))
    .addOption(new Option('--group <id>', 'only devices that are members of this device group when they send (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--above <n>', 'raise when the value is > n').argParser(parseNumber))
    .addOption(new Option('--at-least <n>', 'raise when the value is >= n').argParser(parseNumber))
    .addOption(new Option('--below <n>', 'raise when the value is < n').argParser(parseNumber))
    .addOption(new Option('--at-most <n>', 'raise when the value is <= n').argParser(parseNumber))
    .addOption(new Option('--hysteresis <n>', 'distance back past the threshold needed to resolve').argParser(parseNumber))
    .addOption(new Option('--for <duration>', 'the condition must hold this long (such as 1m)').argParser(parseDuration))
    .addOption(new Option('--absent-for <duration>', 'no-data rule: raise when a device sends no sample of the metric for this long').argParser(parseDuration))
    .addOption(new Option('--severity <severity>', 'severity').choices(Object.keys(SEVERITY)).default('warning'))
    .option('--disabled', 'create it disabled')
    .addOption(new Option('--channel <id>', 'notify this notification channel on raise, repeat and resolve (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--repeat <duration>', 'notify again this often while the alert stays raised (such as 1h)').argParser(parseDuration))
    .option('--quiet-hours <HH:MM-HH:MM>', 'daily window in which notifications are suppressed (logged, not sent)')
    .option('--time-zone <zone>', 'IANA time zone of --quiet-hours (default UTC)')
    .action((_o, command: Command) =>
      run<RuleOptions>(command, async (connection, options) => {
        const res = await connection.call(connection.alerts, connection.alerts.createAlertRule, { rule: ruleOf(options) });
        printOne(options.output, ruleView, res.rule!);
      }),
    );

  deleteCommand(rules, 'delete a rule', 'alert rule', ['<id>', 'rule id'], (connection, id) => connection.call(connection.alerts, connection.alerts.deleteAlertRule, { id }));

  listCommand<Alert, { state?: string; deviceId?: string; unacknowledged?: boolean }>(alerts, 'list alerts, newest first', alertView, async (connection, page, options) => {
    const res = await connection.call(connection.alerts, connection.alerts.listAlerts, {
      page,
      state: options.state ? STATE[options.state] : AlertState.ALERT_STATE_UNSPECIFIED,
      deviceId: options.deviceId ?? '',
      unacknowledgedOnly: options.unacknowledged === true,
    });
    return { items: res.alerts, page: res.page };
  })
    .addOption(new Option('--state <state>', 'only alerts in this state').choices(Object.keys(STATE)))
    .option('--device-id <id>', 'only this device\'s alerts')
    .option('--unacknowledged', 'only alerts nobody acknowledged');

  idCommand(alerts, 'ack', 'acknowledge an alert', ['<id>', 'alert id'], async (connection, id, options) => {
    const res = await connection.call(connection.alerts, connection.alerts.acknowledgeAlert, { id });
    printOne(options.output, alertView, res.alert!);
  });

  idCommand(alerts, 'deliveries', 'the notifications of an alert (raise, repeats, resolve), newest first', ['<id>', 'alert id'], async (connection, id, options) => {
    const res = await connection.call(connection.alerts, connection.alerts.listAlertDeliveries, { alertId: id });
    printList(options.output, deliveryView, res.deliveries);
  });
}
