import { StreamLiveResponse } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { encodeLiveFragment, liveFrameBytes } from '../src/api/telemetry';
import { LiveFilter, LiveHub } from '../src/domain/live';
import type { KnownDevice, KnownDevices, TelemetryMessage } from '../src/domain/telemetry';

const devices: KnownDevices = {
  get: (tenantId, deviceId): KnownDevice => ({ tenantId, deviceId, labels: { site: deviceId.startsWith('n') ? 'north' : 'south' }, revoked: false }),
  devicesOf: () => [],
  group: () => undefined,
};

const counts = { frames: 0, dropped: 0, open: 0 };
const observer = { frameSent: () => counts.frames++, droppedPoints: (n: number) => (counts.dropped += n), streamsOpen: (n: number) => (counts.open = n) };

function message(deviceId: string, seq: number, metrics = ['temp', 'hum']): TelemetryMessage {
  return {
    tenantId: 't1',
    deviceId,
    messageId: `${deviceId}-${seq}`,
    rows: metrics.map((metric, pointIndex) => ({ tenantId: 't1', deviceId, metric, time: new Date(1_800_000_000_000 + seq), messageId: `${deviceId}-${seq}`, pointIndex, value: { number: seq } })),
  };
}

function filter(partial: Partial<LiveFilter>): LiveFilter {
  return { deviceIds: new Set(), labels: {}, groupIds: [], metrics: new Set(), ...partial };
}

test('a message is encoded once per metric filter and every stream wanting it gets the same bytes', () => {
  let encoded = 0;
  const hub = new LiveHub(devices, 1000, observer, (points) => (encoded++, encodeLiveFragment(points)));
  const all = Array.from({ length: 200 }, () => hub.open('t1', filter({ deviceIds: new Set(['n1']) })));
  const tempOnly = Array.from({ length: 50 }, () => hub.open('t1', filter({ labels: { site: 'north' }, metrics: new Set(['temp']) })));
  const elsewhere = hub.open('t1', filter({ labels: { site: 'south' } }));
  hub.deliver(message('n1', 1));
  expect(encoded).toBe(2);
  const frames = all.map((c) => liveFrameBytes(c.take()));
  expect(new Set(frames.map((f) => f.buffer)).size).toBe(1);
  expect(StreamLiveResponse.decode(frames[0]).points.map((p) => p.metric)).toEqual(['temp', 'hum']);
  const temp = tempOnly.map((c) => liveFrameBytes(c.take()));
  expect(new Set(temp.map((f) => f.buffer)).size).toBe(1);
  expect(StreamLiveResponse.decode(temp[0]).points.map((p) => p.metric)).toEqual(['temp']);
  expect(liveFrameBytes(elsewhere.take()).length).toBe(0);
  for (const c of [...all, ...tempOnly, elsewhere]) c.close();
  expect(counts.open).toBe(0);
  expect(hub.wants('t1')).toBe(false);
});

test('points coalesce while a frame is in flight into one frame holding them all in order', () => {
  const hub = new LiveHub(devices, 1000, observer, encodeLiveFragment);
  const client = hub.open('t1', filter({}));
  for (let seq = 1; seq <= 3; seq++) hub.deliver(message(seq % 2 ? 'n1' : 's1', seq));
  const frame = StreamLiveResponse.decode(liveFrameBytes(client.take()));
  expect(frame.points.map((p) => `${p.deviceId}/${p.metric}/${p.value?.numberValue}`)).toEqual(['n1/temp/1', 'n1/hum/1', 's1/temp/2', 's1/hum/2', 'n1/temp/3', 'n1/hum/3']);
  expect(frame.droppedPoints).toBe(0n);
  client.close();
});

test('a slow client keeps at most its capacity, the newest points, and is told how many it lost', async () => {
  const hub = new LiveHub(devices, 10, observer, encodeLiveFragment);
  const client = hub.open('t1', filter({ deviceIds: new Set(['n1']) }));
  const before = counts.dropped;
  for (let seq = 1; seq <= 8; seq++) hub.deliver(message('n1', seq));
  await client.ready(new AbortController().signal);
  const frame = StreamLiveResponse.decode(liveFrameBytes(client.take()));
  expect(frame.points.map((p) => p.value?.numberValue)).toEqual([4, 4, 5, 5, 6, 6, 7, 7, 8, 8]);
  expect(frame.droppedPoints).toBe(6n);
  expect(counts.dropped - before).toBe(6);
  // What was lost is reported once: the next frame starts from zero.
  hub.deliver(message('n1', 9));
  expect(StreamLiveResponse.decode(liveFrameBytes(client.take())).droppedPoints).toBe(0n);
  client.close();
});
