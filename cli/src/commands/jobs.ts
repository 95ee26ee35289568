import { Command, Option } from 'commander';
import { Job, JobCounts, JobDevice, JobDeviceState, jobDeviceStateToJSON, jobStateToJSON, WatchJobResponse } from '../../../gen/ts/iot/device/v1/jobs';
import { UsageError } from '../cli-error';
import { idCommand, listCommand, run } from '../command-context';
import { formatTime, printOne, View } from '../output';
import { collectList, enumChoices, enumLabel, parseDuration, parsePositiveInt } from '../parse';

/** `120/200 done (110 ok, 6 failed, 4 timed out, 0 cancelled)` for a job's (or a campaign's) counts. */
export function countsText(c: JobCounts | undefined): string {
  if (!c) return '';
  return `${c.succeeded + c.failed + c.timedOut + c.cancelled}/${c.total} done (${c.succeeded} ok, ${c.failed} failed, ${c.timedOut} timed out, ${c.cancelled} cancelled)`;
}

const jobView: View<Job> = {
  columns: [
    { header: 'ID', value: (j) => j.id },
    { header: 'ACTION', value: (j) => (j.command ? `command ${j.command.name}` : 'desired state') },
    { header: 'TARGET', value: (j) => (j.groupId ? `group ${j.groupId}` : 'device list') },
    { header: 'STATE', value: (j) => enumLabel(jobStateToJSON(j.state), 'JOB_STATE_') },
    { header: 'PROGRESS', value: (j) => countsText(j.counts) },
    { header: 'REASON', value: (j) => j.reason },
    { header: 'CREATED', value: (j) => formatTime(j.createTime) },
  ],
  toJson: (j) => Job.toJSON(j),
};

const jobDeviceView: View<JobDevice> = {
  columns: [
    { header: 'DEVICE', value: (d) => d.deviceId },
    { header: 'STATE', value: (d) => enumLabel(jobDeviceStateToJSON(d.state), 'JOB_DEVICE_STATE_') },
    { header: 'REASON', value: (d) => d.reason },
    { header: 'SENT', value: (d) => formatTime(d.sentTime) },
    { header: 'FINISHED', value: (d) => formatTime(d.finishTime) },
  ],
  toJson: (d) => JobDevice.toJSON(d),
};

/** A JSON object option's value. */
function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new UsageError(`not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('must be a JSON object');
  return parsed as Record<string, unknown>;
}

const DEVICE_STATES = enumChoices(JobDeviceState, 'JOB_DEVICE_STATE_');

interface CreateOptions {
  command?: string;
  params?: string;
  desired?: string;
  answerTimeout?: number;
  group?: string;
  devices?: string[];
  maxInFlight?: number;
  maxPerSecond?: number;
  abortPercent?: number;
  abortMinFinished?: number;
  expires?: number;
  description: string;
}

/** `jobs …`: a command or desired-state change for a group or a list of devices. */
export function jobCommands(program: Command): void {
  const jobs = program.command('jobs').description('jobs: one command or desired-state change for many devices, with per-device state');
  jobs
    .command('create')
    .description('start a job over a group (--group) or devices (--devices); offline devices get it when they connect, until it expires')
    .option('--command <name>', 'command to send')
    .option('--params <json>', 'command parameters as a JSON object')
    .addOption(new Option('--answer-timeout <duration>', 'how long each device has to answer (default 5s)').argParser(parseDuration))
    .option('--desired <json>', 'instead of a command: keys merged into each device\'s desired state')
    .option('--group <id>', 'group id')
    .addOption(new Option('--devices <ids>', 'device ids (comma-separated or repeated)').argParser(collectList))
    .addOption(new Option('--max-in-flight <n>', 'most devices with the step unanswered at once (default 50)').argParser(parsePositiveInt))
    .addOption(new Option('--max-per-second <n>', 'most steps started per second').argParser(parsePositiveInt))
    .addOption(new Option('--abort-percent <n>', 'abort once more than this % of finished devices failed').argParser(parsePositiveInt))
    .addOption(new Option('--abort-min-finished <n>', 'judge the abort threshold once this many devices finished').argParser(parsePositiveInt))
    .addOption(new Option('--expires <duration>', 'how long offline devices are waited for (default 24h)').argParser(parseDuration))
    .option('--description <text>', 'what the job is for', '')
    .action((_o, command: Command) =>
      run<CreateOptions>(command, async (connection, o) => {
        if (!o.command === !o.desired) throw new UsageError('give one of --command and --desired');
        const job = Job.fromPartial({
          description: o.description,
          command: o.command ? { name: o.command, params: o.params ? jsonObject(o.params) : undefined, timeout: o.answerTimeout ? { seconds: BigInt(Math.floor(o.answerTimeout / 1000)), nanos: (o.answerTimeout % 1000) * 1e6 } : undefined } : undefined,
          desired: o.desired ? { patch: jsonObject(o.desired) } : undefined,
          groupId: o.group ?? '',
          deviceIds: o.devices ?? [],
          rollout: { maxInFlight: o.maxInFlight ?? 0, maxPerSecond: o.maxPerSecond ?? 0, abortThresholdPercent: o.abortPercent ?? 0, abortMinFinished: o.abortMinFinished ?? 0 },
          expireTime: o.expires ? new Date(Date.now() + o.expires) : undefined,
        });
        printOne(o.output, jobView, (await connection.call(connection.jobs, connection.jobs.createJob, { job })).job!);
      }),
    );
  listCommand(jobs, 'list jobs, newest first', jobView, async (connection, page) => {
    const res = await connection.call(connection.jobs, connection.jobs.listJobs, { page });
    return { items: res.jobs, page: res.page };
  });
  idCommand(jobs, 'get', 'show one job and its progress', ['<id>', 'job id'], async (connection, id, options) => {
    printOne(options.output, jobView, (await connection.call(connection.jobs, connection.jobs.getJob, { id })).job!);
  });
  const devices = listCommand<JobDevice, { job: string; state?: JobDeviceState }>(jobs, 'each device of a job and its state', jobDeviceView, async (connection, page, options) => {
    const res = await connection.call(connection.jobs, connection.jobs.listJobDevices, { id: options.job, state: options.state ?? JobDeviceState.JOB_DEVICE_STATE_UNSPECIFIED, page });
    return { items: res.devices, page: res.page };
  }, 'devices');
  devices.requiredOption('--job <id>', 'job id');
  devices.addOption(new Option('--state <state>', 'only devices in this state').choices(Object.keys(DEVICE_STATES)).argParser((v) => DEVICE_STATES[v]));
  idCommand(jobs, 'cancel', 'stop a job: queued devices are cancelled, sent ones finish', ['<id>', 'job id'], async (connection, id, options) => {
    printOne(options.output, jobView, (await connection.call(connection.jobs, connection.jobs.cancelJob, { id })).job!);
  });
  idCommand(jobs, 'watch', 'print the job\'s progress as it changes, until it ends', ['<id>', 'job id'], async (connection, id, options) => {
    const stream = await connection.stream(connection.jobs, connection.jobs.watchJob, { id });
    process.once('SIGINT', () => stream.cancel());
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (r: WatchJobResponse) => {
        const j = r.job!;
        if (options.output === 'json') process.stdout.write(`${JSON.stringify(Job.toJSON(j))}\n`);
        else process.stdout.write(`${enumLabel(jobStateToJSON(j.state), 'JOB_STATE_')} ${countsText(j.counts)}${j.reason ? ` ${j.reason}` : ''}\n`);
      });
      stream.on('error', (err: { code?: number }) => (err.code === 1 ? resolve() : reject(err)));
      stream.on('end', () => resolve());
    });
  });
}
