import { JetStreamManager } from 'nats';
import { Fleet } from '../../../simulator/src/fleet';
import { Transport } from '../../../simulator/src/links';
import { nowMs, processMemory, sleep } from '../measure';
import { Platform } from '../platform';
import { BenchProcess } from '../processes';
import { Curve, Figure, formatNumber } from '../report';
import { BenchContext, emptyResult, Scenario } from '../scenario';
import { connectIngestFleet, drainWriter, ingestPhase, ingestSize, storedRows, writerBacklog } from './ingest';

/** The monitoring service's default dead-letter stream (README "Dead letters"). */
const DEAD_LETTER_STREAM = 'DEAD_LETTERS';

/** Largest RSS drift allowed per process: last window's mean over the first window's after warm-up. */
const MAX_RSS_DRIFT = 0.1;
/** The writer lag may never exceed what the writer drains in this many seconds at the measured capacity. */
const LAG_BOUND_SECONDS = 5;
/** The last third's mean lag may exceed the first third's by at most what the writer drains in this many seconds. */
const LAG_GROWTH_SECONDS = 1;
/** Rows the curves' tables get at most (samples are bucketed: RSS averaged, lag its maximum). */
const CURVE_ROWS = 30;

interface SoakSize {
  seconds: number;
  sampleSeconds: number;
  /** Devices per transport (NATS and MQTT fleets of this size each). */
  devices: number;
  points: number;
  drainLimitSeconds: number;
}

/** One sample of the soak: seconds since it started, every process's RSS (bytes), the writer's lag (messages). */
interface Sample {
  t: number;
  rss: Record<string, number>;
  lag: number;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** The samples with `from ≤ t < to`; the one nearest `from` when none is (a smoke run's windows are shorter than a sample). */
function window(samples: Sample[], from: number, to: number): Sample[] {
  const inside = samples.filter((s) => s.t >= from && s.t < to);
  if (inside.length > 0 || samples.length === 0) return inside;
  return [samples.reduce((best, s) => (Math.abs(s.t - from) < Math.abs(best.t - from) ? s : best))];
}

/** Groups consecutive samples into at most {@link CURVE_ROWS} buckets, each at its mean time. */
function buckets(samples: Sample[]): Sample[][] {
  const per = Math.max(1, Math.ceil(samples.length / CURVE_ROWS));
  const out: Sample[][] = [];
  for (let i = 0; i < samples.length; i += per) out.push(samples.slice(i, i + per));
  return out;
}

/** Lines the service logged at level error or fatal so far (pino JSON lines). */
function errorLogLines(proc: BenchProcess): number {
  return proc.output().match(/"level":"(error|fatal)"/g)?.length ?? 0;
}

/** Messages in the dead-letter stream (0 before monitoring created it). */
async function deadLetters(jsm: JetStreamManager): Promise<number> {
  return jsm.streams.info(DEAD_LETTER_STREAM).then(
    (info) => info.state.messages,
    () => 0,
  );
}

/** The platform's service processes whose logs are checked for errors. */
function serviceProcesses(platform: Platform): BenchProcess[] {
  return [platform.signing?.process, platform.device?.process, platform.monitoring?.process, platform.gateway?.process].filter((p): p is BenchProcess => !!p);
}

function soakSize(smoke: boolean): SoakSize {
  return smoke
    ? { seconds: 3, sampleSeconds: 0.5, devices: 2, points: 10, drainLimitSeconds: 30 }
    : { seconds: Number(process.env.BENCH_SOAK_SECONDS ?? 600), sampleSeconds: Number(process.env.BENCH_SOAK_SAMPLE_SECONDS ?? 5), devices: 50, points: 10, drainLimitSeconds: 60 };
}

/**
 * The soak: the ingest pipeline's capacity measured first in the same run
 * (the ingest scenario's NATS phase), then NATS and MQTT QoS 1 fleets offer
 * half of it together for BENCH_SOAK_SECONDS (600), every process's RSS and
 * the writer's lag sampled every few seconds. Judged: each platform
 * process's RSS drifts < 10 % (last window's mean against the first window
 * after the warm-up; windows of a minute, a sixth of shorter runs), no
 * publish error, dead letter or service error log line, nothing sent left
 * unstored, the lag stays under 5 s of capacity and its last third's mean
 * under the first third's + 1 s of capacity. Not in the default run.
 */
export const soakScenario: Scenario = {
  name: 'soak',
  title: 'soak: NATS + MQTT fleets at half the measured ingest capacity, memory and writer lag over time',
  async run(ctx) {
    const size = soakSize(ctx.smoke);
    const capacitySize = ingestSize(ctx.smoke);
    const platform = await ctx.platform();
    const result = emptyResult(this, { ...size, capacityMeasurement: { ...capacitySize, transport: 'nats' }, encoding: 'protobuf', mqttQos: 1 });
    const { figures, notes } = result;
    const pg = await platform.pg();
    const fleets: Fleet[] = [];
    let fleetsStopped = false;
    try {
      ctx.log(`  capacity: the ingest scenario's NATS phase (${capacitySize.devices} devices, ${capacitySize.seconds}s)…`);
      const measured = await ingestPhase(ctx, platform, pg, 'nats', capacitySize, 'soak-cap');
      const capacity = measured.committedPointsPerS;
      figures.push({ measure: 'capacity: points/s committed while the ingest fleet publishes', value: capacity, unit: 'pts/s', baseline: 'offered by that fleet', baselineValue: measured.offeredPointsPerS });
      if (!(capacity > 0)) throw new Error(`capacity measured as ${capacity} points/s: nothing to soak at`);
      const capacityMsgs = capacity / capacitySize.points;

      const soakRate = capacity / 2;
      const transports: Transport[] = ['nats', 'mqtt'];
      // A device publishes at most 250 msg/s (a quarter of MONITORING_DEVICE_RATE): more devices when the capacity asks for it.
      const devices = Math.max(size.devices, Math.ceil(soakRate / transports.length / size.points / 250));
      const ratePerDevice = soakRate / transports.length / devices / size.points;
      result.parameters.devicesPerTransport = devices;
      result.parameters.msgsPerSecondPerDevice = ratePerDevice;
      for (const transport of transports) {
        const identities = await platform.devices(`soak-${transport}`, devices, transport);
        fleets.push(await connectIngestFleet(identities, transport, ratePerDevice, size.points));
      }
      const ids = fleets.flatMap((f) => f.devices.map((d) => d.identity.deviceId));
      const jsm = await platform.nc.jetstreamManager();
      const services = serviceProcesses(platform);
      const errorLinesBefore = services.map(errorLogLines);
      const deadLettersBefore = await deadLetters(jsm);

      ctx.log(`  soak: ${fleets.length} × ${devices} devices × ${ratePerDevice.toFixed(1)} msg/s × ${size.points} points (${Math.round(soakRate).toLocaleString('en-US')} pts/s, half of ${Math.round(capacity).toLocaleString('en-US')}) for ${size.seconds}s…`);
      const samples: Sample[] = [];
      const sample = async (t: number) => {
        const rss: Record<string, number> = {};
        for (const [name, pid] of Object.entries(platform.pids())) {
          const memory = processMemory(pid);
          if (memory) rss[name] = memory.rss;
        }
        samples.push({ t, rss, lag: await writerBacklog(jsm) });
      };
      const started = nowMs();
      for (const fleet of fleets) fleet.start();
      let logged = 0;
      // Sample on a beat of real time (the process may be too busy to keep it) until the duration has passed.
      for (let s = 1; nowMs() - started < size.seconds * 1000; s++) {
        await sleep(started + s * size.sampleSeconds * 1000 - nowMs());
        const t = (nowMs() - started) / 1000;
        await sample(t);
        if (t - logged >= 30) {
          logged = t;
          const last = samples[samples.length - 1];
          ctx.log(`  ${t.toFixed(0)}s: sent ${fleets.reduce((n, f) => n + f.stats.sentPoints, 0).toLocaleString('en-US')} points, lag ${last.lag} messages, monitoring RSS ${Math.round((last.rss.monitoring ?? 0) / 1e6)} MB`);
        }
      }
      fleetsStopped = true;
      for (const fleet of fleets) await fleet.stop();
      const publishS = (nowMs() - started) / 1000;
      const sentPoints = fleets.reduce((n, f) => n + f.stats.sentPoints, 0);
      const { purged } = await drainWriter(platform, size.drainLimitSeconds);
      const stored = await storedRows(pg, platform.tenantId, ids);
      const publishErrors = fleets.reduce((n, f) => n + f.stats.errorCount, 0);
      const deadLettered = (await deadLetters(jsm)) - deadLettersBefore;
      const errorLines = services.map((p, i) => errorLogLines(p) - errorLinesBefore[i]);
      const judge = (ok: boolean) => (ctx.smoke ? undefined : ok);

      figures.push({ measure: 'points/s offered during the soak', value: sentPoints / publishS, unit: 'pts/s', baseline: 'half the capacity', baselineValue: soakRate });

      // Memory: the first window after the warm-up against the last window.
      const span = Math.min(60, size.seconds / 6);
      const first = window(samples, span, 2 * span);
      const last = window(samples, (samples.at(-1)?.t ?? 0) - span, Infinity);
      // The bench process holds the fleets and the samples: shown, not judged.
      for (const name of Object.keys(samples[0]?.rss ?? {})) {
        const firstMean = mean(first.map((s) => s.rss[name] ?? 0)) / 1e6;
        const lastMean = mean(last.map((s) => s.rss[name] ?? 0)) / 1e6;
        const figure: Figure = { measure: `${name} RSS, mean of the last ${formatNumber(span)} s`, value: lastMean, unit: 'MB', baseline: `mean of ${formatNumber(span)}–${formatNumber(2 * span)} s`, baselineValue: firstMean };
        if (name !== 'bench') Object.assign(figure, { target: `< +${MAX_RSS_DRIFT * 100} %`, met: judge(lastMean < (1 + MAX_RSS_DRIFT) * firstMean) });
        figures.push(figure);
      }

      // Lag: bounded by a few seconds of the writer's capacity, and not growing.
      const lags = samples.map((s) => s.lag);
      const third = Math.max(1, Math.floor(samples.length / 3));
      const firstThird = mean(lags.slice(0, third));
      const lastThird = mean(lags.slice(-third));
      figures.push(
        { measure: 'writer lag (pending + ack pending), max', value: Math.max(0, ...lags), unit: 'msgs', baseline: `${LAG_BOUND_SECONDS} s of capacity`, baselineValue: LAG_BOUND_SECONDS * capacityMsgs, target: '≤ baseline', met: judge(Math.max(0, ...lags) <= LAG_BOUND_SECONDS * capacityMsgs) },
        { measure: 'writer lag, mean of the last third', value: lastThird, unit: 'msgs', baseline: 'first third', baselineValue: firstThird, target: `≤ first third + ${LAG_GROWTH_SECONDS} s of capacity`, met: judge(lastThird <= firstThird + LAG_GROWTH_SECONDS * capacityMsgs) },
      );

      // Errors: none of any kind.
      const zero = (measure: string, value: number, unit: string): Figure => ({ measure, value, unit, target: '0', met: judge(value === 0) });
      // A process gone from the last sample would read as memory that shrank: count it instead.
      const exited = Object.keys(samples[0]?.rss ?? {}).filter((name) => !(name in (samples.at(-1)?.rss ?? {})));
      if (exited.length) notes.push(`exited during the soak: ${exited.join(', ')}`);
      figures.push(
        zero('processes that exited during the soak', exited.length, ''),
        zero('publish errors', publishErrors, ''),
        zero('dead letters', deadLettered, 'msgs'),
        zero('service log lines at error or fatal', errorLines.reduce((a, b) => a + b, 0), 'lines'),
        zero('points sent, not stored after the drain', sentPoints - stored, 'pts'),
      );

      const rssCurve: Curve = { name: 'soak-rss', title: 'RSS of every process during the soak', xLabel: 's', yLabel: 'MB', points: [] };
      const lagCurve: Curve = { name: 'soak-lag', title: 'writer lag during the soak (max per interval)', xLabel: 's', yLabel: 'msgs', points: [] };
      for (const bucket of buckets(samples)) {
        const x = Math.round(mean(bucket.map((s) => s.t)));
        for (const name of Object.keys(bucket[0].rss)) rssCurve.points.push({ series: name, x, y: mean(bucket.map((s) => s.rss[name] ?? 0)) / 1e6 });
        lagCurve.points.push({ series: 'pending + ack pending', x, y: Math.max(...bucket.map((s) => s.lag)) });
      }
      result.curves = [rssCurve, lagCurve];

      notes.push(
        `capacity: ${measured.sentPoints.toLocaleString('en-US')} points sent by ${capacitySize.devices} NATS devices in ${measured.publishS.toFixed(1)} s, ${Math.round(capacity).toLocaleString('en-US')} points/s committed while publishing`,
        `soak: ${sentPoints.toLocaleString('en-US')} points sent in ${publishS.toFixed(1)} s by ${devices} NATS and ${devices} MQTT QoS 1 devices, ${stored.toLocaleString('en-US')} stored${purged ? `; ${purged} messages still queued ${size.drainLimitSeconds} s after the fleets stopped were purged` : ''}; ${samples.length} samples every ${size.sampleSeconds} s`,
        `RSS windows: ${first.length} samples from ${formatNumber(span)} s (after a ${formatNumber(span)} s warm-up) against ${last.length} from the last ${formatNumber(span)} s; the bench process (fleets, samples) is shown, not judged`,
      );
      if (publishErrors) notes.push(`publish errors by kind: ${fleets.map((f) => JSON.stringify(f.stats.errors)).join(', ')}`);
      if (errorLines.some((n) => n > 0)) notes.push(`error log lines: ${services.map((p, i) => `${p.spec.name} ${errorLines[i]}`).join(', ')}`);
    } finally {
      if (!fleetsStopped) for (const fleet of fleets) await fleet.stop().catch(() => undefined);
      await pg.end();
    }
    return result;
  },
};
