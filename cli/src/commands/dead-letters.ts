import { Command } from 'commander';
import { DeadLetter, DeadLetterReasonCount } from '../../../gen/ts/iot/monitoring/v1/dead_letters';
import { UsageError } from '../cli-error';
import { listCommand, run } from '../command-context';
import { formatTime, printList, printOne, View } from '../output';
import { timeRange, timeRangeOptions } from './telemetry';

const deadLetterView: View<DeadLetter> = {
  columns: [
    { header: 'SEQUENCE', value: (d) => String(d.sequence) },
    { header: 'DEVICE', value: (d) => d.deviceId },
    { header: 'REASON', value: (d) => d.reason },
    { header: 'SQLSTATE', value: (d) => d.sqlstate },
    { header: 'MESSAGE ID', value: (d) => d.messageId },
    { header: 'RECEIVED', value: (d) => formatTime(d.receiveTime) },
    { header: 'SIZE', value: (d) => `${d.size}${d.truncated ? ' (truncated)' : ''}` },
    { header: 'DETAIL', value: (d) => d.detail },
  ],
  toJson: (d) => DeadLetter.toJSON(d),
};

/** `dead-letters list|count|replay`: refused telemetry, with the reason, and sending it back after a fix. */
export function deadLetterCommands(program: Command): void {
  const deadLetters = program.command('dead-letters').description('telemetry the platform refused (with the reason), and replaying it after a fix');

  listCommand<DeadLetter, { deviceId?: string; reason?: string }>(deadLetters, 'list dead letters, oldest first', deadLetterView, async (connection, page, options) => {
    const res = await connection.call(connection.deadLetters, connection.deadLetters.listDeadLetters, { page, deviceId: options.deviceId ?? '', reason: options.reason ?? '' });
    return { items: res.deadLetters, page: res.page };
  })
    .option('--device-id <id>', "only this device's dead letters")
    .option('--reason <reason>', 'only this reason (unknown_device, malformed, oversize, store_rejected, …)');

  timeRangeOptions(
    deadLetters
      .command('count')
      .description('dead letters per reason over a time window (when they were dead-lettered), the most frequent first')
      .option('--device-id <id>', "only this device's dead letters"),
    '24h',
  ).action((_o, command: Command) =>
    run<{ from: string; to: string; deviceId?: string }>(command, async (connection, options) => {
      const res = await connection.call(connection.deadLetters, connection.deadLetters.countDeadLetters, { timeRange: timeRange(options), deviceId: options.deviceId ?? '' });
      const view: View<DeadLetterReasonCount> = {
        columns: [
          { header: 'REASON', value: (c) => c.reason },
          { header: 'COUNT', value: (c) => String(c.count) },
        ],
        toJson: (c) => DeadLetterReasonCount.toJSON(c),
      };
      printList(options.output, view, res.counts);
      if (res.truncated) process.stderr.write('only the oldest 100,000 dead letters of the window were counted\n');
    }),
  );

  deadLetters
    .command('replay')
    .description('publish dead letters into ingest again (after the fix) and remove them from the dead letters')
    .argument('<sequence...>', 'sequences from `dead-letters list`')
    .action((sequences: string[], _o, command: Command) =>
      run(command, async (connection, options) => {
        const parsed = sequences.map((s) => {
          if (!/^[1-9][0-9]{0,15}$/.test(s)) throw new UsageError(`"${s}" is not a dead-letter sequence`);
          return BigInt(s);
        });
        const res = await connection.call(connection.deadLetters, connection.deadLetters.replayDeadLetters, { sequences: parsed });
        printOne(
          options.output,
          {
            columns: [
              { header: 'REPLAYED', value: (r) => String(r.replayedCount) },
              { header: 'NOT FOUND', value: (r) => r.notFoundSequences.join(',') },
              { header: 'TRUNCATED', value: (r) => r.truncatedSequences.join(',') },
            ],
            toJson: (r) => ({ replayedCount: r.replayedCount, notFoundSequences: r.notFoundSequences.map(String), truncatedSequences: r.truncatedSequences.map(String) }),
          },
          res,
        );
      }),
    );
}
