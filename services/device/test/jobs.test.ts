import { status } from '@grpc/grpc-js';
import { connect, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { Client } from 'pg';
import { insecureClient, serverStream, unary } from '@iot-mesh/runtime';
import { Device, DeviceCredential, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { DeviceType, DeviceTypeServiceClient } from '../../../gen/ts/iot/device/v1/device_types';
import { GroupServiceClient } from '../../../gen/ts/iot/device/v1/groups';
import { Job, JobDevice, JobDeviceState, JobServiceClient, JobState } from '../../../gen/ts/iot/device/v1/jobs';
import { TwinServiceClient } from '../../../gen/ts/iot/device/v1/twin';
import { startTestService, TestService } from '../../../testing/services';
import { TestTenant } from '../../../testing/signing';
import { deviceService } from '../src/main';
import { DeviceClients, deviceClients, DeviceHarness, eventually, failure, startDeviceHarness } from './harness';

jest.setTimeout(90_000);

let h: DeviceHarness;
let t: TestTenant;
/** The device service the clients below talk to (replaced by the restart). */
let service: TestService<never> | undefined;
let jobs: JobServiceClient;
/** Device clients of the same instance. */
let clients: DeviceClients;
const connections: NatsConnection[] = [];
/** How many commands each device received, by device id. */
const received = new Map<string, number>();

beforeAll(async () => {
  h = await startDeviceHarness({ env: { DEVICE_CREDENTIAL_DEFAULT_KIND: 'nats' } });
  t = await h.signing.createTenant();
  jobs = insecureClient(JobServiceClient, h.device.address);
  clients = h.clients;
});
afterAll(async () => {
  jobs?.close();
  if (clients !== h?.clients) clients?.close();
  for (const nc of connections) await nc.close().catch(() => undefined);
  await service?.stop();
  await h?.stop();
});

const op = () => ({ authorization: t.operator.authorization });
const viewer = () => ({ authorization: t.viewer.authorization });

type Behaviour = 'ok' | 'fail' | 'slow' | 'silent';

/** Creates devices `ids` (labelled `labels`) with NATS credentials. */
async function createDevices(ids: string[], labels: Record<string, string>, deviceTypeId = ''): Promise<Map<string, DeviceCredential>> {
  const devices = ids.map((id) => Device.fromPartial({ id, name: id, labels, deviceTypeId }));
  const response = await unary(clients.devices, clients.devices.batchCreateDevices, { devices, issueCredentials: true }, { ...op(), deadlineMs: 60_000 });
  return new Map(response.credentials.map((c) => [c.deviceId, c]));
}

/** Connects a simulated device that answers commands as `behaviour` says; resolves once its subscription is in place. */
async function simulate(credential: DeviceCredential, behaviour: Behaviour): Promise<NatsConnection> {
  const nc = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(credential), reconnect: false });
  connections.push(nc);
  nc.subscribe(`iot.${t.tenantId}.dev.${credential.deviceId}.cmd`, {
    callback: (_err, msg) => {
      received.set(credential.deviceId, (received.get(credential.deviceId) ?? 0) + 1);
      const request = JSON.parse(new TextDecoder().decode(msg.data));
      const answer = (ok: boolean) => msg.respond(JSON.stringify({ commandId: request.commandId, ok, result: ok ? { echo: request.payload?.n ?? null } : undefined, error: ok ? '' : 'disk full' }));
      if (behaviour === 'ok') answer(true);
      if (behaviour === 'fail') answer(false);
      if (behaviour === 'slow') setTimeout(() => answer(true), 1200);
      // 'silent' never answers.
    },
  });
  await nc.flush();
  return nc;
}

/** How many devices with `labels` are online now. */
async function onlineCount(labels: Record<string, string>): Promise<number> {
  const page = await unary(clients.devices, clients.devices.listDevices, { page: { pageSize: 1000, pageToken: '' }, labels, status: DeviceStatus.DEVICE_STATUS_ONLINE, namePrefix: '', type: '', groupId: '', deviceTypeId: '', orderBy: '' }, viewer());
  return page.devices.length;
}

/** Every device of the job, through pages of `pageSize`. */
async function allJobDevices(client: JobServiceClient, id: string, pageSize = 37): Promise<JobDevice[]> {
  const all: JobDevice[] = [];
  let pageToken = '';
  do {
    const page = await unary(client, client.listJobDevices, { id, state: JobDeviceState.JOB_DEVICE_STATE_UNSPECIFIED, page: { pageSize, pageToken } }, viewer());
    all.push(...page.devices);
    pageToken = page.page!.nextPageToken;
  } while (pageToken);
  return all;
}

const getJob = (client: JobServiceClient, id: string) => unary(client, client.getJob, { id }, viewer()).then((r) => r.job!);

/** Waits until the job has ended and returns it. */
const ended = (client: JobServiceClient, id: string, timeoutMs = 30_000) =>
  eventually(`job ${id} ended`, async () => {
    const job = await getJob(client, id);
    return job.state !== JobState.JOB_STATE_RUNNING ? job : undefined;
  }, timeoutMs, 100);

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });

test('a command job over 200 devices (offline, failing, slow, silent) survives a restart of the device service: states and counts exact, no device commanded twice', async () => {
  const ids = Array.from({ length: 200 }, (_, i) => `fl-${i}`);
  const creds = await createDevices(ids, { fleet: 'jobs' });
  // By index: a tenth offline at the start (half come back while the service is down, half after it restarted), a tenth failing,
  // a tenth slow, a twentieth silent, a twentieth never connecting; the rest answer at once.
  const plan = (i: number): Behaviour | 'late-down' | 'late-up' | 'never' =>
    i % 20 === 0 ? 'late-down' : i % 20 === 10 ? 'late-up' : i % 10 === 1 ? 'fail' : i % 10 === 2 ? 'slow' : i % 20 === 3 ? 'silent' : i % 20 === 13 ? 'never' : 'ok';
  const behaviourOf = (i: number): Behaviour => (['fail', 'slow', 'silent'].includes(plan(i)) ? (plan(i) as Behaviour) : 'ok');
  await Promise.all(ids.map((id, i) => (['ok', 'fail', 'slow', 'silent'].includes(plan(i)) ? simulate(creds.get(id)!, behaviourOf(i)) : undefined)));
  const online = ids.filter((_, i) => ['ok', 'fail', 'slow', 'silent'].includes(plan(i)));
  await eventually('the first devices online', async () => {
    return (await onlineCount({ fleet: 'jobs' })) === online.length;
  }, 20_000, 200);

  const groupClient = insecureClient(GroupServiceClient, h.device.address);
  const { group } = await unary(groupClient, groupClient.createGroup, { group: { id: '', tenantId: '', name: 'job fleet', description: '', selector: { matchLabels: { fleet: 'jobs' }, deviceTypeId: '' }, createTime: undefined, updateTime: undefined } }, op());
  groupClient.close();
  const created = (
    await unary(
      jobs,
      jobs.createJob,
      {
        job: Job.fromPartial({
          description: 'ping the fleet',
          command: { name: 'ping', params: { n: 7 }, timeout: ms(2000) },
          groupId: group!.id,
          rollout: { maxInFlight: 20, maxPerSecond: 40, abortThresholdPercent: 40, abortMinFinished: 20 },
          // Long enough for every connected device to finish first with room to spare on a loaded machine (the job needs about 10 s here).
          expireTime: new Date(Date.now() + 24_000),
        }),
      },
      op(),
    )
  ).job!;
  expect(created).toMatchObject({ state: JobState.JOB_STATE_RUNNING, groupId: group!.id, counts: { total: 200 } });

  // Mid-job: the device service stops (gracefully) and another instance takes over from the table.
  await eventually('a third of the devices finished', async () => {
    const c = (await getJob(jobs, created.id)).counts!;
    return c.succeeded + c.failed + c.timedOut >= 60;
  }, 30_000, 50);
  await h.device.stop();
  await Promise.all(ids.map((id, i) => (plan(i) === 'late-down' ? simulate(creds.get(id)!, 'ok') : undefined)));
  service = (await startTestService(deviceService, h.env)) as unknown as TestService<never>;
  jobs.close();
  jobs = insecureClient(JobServiceClient, service.address);
  clients = deviceClients(service.address);
  await Promise.all(ids.map((id, i) => (plan(i) === 'late-up' ? simulate(creds.get(id)!, 'ok') : undefined)));

  // Progress as a stream, from the new instance, until the job ends.
  const progress: Job[] = [];
  await new Promise<void>((resolve, reject) => {
    const stream = serverStream(jobs, jobs.watchJob, { id: created.id }, { ...viewer(), deadlineMs: 60_000 });
    stream.on('data', (r: { job: Job }) => progress.push(r.job));
    stream.on('error', reject);
    stream.on('end', () => resolve());
  });
  const finished = (j: Job) => j.counts!.succeeded + j.counts!.failed + j.counts!.timedOut + j.counts!.cancelled;
  for (let i = 1; i < progress.length; i++) expect(finished(progress[i])).toBeGreaterThanOrEqual(finished(progress[i - 1]));
  const last = progress[progress.length - 1];
  expect(last.state).toBe(JobState.JOB_STATE_COMPLETED);
  expect(last.counts).toEqual({ total: 200, queued: 0, sent: 0, succeeded: 160, failed: 20, timedOut: 20, cancelled: 0 });

  const devices = await allJobDevices(jobs, created.id);
  expect(devices.map((d) => d.deviceId).sort()).toEqual([...ids].sort());
  for (const d of devices) {
    const i = Number(d.deviceId.slice(3));
    const p = plan(i);
    const expected =
      p === 'fail' ? JobDeviceState.JOB_DEVICE_STATE_FAILED : p === 'silent' || p === 'never' ? JobDeviceState.JOB_DEVICE_STATE_TIMED_OUT : JobDeviceState.JOB_DEVICE_STATE_SUCCEEDED;
    expect({ id: d.deviceId, state: d.state }).toEqual({ id: d.deviceId, state: expected });
    if (p === 'fail') expect(d.reason).toBe('disk full');
    if (p === 'silent') expect(d.reason).toMatch(/did not answer within 2000 ms/);
    if (p === 'never') expect(d.reason).toMatch(/did not connect before the job expired/);
    if (expected === JobDeviceState.JOB_DEVICE_STATE_SUCCEEDED) expect(d.result).toEqual({ echo: 7 });
    // Nothing lost, nothing repeated: every device that connected got the command exactly once, the others never.
    expect({ id: d.deviceId, received: received.get(d.deviceId) ?? 0 }).toEqual({ id: d.deviceId, received: p === 'never' ? 0 : 1 });
  }
  const listed = await unary(jobs, jobs.listJobs, { page: { pageSize: 10, pageToken: '' } }, viewer());
  expect(listed.jobs.map((j) => j.id)).toContain(created.id);
});

test('the abort threshold stops a job: the queued rest is cancelled and never commanded', async () => {
  const ids = Array.from({ length: 40 }, (_, i) => `ab-${i}`);
  const creds = await createDevices(ids, { fleet: 'abort' });
  await Promise.all(ids.map((id, i) => simulate(creds.get(id)!, i % 2 === 0 ? 'fail' : 'ok')));
  await eventually('abort devices online', async () => (await onlineCount({ fleet: 'abort' })) === ids.length, 20_000, 100);
  const rollout = { maxInFlight: 4, maxPerSecond: 0, abortThresholdPercent: 25, abortMinFinished: 8 };
  const { job } = await unary(jobs, jobs.createJob, { job: Job.fromPartial({ command: { name: 'ping', timeout: ms(2000) }, deviceIds: ids, rollout }) }, op());
  const done = await ended(jobs, job!.id);
  expect(done.state).toBe(JobState.JOB_STATE_ABORTED);
  // Judged on the finished devices when the threshold was crossed, not earlier than abort_min_finished.
  const [, failedAt, finishedAt] = /aborted: (\d+) of (\d+) finished/.exec(done.reason)!.map(Number);
  expect(finishedAt).toBeGreaterThanOrEqual(8);
  expect(failedAt * 100).toBeGreaterThan(25 * finishedAt);
  // Steps already sent when the threshold was crossed (at most max_in_flight - 1) still finish with their device's answer
  // or their timeout: wait for those, then nothing may be queued or sent any more.
  const settled = await eventually('in-flight steps of the aborted job finished', async () => {
    const j = await getJob(jobs, job!.id);
    return j.counts!.sent === 0 ? j : undefined;
  }, 30_000, 100);
  expect(settled.state).toBe(JobState.JOB_STATE_ABORTED);
  const c = settled.counts!;
  expect(c.queued + c.sent).toBe(0);
  expect(c.succeeded + c.failed).toBeLessThanOrEqual(finishedAt + rollout.maxInFlight - 1);
  expect(c.cancelled).toBe(40 - c.succeeded - c.failed);
  for (const d of await allJobDevices(jobs, job!.id, 7)) {
    const commanded = received.get(d.deviceId) ?? 0;
    if (d.state === JobDeviceState.JOB_DEVICE_STATE_CANCELLED) {
      expect({ id: d.deviceId, commanded, reason: d.reason }).toEqual({ id: d.deviceId, commanded: 0, reason: done.reason });
    } else {
      expect({ id: d.deviceId, commanded }).toEqual({ id: d.deviceId, commanded: 1 });
    }
  }
  // An ended job cannot be cancelled.
  expect((await failure(unary(jobs, jobs.cancelJob, { id: job!.id }, op()))).code).toBe(status.FAILED_PRECONDITION);
});

test('a desired-state job merges its patch into each twin; a cancelled job cancels its queued (offline) devices', async () => {
  const ids = ['ds-0', 'ds-1', 'ds-2'];
  const creds = await createDevices([...ids, 'ds-off'], { fleet: 'desired' });
  await Promise.all(ids.map((id) => simulate(creds.get(id)!, 'ok')));
  await eventually('desired devices online', async () => (await onlineCount({ fleet: 'desired' })) === 3, 20_000, 100);
  const twin = insecureClient(TwinServiceClient, service!.address);
  try {
    await unary(twin, twin.updateDesired, { deviceId: 'ds-0', desired: { keep: true }, expectedVersion: 0n }, op());
    const { job } = await unary(jobs, jobs.createJob, { job: Job.fromPartial({ desired: { patch: { mode: 'eco' } }, deviceIds: ids }) }, op());
    const done = await ended(jobs, job!.id);
    expect(done).toMatchObject({ state: JobState.JOB_STATE_COMPLETED, counts: { total: 3, succeeded: 3 } });
    expect((await unary(twin, twin.getTwin, { deviceId: 'ds-0' }, viewer())).twin!.desired).toEqual({ keep: true, mode: 'eco' });
    expect((await unary(twin, twin.getTwin, { deviceId: 'ds-1' }, viewer())).twin!.desired).toEqual({ mode: 'eco' });
  } finally {
    twin.close();
  }
  const { job: waiting } = await unary(jobs, jobs.createJob, { job: Job.fromPartial({ command: { name: 'ping' }, deviceIds: ['ds-off'] }) }, op());
  const cancelled = (await unary(jobs, jobs.cancelJob, { id: waiting!.id }, op())).job!;
  expect(cancelled).toMatchObject({ state: JobState.JOB_STATE_CANCELLED, counts: { total: 1, cancelled: 1 } });
  const [d] = await allJobDevices(jobs, waiting!.id);
  expect(d).toMatchObject({ deviceId: 'ds-off', state: JobDeviceState.JOB_DEVICE_STATE_CANCELLED });
  expect(received.get('ds-off')).toBeUndefined();
});

test('with two replicas running (both runners polling one job), every device is commanded exactly once', async () => {
  const second = await startTestService(deviceService, h.env);
  try {
    const ids = Array.from({ length: 60 }, (_, i) => `two-${i}`);
    const creds = await createDevices(ids, { fleet: 'two' });
    await Promise.all(ids.map((id, i) => simulate(creds.get(id)!, i % 3 === 0 ? 'slow' : 'ok')));
    await eventually('two-replica devices online', async () => (await onlineCount({ fleet: 'two' })) === ids.length, 20_000, 100);
    const { job } = await unary(jobs, jobs.createJob, { job: Job.fromPartial({ command: { name: 'ping', params: { n: 2 }, timeout: ms(3000) }, deviceIds: ids, rollout: { maxInFlight: 8 } }) }, op());
    const other = insecureClient(JobServiceClient, second.address);
    try {
      const done = await ended(other, job!.id);
      expect(done).toMatchObject({ state: JobState.JOB_STATE_COMPLETED, counts: { total: 60, succeeded: 60 } });
    } finally {
      other.close();
    }
    for (const id of ids) expect({ id, received: received.get(id) }).toEqual({ id, received: 1 });
  } finally {
    await second.stop();
  }
});

test('a step a crashed replica left sent is timed out after its deadline, never sent again; the job completes', async () => {
  const creds = await createDevices(['cr-1', 'cr-2'], { fleet: 'crash' });
  const { job } = await unary(jobs, jobs.createJob, { job: Job.fromPartial({ command: { name: 'ping', timeout: ms(1000) }, deviceIds: ['cr-1', 'cr-2'] }) }, op());
  // As a replica that claimed cr-1 and died before recording the answer leaves it (both devices are still offline, so nothing ran).
  const db = new Client({ connectionString: h.db.url });
  await db.connect();
  try {
    const claimed = await db.query(
      `UPDATE device.job_devices SET state = 'sent', claimed_by = 'dead-replica', sent_time = now() - interval '8 seconds', deadline = now() - interval '1 second'
       WHERE job_id = $1 AND device_id = 'cr-1' AND state = 'queued'`,
      [job!.id],
    );
    expect(claimed.rowCount).toBe(1);
  } finally {
    await db.end();
  }
  await Promise.all(['cr-1', 'cr-2'].map((id) => simulate(creds.get(id)!, 'ok')));
  const done = await ended(jobs, job!.id);
  expect(done).toMatchObject({ state: JobState.JOB_STATE_COMPLETED, counts: { total: 2, succeeded: 1, timedOut: 1 } });
  const [first, second] = await allJobDevices(jobs, job!.id);
  expect(first).toMatchObject({ deviceId: 'cr-1', state: JobDeviceState.JOB_DEVICE_STATE_TIMED_OUT, reason: expect.stringMatching(/replica that sent the step stopped/) });
  expect(second).toMatchObject({ deviceId: 'cr-2', state: JobDeviceState.JOB_DEVICE_STATE_SUCCEEDED });
  expect([received.get('cr-1') ?? 0, received.get('cr-2')]).toEqual([0, 1]);
});

test('CreateJob validates: params against the device type\'s command schema, exactly one action and one target, known devices; viewers cannot create', async () => {
  const types = insecureClient(DeviceTypeServiceClient, service!.address);
  try {
    const { deviceType } = await unary(
      types,
      types.createDeviceType,
      { deviceType: DeviceType.fromPartial({ name: 'valve', commands: [{ name: 'open', parametersSchema: { type: 'object', properties: { percent: { type: 'integer', maximum: 100 } }, required: ['percent'] } }] }) },
      op(),
    );
    await createDevices(['va-1'], {}, deviceType!.id);
  } finally {
    types.close();
  }
  const create = (job: Partial<Job>, auth = op()) => unary(jobs, jobs.createJob, { job: Job.fromPartial(job) }, auth);
  const bad = await failure(create({ command: { name: 'open', params: { percent: 300 } }, deviceIds: ['va-1'] }));
  expect(bad.code).toBe(status.INVALID_ARGUMENT);
  expect((await create({ command: { name: 'open', params: { percent: 30 } }, deviceIds: ['va-1'] })).job!.counts!.total).toBe(1);
  expect((await failure(create({ deviceIds: ['va-1'] }))).fields).toContain('job');
  expect((await failure(create({ command: { name: 'open' } }))).fields).toContain('job');
  expect((await failure(create({ command: { name: 'ping' }, deviceIds: ['va-1', 'nope'] }))).fields).toContain('job.device_ids');
  expect((await failure(create({ command: { name: 'bad name!' }, deviceIds: ['va-1'] }))).fields).toContain('job.command.name');
  expect((await failure(create({ command: { name: 'ping' }, deviceIds: ['va-1'] }, viewer()))).code).toBe(status.PERMISSION_DENIED);
  expect((await failure(unary(jobs, jobs.getJob, { id: '00000000-0000-0000-0000-000000000000' }, viewer()))).code).toBe(status.NOT_FOUND);
});
