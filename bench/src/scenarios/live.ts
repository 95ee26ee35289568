import { ClientReadableStream } from '@grpc/grpc-js';
import { StreamLiveResponse, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { insecureClient, serverStream } from '@iot-mesh/runtime';
import { DEFAULT_BEHAVIOUR } from '../../../simulator/src/device';
import { decodeTelemetry } from '../../../simulator/src/encoding';
import { Fleet } from '../../../simulator/src/fleet';
import { Latencies, sleep } from '../measure';
import { Platform } from '../platform';
import { Curve } from '../report';
import { emptyResult, Scenario } from '../scenario';

/** Opens a live stream and resolves once its first (empty) frame says the subscription is in place. */
export async function openLiveStream(
  client: InstanceType<typeof TelemetryServiceClient>,
  authorization: string,
  request: { deviceIds?: string[]; metrics?: string[] },
  onFrame: (frame: StreamLiveResponse) => void,
): Promise<ClientReadableStream<StreamLiveResponse>> {
  const stream = serverStream(client, client.streamLive, { deviceIds: request.deviceIds ?? [], labels: {}, groupIds: [], metrics: request.metrics ?? [] }, { authorization });
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
async function measureRate(platform: Platform, pointsPerS: number, seconds: number, devices: number, warmupMs: number, streams = 1): Promise<RateResult> {
  const tenantId = platform.tenantId;
  const prefix = `live${pointsPerS}x${streams}`;
  const identities = await platform.devices(prefix, devices, 'nats');
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
  // Many streams go over several HTTP/2 connections, as many browsers would.
  const clients = Array.from({ length: Math.min(10, streams) }, () =>
    insecureClient(TelemetryServiceClient, platform.monitoring!.address, { options: { 'grpc.use_local_subchannel_pool': 1 } }),
  );
  const onFrame = (frame: StreamLiveResponse) => {
    if (!measuring) return;
    const now = Date.now();
    for (const p of frame.points) if (p.time) live.add(now - p.time.getTime());
    received += frame.points.length;
    dropped += Number(frame.droppedPoints);
  };
  const opened: ClientReadableStream<StreamLiveResponse>[] = [];
  for (let i = 0; i < streams; i += 50) {
    opened.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(50, streams - i) }, (_, j) => openLiveStream(clients[(i + j) % clients.length], platform.authorization!, { deviceIds: ids }, onFrame)),
      )),
    );
  }
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
    for (const stream of opened) stream.cancel();
    for (const client of clients) client.close();
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
        { measure: `${rate} pts/s: p50`, value: l.p50, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.p50, target: judged ? 'p50 ≤ 5 ms' : undefined, met: judged ? l.p50 <= 5 : undefined },
        { measure: `${rate} pts/s: p99`, value: l.p99, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.p99, target: judged ? 'p99 ≤ 25 ms' : undefined, met: judged ? l.p99 <= 25 : undefined },
        { measure: `${rate} pts/s: max`, value: l.max, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.max },
      );
      notes.push(`${rate} pts/s: ${r.sent.toLocaleString('en-US')} points sent in the window, ${r.received.toLocaleString('en-US')} received live (${l.count} timed), ${r.dropped} dropped for slowness`);
    }
    // The scaling curve: p99 with more streams watching the same devices. The rate is low so that
    // this one process can decode what 500 streams receive (100 pts/s × 500 = 50k pts/s).
    const curveRate = ctx.smoke ? 100 : 100;
    const streamCounts = ctx.smoke ? [1, 5] : [1, 50, 500];
    const curve: Curve = { name: 'live-p99-streams', title: `live p99 against the number of streams (${curveRate} pts/s on 10 devices)`, xLabel: 'streams', yLabel: 'p99 ms', logX: true, points: [] };
    result.curves = [curve];
    for (const streams of streamCounts) {
      ctx.log(`  ${streams} streams at ${curveRate} points/s for ${seconds}s…`);
      const r = await measureRate(platform, curveRate, seconds, 10, ctx.smoke ? 500 : 2000, streams);
      const l = r.live.summary();
      const b = r.raw.summary();
      figures.push({ measure: `${streams} streams: p99`, value: l.p99, unit: 'ms', baseline: 'raw NATS subscriber', baselineValue: b.p99 });
      curve.points.push({ series: 'StreamLive', x: streams, y: l.p99 }, { series: 'raw NATS subscriber', x: streams, y: b.p99 });
      notes.push(`${streams} streams: ${r.sent.toLocaleString('en-US')} points sent, ${r.received.toLocaleString('en-US')} received over all streams (${(r.sent ? r.received / (r.sent * streams) : 0).toFixed(3)} of sent × streams), ${r.dropped} dropped for slowness; p50 ${l.p50.toFixed(1)} ms`);
    }
    notes.push('latency = arrival time − the point’s device timestamp (set when the message is built, just before publishing); sender and receivers share this process and clock');
    return result;
  },
};
