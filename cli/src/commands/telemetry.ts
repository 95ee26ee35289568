import fs from 'node:fs';
import { Command, Option } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { durationToMs, msToDuration } from '@iot-mesh/runtime/client';
import { ExportFormat, ExportPointsResponse } from '../../../gen/ts/iot/monitoring/v1/export';
import { AggregateBucket, Aggregation, aggregationToJSON, DataPoint, Series, Bucket, StreamLiveResponse, Value } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { CliError, UsageError } from '../cli-error';
import { run } from '../command-context';
import { EXIT } from '../exit-codes';
import { formatTime, printList, View } from '../output';
import { collectLabel, collectList, enumChoices, enumLabel, parseDuration, parsePositiveInt, parseTime } from '../parse';

const AGGREGATION = enumChoices(Aggregation, 'AGGREGATION_');

/** A sample's value as text: the number, `true`/`false`, or the string. */
export function formatValue(value: Value | undefined): string {
  if (value?.numberValue !== undefined) return String(value.numberValue);
  if (value?.boolValue !== undefined) return String(value.boolValue);
  return value?.stringValue ?? '';
}

/** How a data point prints. */
export const pointView: View<DataPoint> = {
  columns: [
    { header: 'DEVICE', value: (p) => p.deviceId },
    { header: 'METRIC', value: (p) => p.metric },
    { header: 'TIME', value: (p) => formatTime(p.time) },
    { header: 'VALUE', value: (p) => formatValue(p.value) },
  ],
  toJson: (p) => DataPoint.toJSON(p),
};

/** One bucket of one series, flattened for table and CSV output. */
interface BucketRow {
  series: Series;
  bucket: Bucket;
}

const bucketView: View<BucketRow> = {
  columns: [
    { header: 'METRIC', value: (r) => r.series.metric },
    { header: 'AGGREGATION', value: (r) => enumLabel(aggregationToJSON(r.series.aggregation), 'AGGREGATION_') },
    { header: 'START', value: (r) => formatTime(r.bucket.startTime) },
    { header: 'VALUE', value: (r) => String(r.bucket.value) },
    { header: 'COUNT', value: (r) => String(r.bucket.count) },
  ],
  toJson: (r) => ({ metric: r.series.metric, aggregation: aggregationToJSON(r.series.aggregation), ...(Bucket.toJSON(r.bucket) as object) }),
};

/** One bucket of a group history: across the group (`device` empty) or of one member. */
interface GroupBucketRow {
  device: string;
  bucket: AggregateBucket;
}

const groupBucketView: View<GroupBucketRow> = {
  columns: [
    { header: 'DEVICE', value: (r) => r.device || '(group)' },
    { header: 'START', value: (r) => formatTime(r.bucket.startTime) },
    { header: 'MIN', value: (r) => String(r.bucket.min) },
    { header: 'MAX', value: (r) => String(r.bucket.max) },
    { header: 'AVG', value: (r) => String(r.bucket.avg) },
    { header: 'SUM', value: (r) => String(r.bucket.sum) },
    { header: 'COUNT', value: (r) => String(r.bucket.count) },
    { header: 'DEVICES', value: (r) => String(r.bucket.devices) },
  ],
  toJson: (r) => ({ deviceId: r.device, ...(AggregateBucket.toJSON(r.bucket) as object) }),
};

/** Adds --from/--to (ISO 8601, now, or a duration ago) to a command. */
export function timeRangeOptions(command: Command, defaultFrom: string): Command {
  return command
    .addOption(new Option('--from <time>', 'start: ISO 8601, now, or a duration ago (24h, 7d)').default(defaultFrom))
    .addOption(new Option('--to <time>', 'end (exclusive), same forms').default('now'));
}

/** The --from/--to of {@link timeRangeOptions} as a range; a usage error when they are not a range. */
export function timeRange(options: { from: string; to: string }): { start: Date; end: Date } {
  const now = Date.now();
  const parse = (flag: string, v: string) => {
    try {
      return parseTime(v, now);
    } catch (err) {
      throw new UsageError(`option '${flag}': ${(err as Error).message}`);
    }
  };
  const range = { start: parse('--from', options.from), end: parse('--to', options.to) };
  if (range.start >= range.end) throw new UsageError('--from must be before --to');
  return range;
}

/** One streamed point as a line: NDJSON for json, a CSV row for csv, aligned-enough columns for table. */
function pointLine(format: string, p: DataPoint): string {
  if (format === 'json') return JSON.stringify(DataPoint.toJSON(p)) + '\n';
  const cells = pointView.columns.map((c) => c.value(p));
  if (format === 'csv') return stringify([cells]);
  return `${formatTime(p.time).padEnd(24)}  ${p.deviceId.padEnd(20)}  ${p.metric.padEnd(16)}  ${formatValue(p.value)}\n`;
}

/** Writes to a file or stdout, waiting for drain so memory stays flat however much is exported. */
class Sink {
  private readonly stream: NodeJS.WritableStream;

  constructor(readonly file: string | undefined) {
    this.stream = file ? fs.createWriteStream(`${file}.partial`, { mode: 0o644 }) : process.stdout;
  }

  /** Writes one chunk, resolving once the stream can take more. */
  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length > 0 && !this.stream.write(chunk)) await new Promise((resolve) => this.stream.once('drain', resolve));
  }


  /** Ends the file and moves it into place, so a half-written export never carries the final name. */
  async finish(): Promise<void> {
    if (!this.file) return;
    await new Promise<void>((resolve, reject) => this.stream.end(() => resolve()).on('error', reject));
    fs.renameSync(`${this.file}.partial`, this.file);
  }
}

/** A byte count for people: 812 B, 4.2 MB. */
function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** Progress on stderr: one rewritten line on a terminal, a line every few seconds otherwise. */
class Progress {
  private last = 0;
  constructor(private readonly quiet: boolean) {}

  update(text: string, final = false): void {
    if (this.quiet) return;
    if (process.stderr.isTTY) return void process.stderr.write(`\r\x1b[K${text}${final ? '\n' : ''}`);
    if (!final && Date.now() - this.last < 2000) return;
    this.last = Date.now();
    process.stderr.write(`${text}\n`);
  }
}

/** `telemetry latest|history|tail` and `export`. */
export function telemetryCommands(program: Command): void {
  const telemetry = program.command('telemetry').description('stored and live telemetry');

  telemetry
    .command('latest')
    .description('the newest value of each metric of the given devices (all devices when none given, capped at 1000)')
    .argument('[device-ids...]', 'device ids')
    .addOption(new Option('--metric <name>', 'only this metric (repeatable, or comma-separated)').argParser(collectList))
    .action((deviceIds: string[], _o, command: Command) =>
      run<{ metric?: string[] }>(command, async (connection, options) => {
        const res = await connection.call(connection.telemetry, connection.telemetry.getLatest, { deviceIds, metrics: options.metric ?? [] });
        printList(options.output, pointView, res.points);
      }),
    );

  timeRangeOptions(
    telemetry
      .command('history')
      .description("one device's metrics aggregated into time buckets, or with --group one metric across a device group's members (empty buckets are left out)")
      .argument('[device-id]', 'device id (not with --group)')
      .addOption(new Option('--metric <name>', 'metric (repeatable or comma-separated; at least one; exactly one with --group)').argParser(collectList).makeOptionMandatory())
      .addOption(new Option('--group <id>', "a device group: per bucket min, max, avg, sum, points and devices reporting across its members (QueryGroupHistory)"))
      .addOption(new Option('--device-type <name>', 'with --group: only its members of this device type'))
      .addOption(new Option('--per-device', 'with --group: also one series per member device'))
      .addOption(new Option('--bucket <duration>', 'bucket width, such as 5m (default: the server fits --max-points)').argParser(parseDuration))
      .addOption(new Option('--max-points <n>', 'at most this many buckets per series when --bucket is not given').argParser(parsePositiveInt))
      .addOption(new Option('--aggregation <name>', `aggregation (repeatable or comma-separated): ${Object.keys(AGGREGATION).join(', ')}; default avg; not with --group, which prints all of them`).argParser(collectList)),
    '24h',
  ).action((deviceId: string | undefined, _o, command: Command) =>
    run<{ metric: string[]; group?: string; deviceType?: string; perDevice?: boolean; bucket?: number; maxPoints?: number; aggregation?: string[]; from: string; to: string }>(command, async (connection, options) => {
      const bucketWidth = options.bucket !== undefined ? msToDuration(options.bucket) : undefined;
      const printWidth = (width: typeof bucketWidth) => {
        if (options.output !== 'json') process.stderr.write(`bucket width ${(durationToMs(width) ?? 0) / 1000} s\n`);
      };
      if (options.group !== undefined) {
        if (deviceId !== undefined) throw new UsageError('name a device or --group, not both');
        if (options.metric.length !== 1) throw new UsageError("option '--metric': exactly one metric with --group");
        if (options.aggregation) throw new UsageError("option '--aggregation': not with --group (every aggregate is printed)");
        const res = await connection.call(connection.telemetry, connection.telemetry.queryGroupHistory, {
          groupId: options.group,
          deviceType: options.deviceType ?? '',
          metric: options.metric[0],
          timeRange: timeRange(options),
          bucketWidth,
          maxPoints: options.maxPoints ?? 0,
          perDevice: options.perDevice ?? false,
        });
        printWidth(res.bucketWidth);
        if (options.output !== 'json') process.stderr.write(`${res.memberCount} member devices\n`);
        const rows = [...res.buckets.map((bucket) => ({ device: '', bucket })), ...res.devices.flatMap((d) => d.buckets.map((bucket) => ({ device: d.deviceId, bucket })))];
        return printList(options.output, groupBucketView, rows);
      }
      if (deviceId === undefined) throw new UsageError('name a device, or a group with --group');
      if (options.deviceType !== undefined || options.perDevice) throw new UsageError("options '--device-type' and '--per-device' go with --group");
      const aggregations = (options.aggregation ?? []).map((a) => {
        if (!(a in AGGREGATION)) throw new UsageError(`option '--aggregation': unknown ${JSON.stringify(a)}; one of ${Object.keys(AGGREGATION).join(', ')}`);
        return AGGREGATION[a];
      });
      const res = await connection.call(connection.telemetry, connection.telemetry.queryHistory, {
        deviceId,
        metrics: options.metric,
        timeRange: timeRange(options),
        bucketWidth,
        maxPoints: options.maxPoints ?? 0,
        aggregations,
      });
      printWidth(res.bucketWidth);
      printList(
        options.output,
        bucketView,
        res.series.flatMap((series) => series.buckets.map((bucket) => ({ series, bucket }))),
      );
    }),
  );

  telemetry
    .command('tail')
    .description('print points live as devices send them, until Ctrl-C (or --count points)')
    .argument('[device-ids...]', 'device ids (all matching --label, or the whole tenant, when none)')
    .addOption(new Option('--label <key=value>', 'only devices with this label (repeatable)').argParser(collectLabel))
    .addOption(new Option('--group <id>', 'only devices that are members of this device group when they send (repeatable or comma-separated; no device ids then)').argParser(collectList))
    .addOption(new Option('--metric <name>', 'only this metric (repeatable or comma-separated)').argParser(collectList))
    .addOption(new Option('--count <n>', 'stop after this many points').argParser(parsePositiveInt))
    .action((deviceIds: string[], _o, command: Command) =>
      run<{ label?: Record<string, string>; group?: string[]; metric?: string[]; count?: number }>(command, async (connection, options) => {
        const stream = await connection.stream(connection.telemetry, connection.telemetry.streamLive, { deviceIds, labels: options.label ?? {}, groupIds: options.group ?? [], metrics: options.metric ?? [] });
        let seen = 0;
        let stopped = false;
        const stop = () => {
          stopped = true;
          stream.cancel();
        };
        process.once('SIGINT', stop);
        if (options.output === 'csv') process.stdout.write(stringify([pointView.columns.map((c) => c.header)]));
        else if (options.output === 'table') process.stderr.write('waiting for points (Ctrl-C to stop)\n');
        try {
          await new Promise<void>((resolve, reject) => {
            stream.on('data', (frame: StreamLiveResponse) => {
              if (frame.droppedPoints > 0n) process.stderr.write(`warning: ${frame.droppedPoints} points dropped (reading too slowly)\n`);
              for (const point of frame.points) {
                if (stopped) break;
                process.stdout.write(pointLine(options.output, point));
                if (options.count !== undefined && ++seen >= options.count) stop();
              }
            });
            stream.on('error', (err) => (stopped ? resolve() : reject(err)));
            stream.on('end', () => resolve());
          });
        } finally {
          process.removeListener('SIGINT', stop);
        }
      }),
    );

  timeRangeOptions(
    program
      .command('export')
      .description('stream stored points (or history buckets) of devices, a label group or a device type as CSV, NDJSON or Parquet, in constant memory (ExportPoints); progress on stderr')
      .argument('[device-ids...]', 'device ids (else every device matching --label and --type)')
      .addOption(new Option('--label <key=value>', 'devices with this label, e.g. a group\'s selector (repeatable)').argParser(collectLabel))
      .option('--type <device-type>', 'devices of this device type')
      .option('--group <id>', 'devices that are members of this device group when the export starts')
      .addOption(new Option('--metric <name>', 'only this metric (repeatable or comma-separated)').argParser(collectList))
      .addOption(new Option('--format <format>', 'file format').choices(['csv', 'ndjson', 'parquet']).default('csv'))
      .addOption(new Option('--bucket <duration>', 'history buckets of this width (count, min, max, avg, sum, last) instead of raw points').argParser(parseDuration))
      .option('--file <path>', 'write here (atomically: <path>.partial until done) instead of stdout')
      .option('--quiet', 'no progress on stderr'),
    '24h',
  ).action((deviceIds: string[], _o, command: Command) =>
    run<{ label?: Record<string, string>; type?: string; group?: string; metric?: string[]; format: 'csv' | 'ndjson' | 'parquet'; bucket?: number; file?: string; quiet?: boolean; from: string; to: string }>(command, async (connection, options) => {
      if (deviceIds.length === 0 && !options.label && !options.type && !options.group) throw new UsageError('name device ids, --label, --type or --group');
      if (options.format === 'parquet' && !options.file && process.stdout.isTTY) throw new UsageError('Parquet is binary: use --file, or redirect stdout');
      const format = { csv: ExportFormat.EXPORT_FORMAT_CSV, ndjson: ExportFormat.EXPORT_FORMAT_NDJSON, parquet: ExportFormat.EXPORT_FORMAT_PARQUET }[options.format];
      const stream = await connection.stream(connection.exports, connection.exports.exportPoints, {
        deviceIds,
        labels: options.label ?? {},
        deviceType: options.type ?? '',
        groupId: options.group ?? '',
        metrics: options.metric ?? [],
        timeRange: timeRange(options),
        format,
        bucketWidth: options.bucket !== undefined ? msToDuration(options.bucket) : undefined,
      });
      const sink = new Sink(options.file);
      const progress = new Progress(options.quiet === true);
      let interrupted = false;
      const interrupt = () => {
        interrupted = true;
        stream.cancel();
      };
      process.once('SIGINT', interrupt);
      let bytes = 0;
      try {
        try {
          // Reading one chunk at a time, waiting for the sink: the server waits in turn, so memory stays flat on both ends.
          for await (const message of stream as AsyncIterable<ExportPointsResponse>) {
            await sink.write(message.chunk);
            bytes += message.chunk.length;
            progress.update(`exported ${formatBytes(bytes)}`);
          }
        } catch (err) {
          if (!interrupted) throw err;
        }
        if (interrupted) throw new CliError(EXIT.interrupted, `interrupted after ${formatBytes(bytes)}${options.file ? `; partial output left in ${options.file}.partial` : ''}`);
        await sink.finish();
        progress.update(`exported ${formatBytes(bytes)}${options.file ? ` to ${options.file}` : ''}`, true);
      } finally {
        process.removeListener('SIGINT', interrupt);
      }
    }),
  );
}
