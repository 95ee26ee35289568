import { JetStreamManager } from 'nats';
import { Client } from 'pg';
import { DEFAULT_BEHAVIOUR, DeviceBehaviour, DeviceIdentity } from '../../../simulator/src/device';
import { encodeTelemetry } from '../../../simulator/src/encoding';
import { Fleet } from '../../../simulator/src/fleet';
import { Transport } from '../../../simulator/src/links';
import { createSensor, PointSource } from '../../../simulator/src/profiles';
import { rawCopyRate, rawJetStreamRate } from '../baselines';
import { nowMs, PeakSampler, processMemory, sleep, waitFor } from '../measure';
import { Platform } from '../platform';
import { Curve } from '../report';
import { BenchContext, emptyResult, Scenario } from '../scenario';

/**
 * Points of these devices committed so far, exactly: the writer folds every
 * inserted numeric point into its minute rollup in the same transaction, so
 * the sum of the minute rollups' counts moves at each commit (a few rows per
 * device and metric: cheap). The statistics collector's n_tup_ins, read
 * before, is flushed at most once a second per backend, so one-second
 * samples of it alternated 0 / 50,000 whatever the writer did.
 */
async function committedPoints(pg: Client, tenantId: string, deviceIds: string[]): Promise<number> {
  const { rows } = await pg.query('SELECT coalesce(sum(count), 0)::bigint AS n FROM monitoring.rollups WHERE tenant_id = $1 AND device_id = ANY($2) AND width_s = 60', [tenantId, deviceIds]);
  return Number(rows[0].n);
}

/** Rows stored for these devices (every point, committed or not yet rolled up). */
export async function storedRows(pg: Client, tenantId: string, deviceIds: string[]): Promise<number> {
  const { rows } = await pg.query('SELECT count(*)::bigint AS n FROM monitoring.points WHERE tenant_id = $1 AND device_id = ANY($2)', [tenantId, deviceIds]);
  return Number(rows[0].n);
}

/**
 * A connected fleet of `identities` publishing telemetry only: `rate`
 * Protobuf messages a second each of `points` points, MQTT at QoS 1, up to
 * 512 messages in flight per device.
 */
export async function connectIngestFleet(identities: DeviceIdentity[], transport: Transport, rate: number, points: number): Promise<Fleet> {
  const behaviour: DeviceBehaviour = { ...DEFAULT_BEHAVIOUR, transport, encoding: 'protobuf', rate, points, jitter: 0.1, qos: 1, interactive: false, maxInFlight: 512 };
  const fleet = new Fleet(identities, { behaviour, connectConcurrency: 50 });
  await fleet.connect();
  return fleet;
}

export interface PhaseResult {
  transport: Transport;
  offeredPointsPerS: number;
  committedPointsPerS: number;
  /** Undefined when the backlog did not drain within the limit. */
  endToEndPointsPerS?: number;
  drainS: number;
  purgedMessages: number;
  sentPoints: number;
  stored: number;
  publishS: number;
}

/**
 * One run of the fleet against the pipeline: devices publish for the
 * duration; committed points are sampled from the minute rollups during
 * the run; afterwards the backlog drains and the exact row count is checked
 * against what was sent. With a fleet offering more than the writer takes,
 * `committedPointsPerS` is the pipeline's capacity (the soak runs at half of it).
 */
export async function ingestPhase(ctx: BenchContext, platform: Platform, pg: Client, transport: Transport, size: IngestSize, prefix = `ing-${transport}`): Promise<PhaseResult> {
  const identities = await platform.devices(prefix, size.devices, transport);
  const tenantId = platform.tenantId;
  const ids = identities.map((d) => d.deviceId);
  const fleet = await connectIngestFleet(identities, transport, size.rate, size.points);
  const before = await committedPoints(pg, tenantId, ids);
  const started = nowMs();
  fleet.start();
  const samples: string[] = [];
  let last = before;
  // Sample once a second of real time until the duration has passed (the process may be too busy to keep the beat).
  for (let s = 1; nowMs() - started < size.seconds * 1000; s++) {
    await sleep(started + s * 1000 - nowMs());
    const now = await committedPoints(pg, tenantId, ids);
    samples.push(`${now - last}`);
    last = now;
    if (s % 5 === 0) ctx.log(`  ${transport} ${((nowMs() - started) / 1000).toFixed(0)}s: sent ${fleet.stats.sentPoints} points, committed ${now - before}`);
  }
  await fleet.stop();
  const publishS = (nowMs() - started) / 1000;
  const committedDuring = (await committedPoints(pg, tenantId, ids)) - before;
  const sentPoints = fleet.stats.sentPoints;
  const { drainedAt, purged } = await drainWriter(platform, size.drainLimitSeconds);
  const stored = await storedRows(pg, tenantId, ids);
  ctx.log(`  ${transport}: ${stored}/${sentPoints} points stored${purged ? ` (${purged} messages purged undrained)` : ''}; commits per second: ${samples.join(' ')}`);
  return {
    transport,
    offeredPointsPerS: sentPoints / publishS,
    committedPointsPerS: committedDuring / publishS,
    endToEndPointsPerS: purged ? undefined : stored / ((drainedAt - started) / 1000),
    drainS: (drainedAt - started) / 1000 - publishS,
    purgedMessages: purged,
    sentPoints,
    stored,
    publishS,
  };
}

export interface IngestSize {
  devices: number;
  rate: number;
  points: number;
  seconds: number;
  baselineSeconds: number;
  /** Longest wait for the backlog after the fleet stops. */
  drainLimitSeconds: number;
}

/** The monitoring service's default stream and durable consumer names. */
const STREAM = 'TELEMETRY';
const CONSUMER = 'monitoring-writer';

/** The writer consumer's backlog in messages: not yet delivered (`num_pending`) plus delivered and not yet acknowledged (`num_ack_pending`). */
export async function writerBacklog(jsm: JetStreamManager): Promise<number> {
  const info = await jsm.consumers.info(STREAM, CONSUMER);
  return info.num_pending + info.num_ack_pending;
}

/**
 * Waits until the writer's consumer has nothing pending or unacknowledged,
 * or `limitSeconds` pass; then purges what is left so the next run starts
 * from an empty stream. `drainedAt` is when it drained (or the limit passed),
 * `purged` the messages dropped undrained.
 */
export async function drainWriter(platform: Platform, limitSeconds: number): Promise<{ drainedAt: number; purged: number }> {
  const jsm = await platform.nc.jetstreamManager();
  let left = await writerBacklog(jsm);
  const drainLimit = nowMs() + limitSeconds * 1000;
  while (left > 0 && nowMs() < drainLimit) {
    await sleep(250);
    left = await writerBacklog(jsm);
  }
  const drainedAt = nowMs();
  if (left > 0) {
    await jsm.streams.purge(STREAM);
    await waitFor('the writer to finish its batch', async () => (await writerBacklog(jsm)) === 0, 60_000, 250).catch(() => undefined);
  }
  return { drainedAt, purged: left };
}

/** The ingest scenario's fleet: it offers more than the writer takes, so what is committed measures the writer. */
export function ingestSize(smoke: boolean): IngestSize {
  return smoke
    ? { devices: 5, rate: 20, points: 10, seconds: 1, baselineSeconds: 0.5, drainLimitSeconds: 30 }
    : // 300 msgs/s × 10 points × 100 devices offers more than raw COPY takes, so the writer, not the fleet, sets the committed rate.
      { devices: 100, rate: Number(process.env.BENCH_INGEST_RATE ?? 300), points: 10, seconds: 30, baselineSeconds: 10, drainLimitSeconds: 60 };
}

/** Scenario 1: durable ingest, devices → NATS/MQTT → writer → committed rows. */
export const ingestScenario: Scenario = {
  name: 'ingest',
  title: 'durable ingest: devices → NATS/MQTT → JetStream → writer → committed rows',
  async run(ctx) {
    const size = ingestSize(ctx.smoke);
    const platform = await ctx.platform();
    const result = emptyResult(this, { ...size, encoding: 'protobuf', mqttQos: 1 });
    const { figures, notes } = result;
    const pg = await platform.pg();
    const memory = new PeakSampler(Object.fromEntries(Object.entries(platform.pids()).map(([name, pid]) => [name, () => processMemory(pid)?.rss])));
    try {
      ctx.log(`  baseline: raw COPY for ${size.baselineSeconds}s…`);
      const copy = await rawCopyRate(platform.db.url, size.baselineSeconds * 1000);
      const sample = encodeTelemetry(
        { deviceId: 'd-1', messageId: 'd-1-abcdef12-1', points: new PointSource(createSensor('weather', 1)).next(size.points, new Date(), 1000) },
        'protobuf',
      );
      ctx.log(`  baseline: raw JetStream async publish (${sample.length} B messages) for ${size.baselineSeconds}s…`);
      const js = await rawJetStreamRate(platform.natsOptions('bench-raw-jetstream'), sample, size.baselineSeconds * 1000);
      const jsPoints = js.perSecond * size.points;
      for (const transport of ['nats', 'mqtt'] as const) {
        const r = await ingestPhase(ctx, platform, pg, transport, size);
        const target = 0.7 * copy.perSecond;
        figures.push(
          { measure: `${transport}: points/s committed while publishing`, value: r.committedPointsPerS, unit: 'pts/s', baseline: 'raw COPY', baselineValue: copy.perSecond, target: '≥ 0.7 × raw COPY', met: ctx.smoke ? undefined : r.committedPointsPerS >= target },
          ...(r.endToEndPointsPerS === undefined
            ? []
            : [{ measure: `${transport}: points/s end to end incl. drain`, value: r.endToEndPointsPerS, unit: 'pts/s', baseline: 'raw COPY', baselineValue: copy.perSecond, target: '≥ 0.8 × raw COPY', met: ctx.smoke ? undefined : r.endToEndPointsPerS >= 0.8 * copy.perSecond }]),
          { measure: `${transport}: points/s offered by the fleet`, value: r.offeredPointsPerS, unit: 'pts/s', baseline: 'raw JetStream publish', baselineValue: jsPoints },
        );
        notes.push(
          r.purgedMessages
            ? `${transport}: ${r.sentPoints.toLocaleString('en-US')} points sent in ${r.publishS.toFixed(1)} s; ${r.purgedMessages.toLocaleString('en-US')} messages still queued ${size.drainLimitSeconds} s after the fleet stopped were purged (${r.stored.toLocaleString('en-US')} points stored)`
            : `${transport}: ${r.sentPoints.toLocaleString('en-US')} points sent in ${r.publishS.toFixed(1)} s, ${r.stored.toLocaleString('en-US')} stored; backlog drained ${r.drainS.toFixed(1)} s after the fleet stopped`,
        );
        if (!r.purgedMessages && r.stored !== r.sentPoints) notes.push(`${transport}: ${r.sentPoints - r.stored} points sent but not stored (dropped before JetStream: client or server buffers)`);
      }
      notes.push(`raw JetStream baseline: ${Math.round(js.perSecond).toLocaleString('en-US')} msgs/s of ${sample.length} B × ${size.points} points; raw COPY: ${Math.round(copy.perSecond).toLocaleString('en-US')} rows/s`);
    } finally {
      const peaks = memory.stop();
      notes.push(`peak RSS: ${[...peaks.entries()].map(([n, v]) => `${n} ${Math.round(v / 1e6)} MB`).join(', ')}`);
      await pg.end();
    }
    return result;
  },
};

/**
 * Scenario 1b: the ingest scaling curve. The same total rate (over NATS)
 * from 100, 1,000 and 10,000 devices: committed and end-to-end rates should
 * stay within 20 % of each other, i.e. the cost is per point, not per device.
 */
export const ingestScaleScenario: Scenario = {
  name: 'ingest-scale',
  title: 'ingest scaling: the same total rate from 100, 1,000 and 10,000 devices',
  async run(ctx) {
    const totalPointsPerS = ctx.smoke ? 200 : 20_000;
    const points = 10;
    // BENCH_INGEST_DEVICES=100,1000 runs fewer sizes (10,000 devices take minutes to provision and connect on a loaded machine).
    const deviceCounts = ctx.smoke ? [2, 5, 10] : (process.env.BENCH_INGEST_DEVICES?.split(',').map(Number) ?? [100, 1000, 10_000]);
    const seconds = ctx.smoke ? 1 : 20;
    const platform = await ctx.platform();
    const result = emptyResult(this, { totalPointsPerS, points, deviceCounts, seconds, transport: 'nats', encoding: 'protobuf' });
    const { figures, notes } = result;
    const curve: Curve = { name: 'ingest-devices', title: `ingest against the number of devices (${totalPointsPerS.toLocaleString('en-US')} pts/s offered in total)`, xLabel: 'devices', yLabel: 'pts/s', logX: true, points: [] };
    result.curves = [curve];
    const pg = await platform.pg();
    try {
      let first: number | undefined;
      for (const devices of deviceCounts) {
        ctx.log(`  ${devices} devices…`);
        const size: IngestSize = { devices, rate: totalPointsPerS / points / devices, points, seconds, baselineSeconds: 0, drainLimitSeconds: 60 };
        const r = await ingestPhase(ctx, platform, pg, 'nats', size, `ings${devices}`);
        first ??= r.committedPointsPerS;
        figures.push({
          measure: `${devices} devices: points/s committed while publishing`,
          value: r.committedPointsPerS,
          unit: 'pts/s',
          baseline: `${deviceCounts[0]} devices, same run`,
          baselineValue: first,
          target: devices === deviceCounts[0] ? undefined : 'within 20 %',
          met: ctx.smoke || devices === deviceCounts[0] ? undefined : Math.abs(r.committedPointsPerS / first - 1) <= 0.2,
        });
        curve.points.push(
          { series: 'offered', x: devices, y: r.offeredPointsPerS },
          { series: 'committed while publishing', x: devices, y: r.committedPointsPerS },
          ...(r.endToEndPointsPerS === undefined ? [] : [{ series: 'end to end incl. drain', x: devices, y: r.endToEndPointsPerS }]),
        );
        notes.push(`${devices} devices: ${r.sentPoints.toLocaleString('en-US')} points sent in ${r.publishS.toFixed(1)} s, ${r.stored.toLocaleString('en-US')} stored, drained ${r.drainS.toFixed(1)} s after the fleet stopped${r.purgedMessages ? `, ${r.purgedMessages} messages purged undrained` : ''}`);
      }
    } finally {
      await pg.end();
    }
    return result;
  },
};
