import { Command, Option } from 'commander';
import { Delivery, deliveryStateToJSON, DeliveryState, DryRunResult, NotificationChannel, Rule, RuleAction } from '../../../gen/ts/iot/monitoring/v1/rules';
import { UsageError } from '../cli-error';
import { deleteCommand, idCommand, listCommand, run } from '../command-context';
import { formatLabels, formatTime, printList, printOne, View } from '../output';
import { collectLabel, collectList, enumChoices, enumLabel, parseTime } from '../parse';

const DELIVERY_STATE = enumChoices(DeliveryState, 'DELIVERY_STATE_');

/** One action in a phrase: `webhook https://…`, `derive temp_c = (m.temp_f - 32.0) / 1.8`. */
function actionPhrase(a: RuleAction): string {
  if (a.derivedMetric) return `derive ${a.derivedMetric.metric} = ${a.derivedMetric.expression}`;
  if (a.republish) return `republish ${a.republish.topic}`;
  if (a.webhook) return `webhook ${a.webhook.url}`;
  if (a.notify) return `notify ${a.notify.channelId}`;
  return '?';
}

const ruleView: View<Rule> = {
  columns: [
    { header: 'ID', value: (r) => r.id },
    { header: 'NAME', value: (r) => r.name },
    { header: 'CONDITION', value: (r) => r.condition },
    { header: 'ACTIONS', value: (r) => r.actions.map(actionPhrase).join('; ') },
    { header: 'METRICS', value: (r) => r.source?.metrics.join(',') ?? '' },
    { header: 'DEVICES', value: (r) => r.source?.deviceIds.join(',') ?? '' },
    { header: 'TYPES', value: (r) => r.source?.deviceTypes.join(',') ?? '' },
    { header: 'LABELS', value: (r) => formatLabels(r.source?.labels ?? {}) },
    { header: 'ENABLED', value: (r) => (r.enabled ? 'yes' : 'no') },
    { header: 'MATCHED', value: (r) => String(r.stats?.matched ?? 0n) },
    { header: 'OK', value: (r) => String(r.stats?.actionsOk ?? 0n) },
    { header: 'FAILED', value: (r) => String(r.stats?.actionsFailed ?? 0n) },
    { header: 'DEAD', value: (r) => String(r.stats?.actionsDeadLettered ?? 0n) },
  ],
  toJson: (r) => Rule.toJSON(r),
};

/** How a delivery-log entry prints (rule actions, channel and alert notifications). */
export const deliveryView: View<Delivery> = {
  columns: [
    { header: 'TIME', value: (d) => formatTime(d.createTime) },
    { header: 'ACTION', value: (d) => d.actionKind },
    { header: 'STATE', value: (d) => enumLabel(deliveryStateToJSON(d.state), 'DELIVERY_STATE_') },
    { header: 'ATTEMPTS', value: (d) => String(d.attempts) },
    { header: 'DEVICE', value: (d) => d.deviceId },
    { header: 'MESSAGE', value: (d) => d.messageId },
    { header: 'ERROR', value: (d) => d.lastError },
    { header: 'WEBHOOK-ID', value: (d) => d.webhookId },
    { header: 'ALERT-EVENT', value: (d) => d.alertEvent },
  ],
  toJson: (d) => Delivery.toJSON(d),
};

const dryRunView: View<DryRunResult> = {
  columns: [
    { header: 'TIME', value: (r) => formatTime(r.time) },
    { header: 'DEVICE', value: (r) => r.deviceId },
    { header: 'MATCHED', value: (r) => (r.matched ? 'yes' : 'no') },
    { header: 'ERROR', value: (r) => r.error },
    { header: 'WOULD', value: (r) => r.actions.map((a) => `${a.kind} ${a.target}${a.point?.value ? `=${a.point.value.numberValue ?? a.point.value.boolValue ?? a.point.value.stringValue}` : ''}${a.error ? ` (${a.error})` : ''}`).join('; ') },
  ],
  toJson: (r) => DryRunResult.toJSON(r),
};

const channelView: View<NotificationChannel> = {
  columns: [
    { header: 'ID', value: (c) => c.id },
    { header: 'NAME', value: (c) => c.name },
    { header: 'KIND', value: (c) => (c.webhook ? 'webhook' : c.email ? 'email' : 'nats') },
    { header: 'TARGET', value: (c) => c.webhook?.url ?? c.email?.to.join(',') ?? c.nats?.topic ?? '' },
    { header: 'ATTEMPTS', value: (c) => String(c.retry?.maxAttempts ?? '') },
    { header: 'PER-MINUTE', value: (c) => String(c.rateLimitPerMinute) },
  ],
  toJson: (c) => NotificationChannel.toJSON(c),
};

interface RuleOptions {
  name: string;
  when: string;
  metric?: string[];
  deviceId?: string[];
  group?: string[];
  deviceType?: string[];
  label?: Record<string, string>;
  derive?: string[];
  republish?: string[];
  webhook?: string[];
  notify?: string[];
  disabled?: boolean;
}

/** The rule a `rules create` command line describes. */
function ruleOf(o: RuleOptions): Rule {
  const actions: RuleAction[] = [
    ...(o.derive ?? []).map((d) => {
      const at = d.indexOf('=');
      if (at <= 0) throw new UsageError(`--derive ${JSON.stringify(d)} is not <metric>=<CEL expression>`);
      return { derivedMetric: { metric: d.slice(0, at).trim(), expression: d.slice(at + 1).trim() } };
    }),
    ...(o.republish ?? []).map((topic) => ({ republish: { topic } })),
    ...(o.webhook ?? []).map((url) => ({ webhook: { url, secret: '' } })),
    ...(o.notify ?? []).map((channelId) => ({ notify: { channelId, title: '' } })),
  ];
  if (actions.length === 0) throw new UsageError('give at least one action: --derive, --republish, --webhook or --notify');
  return Rule.fromPartial({
    name: o.name,
    condition: o.when,
    source: { metrics: o.metric ?? [], deviceIds: o.deviceId ?? [], deviceTypes: o.deviceType ?? [], labels: o.label ?? {}, groupIds: o.group ?? [] },
    actions,
    enabled: !o.disabled,
  });
}

const repeatable = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** `rules list|get|create|delete|dry-run|deliveries`, `rules channels list|create|delete|deliveries`. */
export function ruleCommands(program: Command): void {
  const rules = program.command('rules').description('rules: CEL conditions on telemetry and their actions (derived metrics, republish, webhooks, notifications)');

  listCommand(rules, 'list rules with their counters', ruleView, async (connection, page) => {
    const res = await connection.call(connection.rules, connection.rules.listRules, { page });
    return { items: res.rules, page: res.page };
  });

  idCommand(rules, 'get', 'show a rule and its counters', ['<id>', 'rule id'], async (connection, id, options) => {
    const res = await connection.call(connection.rules, connection.rules.getRule, { id });
    printOne(options.output, ruleView, res.rule!);
  });

  rules
    .command('create')
    .description('create a rule; webhook secrets are generated and shown once (use -o json)')
    .requiredOption('--name <name>', 'rule name (a subject token)')
    .requiredOption('--when <cel>', 'CEL condition over m (metric → value), device (id, type, labels) and depth, such as "m.temp > 30.0"')
    .addOption(new Option('--metric <metric>', 'messages carrying this metric (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--device-id <id>', 'only this device (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--device-type <type>', 'only devices of this type (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--label <key=value>', 'only devices with this label, as a group selects them (repeatable)').argParser(collectLabel))
    .addOption(new Option('--group <id>', 'only devices that are members of this device group when they send (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--derive <metric=cel>', 'store a derived metric computed by a CEL expression (repeatable)').argParser(repeatable))
    .addOption(new Option('--republish <topic>', 'publish the points to iot.<tenant>.evt.rule.<topic> (repeatable)').argParser(repeatable))
    .addOption(new Option('--webhook <url>', 'POST the points, signed (Standard Webhooks) (repeatable)').argParser(repeatable))
    .addOption(new Option('--notify <channel-id>', 'send a notification through a channel (repeatable)').argParser(repeatable))
    .option('--disabled', 'create it disabled')
    .action((_o, command: Command) =>
      run<RuleOptions>(command, async (connection, options) => {
        const res = await connection.call(connection.rules, connection.rules.createRule, { rule: ruleOf(options) });
        printOne(options.output, ruleView, res.rule!);
      }),
    );

  deleteCommand(rules, 'delete a rule', 'rule', ['<id>', 'rule id'], (connection, id) => connection.call(connection.rules, connection.rules.deleteRule, { id }));

  rules
    .command('dry-run')
    .description('evaluate a stored rule against stored points and show what it would have done (sends nothing)')
    .argument('<id>', 'rule id')
    .addOption(new Option('--since <time>', 'from (RFC 3339 or a duration ago such as 1h)').argParser((v) => parseTime(v)))
    .action((id: string, _o, command: Command) =>
      run<{ since?: Date }>(command, async (connection, options) => {
        const end = new Date();
        const res = await connection.call(connection.rules, connection.rules.dryRunRule, { ruleId: id, range: options.since ? { start: options.since, end } : undefined, maxMessages: 0 });
        printList(options.output, dryRunView, res.results);
      }),
    );

  listCommand<Delivery, { rule: string; state?: string }>(
    rules,
    'the final outcome of a rule’s webhook and notify actions, and its dead letters, newest first',
    deliveryView,
    async (connection, page, options) => {
      const res = await connection.call(connection.rules, connection.rules.listRuleDeliveries, { ruleId: options.rule, page, state: options.state ? DELIVERY_STATE[options.state] : DeliveryState.DELIVERY_STATE_UNSPECIFIED });
      return { items: res.deliveries, page: res.page };
    },
    'deliveries',
  )
    .requiredOption('--rule <id>', 'rule id')
    .addOption(new Option('--state <state>', 'only this state').choices(Object.keys(DELIVERY_STATE)));

  const channels = rules.command('channels').description('notification channels: webhook, e-mail, NATS subject');
  listCommand(channels, 'list notification channels', channelView, async (connection, page) => {
    const res = await connection.call(connection.notificationChannels, connection.notificationChannels.listNotificationChannels, { page });
    return { items: res.channels, page: res.page };
  });

  channels
    .command('create')
    .description('create a channel (exactly one of --webhook, --email, --nats)')
    .requiredOption('--name <name>', 'channel name')
    .option('--webhook <url>', 'POST notifications, signed (the secret is shown once, with -o json)')
    .addOption(new Option('--email <address>', 'e-mail these addresses (repeatable or comma-separated)').argParser(collectList))
    .option('--nats <topic>', 'publish to iot.<tenant>.evt.notification.<topic>')
    .addOption(new Option('--max-attempts <n>', 'attempts before a delivery is dead-lettered').argParser((v) => Number.parseInt(v, 10)))
    .addOption(new Option('--per-minute <n>', 'rate limit').argParser((v) => Number.parseInt(v, 10)))
    .action((_o, command: Command) =>
      run<{ name: string; webhook?: string; email?: string[]; nats?: string; maxAttempts?: number; perMinute?: number }>(command, async (connection, o) => {
        const kinds = [o.webhook, o.email, o.nats].filter((k) => k !== undefined).length;
        if (kinds !== 1) throw new UsageError('give exactly one of --webhook, --email, --nats');
        const channel = NotificationChannel.fromPartial({
          name: o.name,
          webhook: o.webhook ? { url: o.webhook } : undefined,
          email: o.email ? { to: o.email } : undefined,
          nats: o.nats ? { topic: o.nats } : undefined,
          retry: o.maxAttempts ? { maxAttempts: o.maxAttempts } : undefined,
          rateLimitPerMinute: o.perMinute ?? 0,
        });
        const res = await connection.call(connection.notificationChannels, connection.notificationChannels.createNotificationChannel, { channel });
        printOne(o.output, channelView, res.channel!);
      }),
    );

  deleteCommand(channels, 'delete a channel', 'notification channel', ['<id>', 'channel id'], (connection, id) => connection.call(connection.notificationChannels, connection.notificationChannels.deleteNotificationChannel, { id }));

  idCommand(channels, 'deliveries', 'a channel’s delivery log, newest first', ['<id>', 'channel id'], async (connection, id, options) => {
    const res = await connection.call(connection.notificationChannels, connection.notificationChannels.listChannelDeliveries, { channelId: id });
    printList(options.output, deliveryView, res.deliveries);
  });
}
