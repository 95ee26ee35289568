import { ClientReadableStream, credentials } from '@grpc/grpc-js';
import { StreamLiveResponse, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { DEFAULT_BEHAVIOUR } from '../../../simulator/src/device';
import { Fleet } from '../../../simulator/src/fleet';
import { Latencies, nowMs, PeakSampler, processMemory, sleep } from '../measure';
import { Platform } from '../platform';
import { emptyResult, Scenario } from '../scenario';
import { openLiveStream } from './live';

interface FanoutSize {
  streams: number;
  channels: number;
  devices: number;
  pointsPerS: number;
  seconds: number;
}

function memoryProbes(platform: Platform): Record<string, () => number | undefined> {
  return Object.fromEntries(Object.entries(platform.pids()).map(([name, pid]) => [name, () => processMemory(pid)?.rss]));
}

function mb(bytes: number | undefined): number {
  return (bytes ?? 0) / 1e6;
}

/**
 * Scenario 6: live fan-out. Many concurrent StreamLive calls (over several
 * HTTP/2 connections) watch the same devices while a fleet publishes;
 * counted: frames and points delivered per second, points dropped for slow
 * readers, and the memory of every process. Baseline: as many plain NATS
 * subscriptions receiving the same traffic.
 */
export const fanoutScenario: Scenario = {
  name: 'fanout',
  title: 'live fan-out: concurrent StreamLive streams on the same devices',
  async run(ctx) {
    const platform = await ctx.platform();
    const size: FanoutSize = ctx.smoke
      ? { streams: 20, channels: 2, devices: 5, pointsPerS: 200, seconds: 2 }
      : { streams: 500, channels: 10, devices: 50, pointsPerS: 1000, seconds: 20 };
    const result = emptyResult(this, { ...size, pointsPerMessage: 5 });
    const { figures, notes } = result;
    const tenantId = platform.tenantId;
    const identities = await platform.devices('fan', size.devices, 'nats');
    const ids = identities.map((d) => d.deviceId);
    const fleet = new Fleet(identities, {
      behaviour: { ...DEFAULT_BEHAVIOUR, transport: 'nats', encoding: 'protobuf', rate: size.pointsPerS / size.devices / 5, points: 5, interactive: false, trace: false },
    });
    const clients = Array.from(
      { length: size.channels },
      () => new TelemetryServiceClient(platform.monitoring!.address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
    );
    const streams: ClientReadableStream<StreamLiveResponse>[] = [];
    // Points are counted by their device timestamp, not by when they arrive: a point published in
    // the window and still on its way when the window closes is late, not lost. (Counting arrivals
    // inside the window is what once reported "43 % delivered, 0 dropped": the rest was backlog.)
    let window = { from: Infinity, to: Infinity };
    let counting = false;
    let frames = 0;
    let points = 0;
    let late = 0;
    let dropped = 0;
    /** When the last point published in the window arrived. */
    let lastFrameAt = 0;
    const delays = new Latencies();
    const onFrame = (frame: StreamLiveResponse) => {
      if (!counting) return;
      const now = Date.now();
      if (now < window.to) frames++;
      dropped += Number(frame.droppedPoints);
      for (const p of frame.points) {
        const t = p.time?.getTime() ?? 0;
        if (t < window.from || t >= window.to) continue;
        points++;
        lastFrameAt = now;
        if (now >= window.to) late++;
        delays.add(now - t);
      }
    };
    const idle = new PeakSampler(memoryProbes(platform));
    idle.stop();
    try {
      ctx.log(`  opening ${size.streams} live streams…`);
      const openStarted = nowMs();
      for (let i = 0; i < size.streams; i += 50) {
        const opened = await Promise.all(
          Array.from({ length: Math.min(50, size.streams - i) }, (_, j) => openLiveStream(clients[(i + j) % clients.length], platform.authorization!, { deviceIds: ids }, onFrame)),
        );
        streams.push(...opened);
      }
      const openS = (nowMs() - openStarted) / 1000;
      await fleet.connect();
      fleet.start();
      await sleep(ctx.smoke ? 500 : 2000);
      const memory = new PeakSampler(memoryProbes(platform));
      counting = true;
      const sentBefore = fleet.stats.sentPoints;
      const started = nowMs();
      window = { from: Date.now(), to: Infinity };
      await sleep(size.seconds * 1000);
      window = { ...window, to: Date.now() };
      const seconds = (nowMs() - started) / 1000;
      const sent = fleet.stats.sentPoints - sentBefore;
      // Keep reading until no point published in the window has arrived for a second (at most 30 s):
      // what is still queued arrives, or is reported dropped.
      lastFrameAt = Date.now();
      const drainStarted = nowMs();
      while (Date.now() - lastFrameAt < 1000 && nowMs() - drainStarted < 30_000) await sleep(200);
      const drainS = (nowMs() - drainStarted) / 1000;
      counting = false;
      const peaks = memory.stop();
      for (const s of streams) s.cancel();
      streams.length = 0;

      // Baseline: the same traffic to as many plain NATS subscriptions (one connection per channel, like the gRPC side).
      const ncs = await Promise.all(Array.from({ length: size.channels }, (_, i) => platform.connectNats(`bench-fanout-${i}`)));
      let rawPoints = 0;
      let rawMessages = 0;
      let rawCounting = false;
      for (let i = 0; i < size.streams; i++) {
        ncs[i % ncs.length].subscribe(`iot.${tenantId}.dev.*.tel`, {
          callback: (err, msg) => {
            if (!err && rawCounting && msg.subject.includes('.fan-')) {
              rawMessages++;
              rawPoints += 5;
            }
          },
        });
      }
      await Promise.all(ncs.map((nc) => nc.flush()));
      await sleep(ctx.smoke ? 200 : 1000);
      rawCounting = true;
      const rawStarted = nowMs();
      const rawSentBefore = fleet.stats.sentPoints;
      await sleep(size.seconds * 1000);
      rawCounting = false;
      const rawSeconds = (nowMs() - rawStarted) / 1000;
      const rawSent = fleet.stats.sentPoints - rawSentBefore;
      await Promise.all(ncs.map((nc) => nc.close()));

      const expected = sent * size.streams;
      const d = delays.summary();
      figures.push(
        { measure: `frames/s over ${size.streams} streams`, value: frames / seconds, unit: '/s', baseline: `messages/s to ${size.streams} raw NATS subscriptions`, baselineValue: rawMessages / rawSeconds },
        { measure: 'points/s delivered (all streams)', value: points / seconds, unit: 'pts/s', baseline: `${size.streams} raw NATS subscriptions`, baselineValue: rawPoints / rawSeconds },
        {
          measure: 'share of published points delivered',
          value: expected ? points / expected : 0,
          unit: '',
          baseline: 'raw NATS',
          baselineValue: rawSent ? rawPoints / (rawSent * size.streams) : 0,
          target: '= 1 (all delivered)',
          met: ctx.smoke ? undefined : expected > 0 && points / expected >= 0.999,
        },
        { measure: 'share delivered or reported dropped', value: expected ? (points + dropped) / expected : 0, unit: '', baseline: 'raw NATS', baselineValue: rawSent ? rawPoints / (rawSent * size.streams) : 0 },
        { measure: 'publish → frame p99', value: d.p99, unit: 'ms' },
        {
          measure: 'monitoring RSS with streams open',
          value: mb(peaks.get('monitoring')),
          unit: 'MB',
          baseline: 'before the streams opened',
          baselineValue: mb(idle.peaks.get('monitoring')),
          target: '≤ 400 MB',
          met: ctx.smoke ? undefined : mb(peaks.get('monitoring')) <= 400,
        },
      );
      notes.push(
        `${size.streams} streams opened in ${openS.toFixed(1)} s over ${size.channels} HTTP/2 connections; fleet ${Math.round(sent / seconds)} pts/s; of the ${expected.toLocaleString('en-US')} points due (published in the window × streams), ${points.toLocaleString('en-US')} arrived (${late.toLocaleString('en-US')} of them after the window closed, within ${drainS.toFixed(1)} s), ${dropped.toLocaleString('en-US')} reported dropped for slow readers; p50 ${d.p50.toFixed(1)} ms`,
      );
      notes.push(`peak RSS during the run: ${[...peaks.entries()].map(([n, v]) => `${n} ${Math.round(mb(v))} MB`).join(', ')}`);
    } finally {
      for (const s of streams) s.cancel();
      await fleet.stop();
      for (const c of clients) c.close();
    }
    return result;
  },
};
