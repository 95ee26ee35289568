import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { once } from 'node:events';
import { status } from '@grpc/grpc-js';
import { parse } from 'csv-parse/sync';
import { ExportFormat, ExportPointsRequest, ExportPointsResponse, ExportServiceClient } from '../../../gen/ts/iot/monitoring/v1/export';
import { serverStream } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { PostgresTelemetryStore } from '../src/store/postgres-store';
import { eventually, MonitoringWorld, protobufPayload, SignedWorld, startSignedWorld } from './harness';

// hyparquet ships only ES modules (jest transforms them, see jest.config.js).
type HyparquetModule = typeof import('hyparquet', { with: { 'resolution-mode': 'import' } });
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { asyncBufferFromFile, parquetMetadataAsync, parquetRead } = require('hyparquet') as HyparquetModule;

jest.setTimeout(120_000);

const MIN = 60_000;
const BIG = 1_000_000;
/** Heap growth allowed while exporting a million points (a resource bound, not a timing). */
const HEAP_BOUND = 100 * 1024 * 1024;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
/** Heap still reachable after a full collection: what the export holds, not garbage awaiting collection. */
function retainedHeap(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

let signed: SignedWorld;
let world: MonitoringWorld;
let a: TestTenant;
let b: TestTenant;
let client: ExportServiceClient;
let dir: string;
/** Where the big series starts: a whole minute some hours ago. */
const bigBase = Math.floor((Date.now() - 20 * 60 * MIN) / MIN) * MIN;
/** Published points of the small devices, as the test knows them. */
const published: { tenant: string; deviceId: string; metric: string; time: number; number?: number; bool?: boolean; string?: string }[] = [];

beforeAll(async () => {
  ({ world, a, b } = signed = await startSignedWorld());
  client = signed.client(ExportServiceClient);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'export-test-'));

  await world.registerDevice(a.tenantId, 'big', { labels: { fleet: 'bulk' } });
  await world.registerDevice(a.tenantId, 'g1', { labels: { site: 'north' }, type: 'meter' });
  await world.registerDevice(a.tenantId, 'g2', { labels: { site: 'north' }, type: 'meter' });
  await world.registerDevice(a.tenantId, 'g3', { labels: { site: 'south' }, type: 'meter' });
  await world.registerDevice(a.tenantId, 'other', { labels: { site: 'north' } });
  await world.registerDevice(b.tenantId, 'g1', { labels: { site: 'north' }, type: 'meter' });

  // The small devices go through the writer (which builds the rollups history reads).
  const smallBase = Math.floor((Date.now() - 90 * MIN) / MIN) * MIN;
  const devices: [string, string][] = [
    [a.tenantId, 'g1'],
    [a.tenantId, 'g2'],
    [a.tenantId, 'g3'],
    [a.tenantId, 'other'],
    [b.tenantId, 'g1'],
  ];
  for (const [k, [tenant, deviceId]] of devices.entries()) {
    const points = Array.from({ length: 240 }, (_, i) => ({ time: smallBase + i * 15_000, number: ((i * 7 + k) % 23) + 0.5 }));
    const rows: (typeof published)[number][] = [
      ...points.map((p) => ({ tenant, deviceId, metric: 'temp', time: p.time, number: p.number })),
      { tenant, deviceId, metric: 'door', time: smallBase + 1000, bool: k % 2 === 0 },
      { tenant, deviceId, metric: 'note', time: smallBase + 2000, string: `says "hi", then\nleaves ${k}` },
    ];
    published.push(...rows);
    await world.publish(
      tenant,
      deviceId,
      protobufPayload({ messageId: `m-${k}`, points: rows.map((r) => ({ metric: r.metric, time: new Date(r.time), numberValue: r.number, boolValue: r.bool, stringValue: r.string })) }),
    );
  }
  await eventually(async () => (await world.rowCount(a.tenantId)) + (await world.rowCount(b.tenantId)) === published.length, 'published rows stored');

  // A million points loaded in the database itself (the writer's path is measured elsewhere): one every 50 ms.
  await new PostgresTelemetryStore(world.pool).ensurePartitions(new Date(bigBase), new Date(bigBase + BIG * 50));
  await world.pool.query(
    `INSERT INTO points (tenant_id, device_id, metric, time, message_id, point_index, number_value)
     SELECT $1, 'big', 'temp', to_timestamp(($2::bigint + i * 50) / 1000.0), 'b' || i, 0, (i % 1000)::float8
       FROM generate_series(0, $3::int - 1) AS i`,
    [a.tenantId, bigBase, BIG],
  );
  await world.pool.query('ANALYZE points');
});

afterAll(async () => {
  await signed?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs an export into a file, as a download would: each chunk written (and drained) before the next is read. */
async function download(request: Partial<ExportPointsRequest>, tenant: TestTenant, file: string, onChunk?: () => void): Promise<ExportPointsResponse> {
  const call = serverStream(client, client.exportPoints, ExportPointsRequest.fromPartial(request), { authorization: tenant.viewer.authorization });
  const out = fs.createWriteStream(file);
  let first: ExportPointsResponse | undefined;
  for await (const message of call as AsyncIterable<ExportPointsResponse>) {
    first ??= message;
    if (message.chunk.length > 0 && !out.write(message.chunk)) await once(out, 'drain');
    onChunk?.();
  }
  await new Promise<void>((resolve, reject) => out.end(() => resolve()).on('error', reject));
  return first!;
}

test('a Parquet export of a million points reads back whole with hyparquet, in bounded memory', async () => {
  const file = path.join(dir, 'big.parquet');
  const baseline = retainedHeap();
  let peak = baseline;
  // Measured as each chunk arrives: the service is then in the middle of the export, holding what it holds.
  const first = await download(
    { deviceIds: ['big'], timeRange: { start: new Date(bigBase), end: new Date(bigBase + BIG * 50) }, format: ExportFormat.EXPORT_FORMAT_PARQUET },
    a,
    file,
    () => (peak = Math.max(peak, retainedHeap())),
  );
  expect(first.contentType).toBe('application/vnd.apache.parquet');
  expect(first.fileName).toMatch(/^telemetry-points-.*\.parquet$/);
  expect(peak - baseline).toBeLessThan(HEAP_BOUND);

  const parquet = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(parquet);
  expect(Number(metadata.num_rows)).toBe(BIG);
  expect(metadata.row_groups.length).toBeGreaterThan(1); // written group by group, not as one block
  let rows = 0;
  let sum = 0;
  let firstTime = Infinity;
  let lastTime = -Infinity;
  const devices = new Set<string>();
  await parquetRead({
    file: parquet,
    columns: ['time', 'device_id', 'number_value'],
    onChunk({ columnName, columnData }) {
      for (const value of columnData) {
        if (columnName === 'number_value') {
          rows++;
          sum += value as number;
        } else if (columnName === 'time') {
          const t = (value as Date).getTime();
          firstTime = Math.min(firstTime, t);
          lastTime = Math.max(lastTime, t);
        } else devices.add(value as string);
      }
    },
  });
  expect(rows).toBe(BIG);
  // Values are i % 1000 for i < 1 000 000: a thousand rounds of 0..999.
  expect(sum).toBe((BIG / 1000) * ((999 * 1000) / 2));
  expect(firstTime).toBe(bigBase);
  expect(lastTime).toBe(bigBase + (BIG - 1) * 50);
  expect([...devices]).toEqual(['big']);
});

test('a CSV export of a label group has every point of those devices of the caller’s tenant, escaped, read back with csv-parse', async () => {
  const file = path.join(dir, 'north.csv');
  const first = await download({ labels: { site: 'north' }, format: ExportFormat.EXPORT_FORMAT_CSV }, a, file);
  expect(first.contentType).toBe('text/csv; charset=utf-8');
  const records: Record<string, string>[] = parse(fs.readFileSync(file), { columns: true });
  const expected = published
    .filter((p) => p.tenant === a.tenantId && ['g1', 'g2', 'other'].includes(p.deviceId))
    .map((p) => ({
      time: new Date(p.time).toISOString(),
      device_id: p.deviceId,
      metric: p.metric,
      number_value: p.number === undefined ? '' : String(p.number),
      bool_value: p.bool === undefined ? '' : String(p.bool),
      string_value: p.string ?? '',
    }));
  const key = (r: Record<string, string>) => `${r.device_id}|${r.metric}|${r.time}`;
  expect(records.map(key)).toEqual(expected.map(key).sort());
  expect([...records].sort((x, y) => key(x).localeCompare(key(y)))).toEqual([...expected].sort((x, y) => key(x).localeCompare(key(y))));
});

test('an NDJSON export of a device type’s history buckets matches the buckets computed from the published points', async () => {
  const file = path.join(dir, 'meters.ndjson');
  await download({ deviceType: 'meter', metrics: ['temp'], bucketWidth: { seconds: 60n, nanos: 0 }, format: ExportFormat.EXPORT_FORMAT_NDJSON }, a, file);
  const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line));
  const expected = new Map<string, { count: number; sum: number; min: number; max: number }>();
  for (const p of published.filter((x) => x.tenant === a.tenantId && ['g1', 'g2', 'g3'].includes(x.deviceId) && x.metric === 'temp')) {
    const k = `${p.deviceId}|${new Date(Math.floor(p.time / MIN) * MIN).toISOString()}`;
    const e = expected.get(k) ?? { count: 0, sum: 0, min: Infinity, max: -Infinity };
    expected.set(k, { count: e.count + 1, sum: e.sum + p.number!, min: Math.min(e.min, p.number!), max: Math.max(e.max, p.number!) });
  }
  expect(lines.map((l) => `${l.device_id}|${l.time}`).sort()).toEqual([...expected.keys()].sort());
  for (const l of lines) {
    const e = expected.get(`${l.device_id}|${l.time}`)!;
    expect({ metric: l.metric, count: l.count, sum: l.sum, min: l.min, max: l.max }).toEqual({ metric: 'temp', ...e });
    expect(l.avg).toBeCloseTo(e.sum / e.count, 9);
  }
});

test('an export names its devices, and stopping a download midway closes the database cursor', async () => {
  await expect(download({ format: ExportFormat.EXPORT_FORMAT_CSV }, a, path.join(dir, 'none.csv'))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });

  const call = serverStream(client, client.exportPoints, ExportPointsRequest.fromPartial({ deviceIds: ['big'], timeRange: { start: new Date(bigBase), end: new Date(bigBase + BIG * 50) } }), {
    authorization: a.viewer.authorization,
  });
  let chunks = 0;
  await new Promise<void>((resolve) => {
    call.on('data', () => {
      if (++chunks === 3) {
        call.cancel();
        resolve();
      }
    });
  });
  call.on('error', () => undefined); // the cancellation itself
  const cursors = async () => {
    const { rows } = await world.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND query LIKE '%ORDER BY device_id, metric, time, message_id%' AND pid <> pg_backend_pid()`);
    return rows[0].n as number;
  };
  await eventually(async () => (await cursors()) === 0, 'the export connection closed');
});

test('an export of a device group covers its members of the caller’s tenant when it starts; an unknown group is NOT_FOUND', async () => {
  const group = crypto.randomUUID();
  await world.putGroup(a.tenantId, group, { site: 'north' });
  const file = path.join(dir, 'group.ndjson');
  const request = { groupId: group, metrics: ['door'], format: ExportFormat.EXPORT_FORMAT_NDJSON };
  await eventually(() => download(request, a, file).then(() => true, () => false), 'the export accepted once monitoring knows the group');
  const devices = fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line).device_id).sort();
  expect(devices).toEqual(['g1', 'g2', 'other']);
  // The group is tenant a's: tenant b (which has a device g1 labelled site=north too) cannot name it.
  await expect(download(request, b, file)).rejects.toMatchObject({ code: status.NOT_FOUND });
  await expect(download({ ...request, groupId: 'north' }, a, file)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  await expect(download({ ...request, deviceIds: ['g1'] }, a, file)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
});
