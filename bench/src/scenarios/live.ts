import { ClientReadableStream } from '@grpc/grpc-js';
import { StreamLiveResponse, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { insecureClient, serverStream } from '@iot-mesh/runtime';
import { DEFAULT_BEHAVIOUR } from '../../../simulator/src/device';
import { decodeTelemetry } from '../../../simulator/src/encoding';
import { Fleet } from '../../../simulator/src/fleet';
import { Latencies, sleep } from '../measure';
import { Platform } from '../platform';
import { emptyResult, Scenario } from '../scenario';

/** Opens a live stream and resolves once its first (empty) frame says the subscription is in place. */
export async function openLiveStream(
  client: InstanceType<typeof TelemetryServiceClient>,
  authorization: string,
  request: { deviceIds?: string[]; metrics?: string[] },
  onFrame: (frame: StreamLiveResponse) => void,
): Promise<ClientReadableStream<StreamLiveResponse>> {
  const stream = serverStream(client, client.streamLive, { deviceIds: request.deviceIds ?? [], labels: {}, metrics: request.metrics ?? [] }, { authorization });
  await new Promise<void>((resolve, reject) => {
    let first = true;
    stream.on('data', (frame: StreamLiveResponse) => {
      if (first) {
        first = false;
        resolve();
      }
      onFrame(frame);
    });
    stream.once('error', (err) => (first ? reject(err) : undefined));
  });
  stream.on('error', () => undefined);
  return stream;
}

interface RateResult {
  pointsPerS: number;
  live: Latencies;
  raw: Latencies;
  sent: number;
  received: number;
  dropped: number;
}

/**
 * Publishes at a fixed rate and measures, for every point, the time from its
 * device timestamp (set when the message is built, just before publishing)
 * to its arrival on a live stream; the baseline is a plain NATS subscriber in
 * the same process receiving the same messages.
 */
async function measureRate(platform: Platform, pointsPerS: number, seconds: number, devices: number, warmupMs: number): Promise<RateResult> {
  const tenantId = platform.tenantId;
  const prefix = `live${pointsPerS}`;
  const identities = await platform.devices(prefix, devices);
  const ids = identities.map((d) => d.deviceId);
  const pointsPerMessage = 5; // one full weather reading: every point carries the build time
  const fleet = new Fleet(identities, {
    behaviour: {
      ...DEFAULT_BEHAVIOUR,
      transport: 'nats',
      encoding: 'protobuf',
      rate: pointsPerS / devices / pointsPerMessage,
      points: pointsPerMessage,
      interactive: false,
      trace: false,
    },
  });
  const live = new Latencies();
  const raw = new Latencies();
  let measuring = false;
  let received = 0;
  let dropped = 0;
  const client = insecureClient(TelemetryServiceClient, platform.monitoring!.address);
  const stream = await openLiveStream(client, platform.authorization!, { deviceIds: ids }, (frame) => {
    if (!measuring) return;
    const now = Date.now();
    for (const p of frame.points) if (p.time) live.add(now - p.time.getTime());
    received += frame.points.length;
    dropped += Number(frame.droppedPoints);
  });
  const sub = platform.nc.subscribe(`iot.${tenantId}.dev.*.tel`, {
    callback: (err, msg) => {
      if (err || !measuring || !msg.subject.includes(`.${prefix}-`)) return;
      const now = Date.now();
      for (const p of decodeTelemetry(msg.data, 'protobuf').points) if (p.time) raw.add(now - p.time.getTime());
    },
  });
  await platform.nc.flush();
  try {
    await fleet.connect();
    fleet.start();
    await sleep(warmupMs); // warm-up: connections, JIT, first frames
    measuring = true;
    const sentBefore = fleet.stats.sentPoints;
    await sleep(seconds * 1000);
    const sent = fleet.stats.sentPoints - sentBefore;
    await sleep(300); // let frames in flight arrive
    measuring = false;
    return { pointsPerS, live, raw, sent, received, dropped };
  } finally {
    await fleet.stop();
    sub.unsubscribe();
    stream.cancel();
    client.close();
  }
}

/** Scenario 2: live latency, publish → receipt on the live stream. */
export const liveScenario: Scenario = {
  name: 'live',
  title: 'live latency: device publish → frame on StreamLive, at fixed rates',
  async run(ctx) {
    const platform = await ctx.platform();
    const seconds = ctx.smoke ? 1 : 20;
    const rates = ctx.smoke ? [200, 1000] : [1000, 10_000];
    const devices = ctx.smoke ? 10 : 100;
    const result = emptyResult(this, { seconds, rates, devices, pointsPerMessage: 5, encoding: 'protobuf', transport: 'nats' });
    const { figures, notes } = result;
    for (const rate of rates) {
      ctx.log(`  ${rate} points/s for ${seconds}s…`);
      const r = await measureRate(platform, rate, seconds, devices, ctx.smoke ? 500 : 2000);
      const l = r.live.summary();
      const b = r.raw.summary();
      const judged = !ctx.smoke && rate === 10_000;
      figures.push(
        { measure: `${rate} pts/s: p50`, value: l.p50, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.p50 },
        { measure: `${rate} pts/s: p99`, value: l.p99, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.p99, target: judged ? 'p99 ≤ 50 ms' : undefined, met: judged ? l.p99 <= 50 : undefined },
        { measure: `${rate} pts/s: max`, value: l.max, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.max },
      );
      notes.push(`${rate} pts/s: ${r.sent.toLocaleString('en-US')} points sent in the window, ${r.received.toLocaleString('en-US')} received live (${l.count} timed), ${r.dropped} dropped for slowness`);
    }
    notes.push('latency = arrival time − the point’s device timestamp (set when the message is built, just before publishing); sender and receivers share this process and clock');
    return result;
  },
};
