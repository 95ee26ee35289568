import { Command, Option } from 'commander';
import { RetentionPolicy } from '../../../gen/ts/iot/monitoring/v1/retention';
import { run } from '../command-context';
import { formatTime, printList, printOne, View } from '../output';

const days = (stored: number, effective: number) => (stored ? String(stored) : `${effective} (inherited)`);

const policyView: View<RetentionPolicy> = {
  columns: [
    { header: 'DEVICE-TYPE', value: (p) => p.deviceType || '(tenant default)' },
    { header: 'RAW-DAYS', value: (p) => days(p.rawDays, p.effectiveRawDays) },
    { header: 'ROLLUP-DAYS', value: (p) => days(p.rollupDays, p.effectiveRollupDays) },
    { header: 'NEXT-RAW-DROP', value: (p) => formatTime(p.nextRawDropTime) },
    { header: 'NEXT-ROLLUP-DROP', value: (p) => formatTime(p.nextRollupDropTime) },
    { header: 'UPDATED', value: (p) => formatTime(p.updateTime) },
  ],
  toJson: (p) => RetentionPolicy.toJSON(p),
};

function parseDays(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error('expected a whole number of days (0 inherits)');
  return n;
}

/** `retention list|get|set`: how long the tenant keeps raw points and rollups, per device type. */
export function retentionCommands(program: Command): void {
  const retention = program.command('retention').description('retention policies: how long raw points and rollups are kept, per tenant and device type');

  retention
    .command('list')
    .description('the tenant default and every device type with a policy, with the days in force and the next drop')
    .action((_o, command: Command) =>
      run(command, async (connection, options) => {
        const res = await connection.call(connection.retention, connection.retention.listRetentionPolicies, {});
        printList(options.output, policyView, res.policies);
      }),
    );

  retention
    .command('get')
    .description('the policy in force for the tenant, or one device type (--type)')
    .option('--type <device-type>', 'device type (default: the tenant default)')
    .action((_o, command: Command) =>
      run<{ type?: string }>(command, async (connection, options) => {
        const res = await connection.call(connection.retention, connection.retention.getRetentionPolicy, { deviceType: options.type ?? '' });
        printOne(options.output, policyView, res.policy!);
      }),
    );

  retention
    .command('set')
    .description('set the days of the tenant default, or of one device type (--type); 0 inherits, 0 and 0 removes the policy (admin)')
    .option('--type <device-type>', 'device type (default: the tenant default)')
    .addOption(new Option('--raw-days <n>', 'days raw points are kept').argParser(parseDays).default(0))
    .addOption(new Option('--rollup-days <n>', 'days rollups (history buckets) are kept').argParser(parseDays).default(0))
    .action((_o, command: Command) =>
      run<{ type?: string; rawDays: number; rollupDays: number }>(command, async (connection, options) => {
        const res = await connection.call(connection.retention, connection.retention.setRetentionPolicy, {
          policy: RetentionPolicy.fromPartial({ deviceType: options.type ?? '', rawDays: options.rawDays, rollupDays: options.rollupDays }),
        });
        printOne(options.output, policyView, res.policy!);
      }),
    );
}
