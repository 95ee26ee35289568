/**
 * The fault suite (issue 12 item 7): the platform as real processes, a known
 * set of MQTT QoS 1 points published while a fault is injected, every point
 * counted in PostgreSQL afterwards by message id. Each fault writes its
 * figures to test-results/faults/<fault>.json; faults/report.ts turns them
 * into RELIABILITY.md. Run with `npm run test:faults` (not part of `npm test`).
 *
 * Size per fault (issue 12 item 7: at least 200,000 points from at least 50
 * devices over MQTT and NATS): FAULTS_DEVICES MQTT devices × FAULTS_MESSAGES
 * messages × FAULTS_POINTS points (default 50 × 200 × 20 = 200,000 points;
 * a device batches its readings, 20 to a message), with FAULTS_NATS_DEVICES
 * NATS devices (10: 40,000 points more) alongside, published at FAULTS_RATE
 * messages/s per device (default 4, so about 50 s of publishing: a 30 s outage
 * starting a quarter in ends before the last message; the writer kills' set
 * at half that rate). Outages:
 * FAULTS_PG_DOWN_MS, FAULTS_REDIS_DOWN_MS, FAULTS_SIGNING_DOWN_MS (30 s each),
 * FAULTS_STREAM_FULL_MS (5 s); overload: FAULTS_OVERLOAD_SECONDS (60) at twice
 * the capacity the fault measures first. This file takes about 12 min at
 * these sizes on the shared 2-core machine, the whole suite with
 * nats-cluster.fault.ts 14-16 min (2026-12-03, load average 7-10).
 */
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as Status } from '@grpc/grpc-js';
import mqtt from 'mqtt';
import { DiscardPolicy } from 'nats';
import { deadLetterSubject, deviceSubject, insecureClient, unary } from '@iot-mesh/runtime';
import { Role } from '../../gen/ts/iot/common/v1/common';
import { DeviceServiceClient, ListDevicesRequest } from '../../gen/ts/iot/device/v1/device';
import { TelemetryServiceClient } from '../../gen/ts/iot/monitoring/v1/telemetry';
import { ApiKeyServiceClient } from '../../gen/ts/iot/signing/v1/api_keys';
import { AuthServiceClient } from '../../gen/ts/iot/signing/v1/auth';
import { UserServiceClient } from '../../gen/ts/iot/signing/v1/users';
import { encodeTelemetry } from '../../simulator/src/encoding';
import { DeviceIdentity } from '../../simulator/src/device';
import { subjectToTopic } from '../../simulator/src/links';
import { isAlive } from '../../scripts/up-process';
import { waitUntil } from '../../scripts/up-wait';
import { KnownSetSize } from '../src/known-set';
import { clearResults, FaultResult, FaultRig, writeResult } from '../src/rig';

const DEVICES = Number(process.env.FAULTS_DEVICES ?? 50);
/** NATS devices alongside (at-most-once: counted apart, only duplicates asserted). */
const NATS_DEVICES = Number(process.env.FAULTS_NATS_DEVICES ?? 10);
const SIZE: KnownSetSize = {
  messagesPerDevice: Number(process.env.FAULTS_MESSAGES ?? 200),
  pointsPerMessage: Number(process.env.FAULTS_POINTS ?? 20),
  ratePerDevice: Number(process.env.FAULTS_RATE ?? 4),
};
/** About how long a known set takes to publish. */
const PUBLISH_MS = (SIZE.messagesPerDevice / SIZE.ratePerDevice) * 1000;
/**
 * The writer-kill fault's set: the same points at half the rate (about 100 s), so all five kills land while it is
 * published even when each replacement replica takes 10-20 s to serve on a loaded machine (at the full rate the
 * last two landed after the last message, 2026-12-03).
 */
const KILL_SIZE: KnownSetSize = { ...SIZE, ratePerDevice: SIZE.ratePerDevice / 2 };
/** Writer kills in the first fault (the issue's five). */
const KILLS = 5;
/** How long the overload fault offers twice the measured capacity. */
const OVERLOAD_SECONDS = Number(process.env.FAULTS_OVERLOAD_SECONDS ?? 60);
const STREAM = 'TELEMETRY';


let rig: FaultRig;
let devices: DeviceIdentity[];

beforeAll(async () => {
  clearResults(['writer-kill', 'nats-sigterm', 'nats-sigkill', 'postgres-stop', 'redis-stop', 'signing-kill', 'stream-full', 'overload', 'poison']);
  rig = await FaultRig.start();
  devices = await rig.devices(`flt${crypto.randomBytes(2).toString('hex')}`, DEVICES);
  rig.natsDevices = await rig.platform.devices(`fltn${crypto.randomBytes(2).toString('hex')}`, NATS_DEVICES, 'nats');
}, 240_000);

afterAll(async () => {
  await rig?.stop();
}, 120_000);

/**
 * The promise for acknowledged MQTT QoS 1 points, and the platform whole
 * again. `lostAfter`: points acknowledged at or after this time (ms) may be
 * missing — a nats-server shutting down stops JetStream before it closes its
 * client connections, and 2.9's MQTT listener PUBACKs what the stopped
 * stream did not store — but none acknowledged before it.
 */
async function expectKept(result: FaultResult, lostAfter?: number): Promise<void> {
  expect(rig.exited()).toEqual([]);
  await rig.serving();
  const ackTimes = Object.entries(result.lostAckTimes ?? {});
  const excused = lostAfter === undefined ? [] : ackTimes.filter(([, at]) => at >= lostAfter);
  expect(ackTimes.filter((entry) => !excused.includes(entry)).map(([id]) => id)).toEqual([]);
  expect({ lost: result.lostPoints - excused.length * SIZE.pointsPerMessage, duplicated: result.duplicatedPoints }).toEqual({ lost: 0, duplicated: 0 });
  // NATS devices may lose what was in flight (at-most-once), never store a point twice.
  expect(result.nats?.duplicatedPoints ?? 0).toBe(0);
  // The fault landed while points were being acknowledged, and most were.
  expect(result.publishedPoints).toBeGreaterThan(0);
}

test(`kill -9 of a writer replica, ${KILLS} times, while publishing`, async () => {
  const result = await rig.run('writer-kill', `monitoring (writer) replicas killed with SIGKILL ${KILLS} times in turn, each started again; the other replica keeps writing`, devices, KILL_SIZE, async (set) => {
    let recoverMs = 0;
    /** How far into the set each kill landed (messages handed to the clients by then). */
    const sentAtKill: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      await sleep(PUBLISH_MS / 10);
      const writer = rig.writers[i % 2];
      sentAtKill.push(set.sent);
      writer.service.process.kill();
      await writer.service.process.exited();
      const since = Date.now();
      // Killed before its replacement starts: a writer that dies holding messages, as a crash would.
      writer.service = await rig.startWriter();
      recoverMs = Math.max(recoverMs, await rig.recovered(set, since));
    }
    const total = devices.length * KILL_SIZE.messagesPerDevice;
    const landed = sentAtKill.map((n) => `${Math.round((100 * n) / total)} %`).join(', ');
    return { recoverMs, notes: [`${KILLS} kills, alternating between the two replicas, at ${landed} of the set sent; recovery counts from the kill to the new replica SERVING and storing`] };
  });
  await expectKept(result);
}, 240_000);

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  test(`nats-server restart (${signal}) while publishing`, async () => {
    let signalledAt = 0;
    const result = await rig.run(`nats-${signal.toLowerCase()}`, `the nats-server stopped with ${signal} and started again on the same ports and store`, devices, SIZE, async (set) => {
      await sleep(PUBLISH_MS / 3);
      const sentAtStop = set.sent;
      const nats = rig.platform.nats;
      signalledAt = Date.now();
      if (signal === 'SIGKILL') await nats.kill();
      else {
        process.kill(nats.pid!, 'SIGTERM');
        while (nats.pid && isAlive(nats.pid)) await sleep(50);
      }
      await sleep(2000);
      await nats.restart();
      const since = Date.now();
      return { recoverMs: await rig.recovered(set, since), notes: [`down about 2 s, stopped when message ${Math.round(sentAtStop / devices.length)} of each device was sent`] };
    });
    if (signal === 'SIGTERM') {
      // nats-server 2.9's shutdown: JetStream first, client connections after, and MQTT PUBACKs meanwhile (RELIABILITY.md).
      const inShutdown = Object.values(result.lostAckTimes ?? {}).filter((at) => at >= signalledAt).length;
      if (inShutdown > 0) {
        result.notes.push(`${inShutdown} MQTT messages PUBACKed after the SIGTERM, while the server was shutting down, not stored (the known limit above)`);
        result.knownLossPoints = inShutdown * SIZE.pointsPerMessage;
        writeResult(result);
      }
    }
    await expectKept(result, signal === 'SIGTERM' ? signalledAt : undefined);
  }, 240_000);
}

test('PostgreSQL stopped for real (fast shutdown) while publishing', async () => {
  const downMs = Number(process.env.FAULTS_PG_DOWN_MS ?? 30_000);
  let during: Record<string, string> = {};
  const result = await rig.run('postgres-stop', `the private PostgreSQL cluster stopped (fast shutdown) for ${downMs / 1000} s and started again`, devices, SIZE, async (set) => {
    await sleep(PUBLISH_MS / 4);
    await rig.stopPostgres();
    await sleep(downMs / 2);
    during = await rig.health();
    await sleep(downMs / 2);
    await rig.startPostgres();
    const since = Date.now();
    const recoverMs = await rig.recovered(set, since);
    return { recoverMs, notes: [`health while down: ${summary(during)}`] };
  });
  await expectKept(result);
  // PostgreSQL is a required dependency of every service: each said so while it was down.
  expect(Object.values(during)).toEqual(rig.services().map(() => 'NOT_SERVING'));
}, 240_000);

test('Redis stopped while publishing: logins, API-key checks and device reads keep answering, no process exits', async () => {
  const signingAddress = rig.platform.signing!.address;
  const admin = { authorization: rig.platform.authorization! };
  const users = insecureClient(UserServiceClient, signingAddress);
  const keys = insecureClient(ApiKeyServiceClient, signingAddress);
  const auth = insecureClient(AuthServiceClient, signingAddress);
  const deviceApi = insecureClient(DeviceServiceClient, rig.platform.device!.address);
  const email = `fault-${crypto.randomBytes(3).toString('hex')}@example.com`;
  const password = crypto.randomBytes(18).toString('base64url');
  await unary(users, users.createUser, { email, displayName: 'Fault', password, role: Role.ROLE_VIEWER }, admin);
  const { secret } = await unary(keys, keys.createApiKey, { name: 'fault-suite', role: Role.ROLE_VIEWER }, admin);
  /** What each user-facing check answers: 'OK' or the gRPC status code name. */
  const probe = async () => {
    const answer = (p: Promise<unknown>) => p.then(() => 'OK', (err: { code?: number; details?: string }) => `code ${err.code}: ${err.details}`);
    return {
      login: await answer(unary(auth, auth.login, { tenant: 'bench', email, password }, { deadlineMs: 5000 })),
      apiKeyDeviceList: await answer(unary(deviceApi, deviceApi.listDevices, ListDevicesRequest.fromPartial({ page: { pageSize: 5 } }), { authorization: `ApiKey ${secret}`, deadlineMs: 5000 })),
      bearerDeviceRead: await answer(unary(deviceApi, deviceApi.getDevice, { id: devices[0].deviceId }, { ...admin, deadlineMs: 5000 })),
    };
  };
  try {
    const before = await probe();
    expect(before).toEqual({ login: 'OK', apiKeyDeviceList: 'OK', bearerDeviceRead: 'OK' });
    let during: Awaited<ReturnType<typeof probe>> | undefined;
    let healthDuring: Record<string, string> = {};
    const downMs = Number(process.env.FAULTS_REDIS_DOWN_MS ?? 30_000);
    const result = await rig.run('redis-stop', `the private redis-server stopped for ${downMs / 1000} s and started again (empty)`, devices, SIZE, async (set) => {
      await sleep(PUBLISH_MS / 4);
      await rig.stopRedis();
      await sleep(downMs / 2);
      during = await probe();
      healthDuring = await rig.health();
      await sleep(downMs / 2);
      await rig.startRedis();
      const since = Date.now();
      return { recoverMs: await rig.recovered(set, since), notes: [`while Redis was down: ${summary(during)}`, `health while down: ${summary(healthDuring)}`] };
    });
    await expectKept(result);
    // Redis is only a cache: every check answers while it is down, and health stays SERVING (degraded, not down).
    expect(during).toEqual({ login: 'OK', apiKeyDeviceList: 'OK', bearerDeviceRead: 'OK' });
    expect(Object.values(healthDuring).every((s) => s === 'SERVING')).toBe(true);
    expect(await probe()).toEqual({ login: 'OK', apiKeyDeviceList: 'OK', bearerDeviceRead: 'OK' });
  } finally {
    for (const c of [users, keys, auth, deviceApi]) c.close();
  }
}, 240_000);

test('poison messages (NUL, long id, oversize) during load: nothing else is held up, nothing exits', async () => {
  const [poisoner] = await rig.devices(`fltp${crypto.randomBytes(2).toString('hex')}`, 1);
  const client = await mqtt.connectAsync(rig.platform.nats.mqttUrl, { clientId: poisoner.deviceId, username: poisoner.deviceId, password: poisoner.token, protocolVersion: 4, clean: true, reconnectPeriod: 500 });
  client.on('error', () => undefined);
  const topic = subjectToTopic(deviceSubject(poisoner.tenantId, poisoner.deviceId, 'tel'));
  const point = (extra: object = {}) => ({ metric: 'm0', time: new Date(), numberValue: 1, ...extra });
  /** `deadLettered`: whether the writer sees it (the TELEMETRY stream refuses a message over 1 MiB: no dead letter, README "Ingest"). */
  const poisons: Array<{ kind: string; payload: Buffer; deadLettered: boolean }> = [
    { kind: 'NUL in the message id', payload: encodeTelemetry({ deviceId: poisoner.deviceId, messageId: `poison-\u0000-id`, points: [point()] }, 'protobuf'), deadLettered: true },
    { kind: 'NUL in a string value', payload: encodeTelemetry({ deviceId: poisoner.deviceId, messageId: 'poison-nul-value', points: [point({ numberValue: undefined, stringValue: 'a\u0000b' })] }, 'protobuf'), deadLettered: true },
    { kind: 'a 4,000-character message id', payload: encodeTelemetry({ deviceId: poisoner.deviceId, messageId: 'p'.repeat(4000), points: [point()] }, 'protobuf'), deadLettered: true },
    { kind: 'a 1.1 MB message', payload: Buffer.from(`{"messageId":"poison-big","points":[{"metric":"m0","numberValue":1}],"x":"${' '.repeat(1_100_000)}"}`), deadLettered: false },
    { kind: 'NUL in the message id (JSON)', payload: Buffer.from(JSON.stringify({ messageId: 'poison-\u0000-json', points: [{ metric: 'm0', numberValue: 1 }] })), deadLettered: true },
  ];
  const expectedDeadLetters = poisons.filter((p) => p.deadLettered).length;
  const answers: string[] = [];
  const jsm = await rig.platform.nc.jetstreamManager();
  /** The poisoner's dead letters in the DEAD_LETTERS stream (its device's dead-letter subject). */
  const deadLetters = async () => {
    const { state } = await jsm.streams.info('DEAD_LETTERS', { subjects_filter: deadLetterSubject(poisoner.tenantId, poisoner.deviceId) });
    return Object.values(state.subjects ?? {}).reduce((sum, n) => sum + n, 0);
  };
  let deadLettered = 0;
  try {
    const result = await rig.run('poison', 'poison messages from one device while the others publish: NUL in an id and in a value (Protobuf and JSON), a 4,000-character id, a 1.1 MB message', devices, SIZE, async (set) => {
      await sleep(PUBLISH_MS / 4);
      const since = Date.now();
      for (const p of poisons) {
        // The server may refuse an oversize publish by closing the connection: bound the wait, never block the run.
        const answer = await Promise.race([client.publishAsync(topic, p.payload, { qos: 1 }).then(() => 'PUBACK', (err: Error) => `refused (${err.message})`), sleep(5000).then(() => 'no PUBACK in 5 s')]);
        answers.push(`${p.kind}: ${answer}`);
      }
      const recoverMs = await rig.recovered(set, since);
      // The others' points flow again, but the poisons may still wait behind them in the stream (a run read 0 dead letters here).
      await waitUntil('the poisoner\'s dead letters stored', async () => (deadLettered = await deadLetters()) >= expectedDeadLetters, { timeoutMs: 60_000, intervalMs: 200 }).catch(() => undefined);
      return { recoverMs, notes: [...answers, `the poisoner's dead letters in DEAD_LETTERS: ${deadLettered} (of ${expectedDeadLetters} the stream took), ${((Date.now() - since) / 1000).toFixed(1)} s after the first poison`] };
    });
    await expectKept(result);
    const pg = await rig.freshPg();
    const { rows } = await pg.query('SELECT count(*)::int AS n FROM monitoring.points WHERE tenant_id = $1 AND device_id = $2', [poisoner.tenantId, poisoner.deviceId]);
    // Each poison the stream took is dead-lettered, none stored.
    expect({ stored: rows[0].n, deadLettered }).toEqual({ stored: 0, deadLettered: expectedDeadLetters });
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}, 240_000);

test('signing killed (SIGKILL) while publishing: existing tokens keep verifying, logins answer UNAVAILABLE, signing comes back', async () => {
  const admin = { authorization: rig.platform.authorization! };
  const auth = insecureClient(AuthServiceClient, rig.platform.signing!.address);
  const deviceApi = insecureClient(DeviceServiceClient, rig.platform.device!.address);
  const telemetryApi = insecureClient(TelemetryServiceClient, rig.writers[0].service.address);
  const codeOf = (p: Promise<unknown>) => p.then(() => 'OK', (err: { code?: number }) => (err.code === undefined ? 'ERROR' : (Status[err.code] ?? String(err.code))));
  /** What a user with a token from before, and one logging in now, are answered. */
  const probe = async () => ({
    deviceRead: await codeOf(unary(deviceApi, deviceApi.getDevice, { id: devices[0].deviceId }, { ...admin, deadlineMs: 5000 })),
    monitoringRead: await codeOf(unary(telemetryApi, telemetryApi.getLatest, { deviceIds: [devices[0].deviceId], metrics: [] }, { ...admin, deadlineMs: 5000 })),
    // Wrong password on purpose: no lock-out state matters, only whether signing answers at all.
    login: await codeOf(unary(auth, auth.login, { tenant: 'bench', email: 'nobody@example.com', password: 'not-a-password' }, { deadlineMs: 5000 })),
  });
  try {
    const before = await probe();
    expect({ ...before, login: before.login === 'UNAVAILABLE' ? 'UNAVAILABLE' : 'answered' }).toEqual({ deviceRead: 'OK', monitoringRead: 'OK', login: 'answered' });
    const during: Array<Awaited<ReturnType<typeof probe>>> = [];
    let healthDuring: Record<string, string> = {};
    const downMs = Number(process.env.FAULTS_SIGNING_DOWN_MS ?? 30_000);
    const result = await rig.run('signing-kill', `signing killed with SIGKILL for ${downMs / 1000} s while devices publish and clients call device and monitoring RPCs with tokens issued before, then started again on the same port`, devices, SIZE, async (set) => {
      await sleep(PUBLISH_MS / 4);
      await rig.killSigning();
      const until = Date.now() + downMs;
      while (Date.now() < until) {
        during.push(await probe());
        await sleep(1000);
      }
      healthDuring = await rig.health();
      await rig.startSigning();
      const since = Date.now();
      const recoverMs = await rig.recovered(set, since);
      const answers = [...new Set(during.map((d) => JSON.stringify(d)))].join(' / ');
      return { recoverMs, notes: [`answers while signing was down (${during.length} probes): ${answers}`, `health while down: ${summary(healthDuring)}`] };
    });
    await expectKept(result);
    // Tokens issued before keep verifying against the keys already fetched; a login has nobody to answer it.
    expect(during.length).toBeGreaterThan(0);
    for (const d of during) expect(d).toEqual({ deviceRead: 'OK', monitoringRead: 'OK', login: 'UNAVAILABLE' });
    expect(healthDuring.device).toBe('SERVING');
    expect(healthDuring.signing).toBe('UNREACHABLE');
    const after = await probe();
    expect({ ...after, login: after.login === 'UNAVAILABLE' ? 'UNAVAILABLE' : 'answered' }).toEqual({ deviceRead: 'OK', monitoringRead: 'OK', login: 'answered' });
  } finally {
    for (const c of [auth, deviceApi, telemetryApi]) c.close();
  }
}, 240_000);

test('the telemetry stream full (discard new) while publishing: publishers refused, ingest resumes when space frees', async () => {
  const jsm = await rig.platform.nc.jetstreamManager();
  const js = rig.platform.nc.jetstream();
  const original = (await jsm.streams.info(STREAM)).config;
  const fullMs = Number(process.env.FAULTS_STREAM_FULL_MS ?? 5000);
  const probeSubject = deviceSubject(devices[0].tenantId, devices[0].deviceId, 'tel');
  let n = 0;
  /** A JetStream publish of one valid message: 'OK' or the error the stream answered. */
  const publishProbe = () =>
    js
      .publish(probeSubject, encodeTelemetry({ deviceId: devices[0].deviceId, messageId: `stream-full-probe-${crypto.randomBytes(3).toString('hex')}-${n++}`, points: [{ metric: 'probe', time: new Date(), numberValue: 1 }] }, 'protobuf'))
      .then(() => 'OK', (err: Error) => `refused (${err.message})`);
  const answers: string[] = [];
  let ackedWhileFull = 0;
  const result = await rig.run('stream-full', `the TELEMETRY stream made full for ${fullMs / 1000} s (max_bytes a little above what it held, discard new), then given its limit back`, devices, SIZE, async (set) => {
    await sleep(PUBLISH_MS / 4);
    const { state } = await jsm.streams.info(STREAM);
    await jsm.streams.update(STREAM, { ...original, max_bytes: state.bytes + 64 * 1024, discard: DiscardPolicy.New });
    const ackedBefore = set.acked.size;
    const until = Date.now() + fullMs;
    while (Date.now() < until) {
      answers.push(await publishProbe());
      await sleep(500);
    }
    ackedWhileFull = set.acked.size - ackedBefore;
    await jsm.streams.update(STREAM, original);
    const since = Date.now();
    answers.push(`after: ${await publishProbe()}`);
    const recoverMs = await rig.recovered(set, since);
    return { recoverMs, notes: [`JetStream publishes while full: ${[...new Set(answers)].join(', ')}`, `MQTT QoS 1 PUBACKs while full: ${ackedWhileFull} messages`] };
    // What the stream refused never comes: 20 s for the rest to be stored, not the usual 60.
  }, 20_000);
  // Whatever happens to MQTT, no process exits and nothing is stored twice; JetStream publishers were told.
  expect(rig.exited()).toEqual([]);
  await rig.serving();
  expect(result.duplicatedPoints).toBe(0);
  expect(answers.some((a) => a.startsWith('refused'))).toBe(true);
  expect(answers[answers.length - 1]).toBe('after: OK');
  // The promise: an acknowledged point is not lost. nats-server 2.9's MQTT listener PUBACKs before the stream stores,
  // so a full stream costs exactly the messages it acknowledged meanwhile (RELIABILITY.md): no more.
  expect(result.lostPoints).toBeLessThanOrEqual(ackedWhileFull * SIZE.pointsPerMessage);
}, 240_000);

test(`a fleet at twice the measured capacity for ${OVERLOAD_SECONDS} s: nothing acknowledged lost, the backlog drains, writer memory bounded`, async () => {
  // The baseline: each writer's resident set before any load of this fault, in this run.
  const rssIdle = rig.writerRssMiB();
  const allowance = rig.writerMemoryAllowanceMiB();
  // Capacity: a burst of big messages as fast as the publishers go, timed until the last point is stored.
  const burst: KnownSetSize = { messagesPerDevice: 40, pointsPerMessage: 100, ratePerDevice: 1000 };
  const calibration = rig.knownSet(devices, burst);
  await calibration.connect();
  let capacity: number;
  try {
    const started = Date.now();
    await calibration.publish();
    await calibration.settle(60_000);
    await calibration.drained(await rig.freshPg(), rig.platform.tenantId, 120_000);
    capacity = calibration.plannedPoints / ((Date.now() - started) / 1000);
  } finally {
    await calibration.close();
  }
  const offered = 2 * capacity;
  const ratePerDevice = offered / (devices.length * burst.pointsPerMessage);
  const size: KnownSetSize = { pointsPerMessage: burst.pointsPerMessage, ratePerDevice, messagesPerDevice: Math.max(1, Math.round(ratePerDevice * OVERLOAD_SECONDS)) };
  const jsm = await rig.platform.nc.jetstreamManager();
  const peak: Record<string, number> = {};
  let peakBacklog = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const [k, v] of Object.entries(rig.writerRssMiB())) peak[k] = Math.max(peak[k] ?? 0, v);
      peakBacklog = Math.max(peakBacklog, await jsm.consumers.info(STREAM, 'monitoring-writer').then((c) => c.num_pending + c.num_ack_pending, () => 0));
      await sleep(500);
    }
  })();
  const rssBefore = rig.writerRssMiB();
  let publishedFor = 0;
  const result = await rig.run(
    'overload',
    `${devices.length} MQTT devices offered twice the measured capacity (${number(capacity)} points/s, measured by a burst) for ${OVERLOAD_SECONDS} s`,
    devices,
    size,
    async (set) => {
      const started = Date.now();
      while (set.sent < devices.length * size.messagesPerDevice) await sleep(200);
      publishedFor = (Date.now() - started) / 1000;
      const since = Date.now();
      await set.settle(120_000);
      await set.drained(await rig.freshPg(), rig.platform.tenantId, 300_000);
      const recoverMs = Date.now() - since;
      sampling = false;
      await sampler;
      return {
        recoverMs,
        peakRssMiB: peak,
        notes: [
          `offered ${number(set.sent * size.pointsPerMessage / publishedFor)} points/s for ${publishedFor.toFixed(0)} s (target ${number(offered)})`,
          `peak backlog ${number(peakBacklog)} messages; recovery counts from the last publish until every acknowledged point is stored`,
          `monitoring RSS idle ${summary(mapValues(rssIdle, (v) => `${v} MiB`))}, before the overload ${summary(mapValues(rssBefore, (v) => `${v} MiB`))}, peak ${summary(mapValues(peak, (v) => `${v} MiB`))}; bound: idle + ${allowance} MiB (from the writer's configured bounds)`,
        ],
      };
    },
    300_000,
  );
  sampling = false;
  await sampler;
  await expectKept(result);
  // Memory: the backlog waits in the stream; a replica holds at most WRITER_MAX_HELD_BYTES of payload and
  // WRITER_BATCHES_IN_FLIGHT x WRITER_BATCH_MAX_POINTS decoded points, so its resident set stays within its idle
  // size plus an allowance derived from those bounds (before they existed: 1.0-1.2 GiB per replica).
  console.log(`overload: peak writer RSS ${Object.entries(peak).map(([name, mib]) => `${name} ${mib} MiB`).join(', ')}; allowance ${allowance} MiB over ${summary(mapValues(rssIdle, (v) => `${v} MiB`))}`);
  expect(Object.keys(peak).sort()).toEqual(Object.keys(rssIdle).sort());
  for (const [name, mib] of Object.entries(peak)) expect({ name, peakMiB: mib, withinBound: mib <= rssIdle[name] + allowance }).toEqual({ name, peakMiB: mib, withinBound: true });
}, 900_000);

function number(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function mapValues<T, U>(o: Record<string, T>, f: (v: T) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
}

function summary(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}
