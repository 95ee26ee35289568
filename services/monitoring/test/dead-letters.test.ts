import { status } from '@grpc/grpc-js';
import { DeadLetterServiceClient } from '../../../gen/ts/iot/monitoring/v1/dead_letters';
import { unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { StreamDeadLetterArchive } from '../src/events/dead-letter-archive';
import { eventually, jsonPayload, MonitoringWorld, SignedWorld, startSignedWorld } from './harness';

jest.setTimeout(60_000);

let signed: SignedWorld;
let world: MonitoringWorld;
let a: TestTenant;
let b: TestTenant;
let client: DeadLetterServiceClient;

beforeAll(async () => {
  ({ world, a, b } = signed = await startSignedWorld({ INGEST_MAX_PAYLOAD_BYTES: '2048', DEAD_LETTER_PREFIX_BYTES: '100' }));
  client = signed.client(DeadLetterServiceClient);
  await world.registerDevice(a.tenantId, 'd1');
});
afterAll(() => signed?.close());

/** Every dead letter the caller can list (all pages of `pageSize`). */
async function listAll(authorization: string, filter: { deviceId?: string; reason?: string } = {}, pageSize = 2) {
  const out = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await unary(client, client.listDeadLetters, { page: { pageSize, pageToken }, deviceId: filter.deviceId ?? '', reason: filter.reason ?? '' }, { authorization });
    expect(page.deadLetters.length).toBeLessThanOrEqual(pageSize);
    out.push(...page.deadLetters);
    pageToken = page.page?.nextPageToken ?? '';
    pages++;
  } while (pageToken && pages < 50);
  return out;
}

test('dead letters are listed per tenant and device with the reason, page by page; replayed after a fix they are stored and leave the list', async () => {
  const ta = a.tenantId;
  await world.publish(ta, 'ghost', jsonPayload({ messageId: 'g1', points: [{ metric: 'temp', numberValue: 1 }] }));
  await world.publish(ta, 'ghost', jsonPayload({ messageId: 'g2', points: [{ metric: 'temp', numberValue: 2 }] }));
  await world.publish(ta, 'd1', Buffer.from('{"points": ['));
  const big = jsonPayload({ messageId: 'big', points: [{ metric: 'note', stringValue: 'x'.repeat(3000) }] });
  await world.publish(ta, 'd1', big);
  await world.publish(b.tenantId, 'ghost', jsonPayload({ messageId: 'other-tenant', points: [{ metric: 'temp', numberValue: 9 }] }));
  await world.publish(ta, 'd1', jsonPayload({ messageId: 'ok', points: [{ metric: 'temp', numberValue: 0 }] }));
  await eventually(async () => (await world.rowCount(ta)) === 1, 'the valid message stored');
  const viewer = a.viewer.authorization;
  const all = await eventually(async () => {
    const list = await listAll(viewer);
    return list.length === 4 && list;
  }, "tenant a's four dead letters");

  expect(all.map((d) => [d.deviceId, d.reason, d.messageId])).toEqual([
    ['ghost', 'unknown_device', ''],
    ['ghost', 'unknown_device', ''],
    ['d1', 'malformed', ''],
    ['d1', 'oversize', ''],
  ]);
  expect(all.every((d) => d.originalSubject.startsWith(`iot.${ta}.dev.`) && d.detail.length > 0 && d.deadLetterTime && d.receiveTime)).toBe(true);
  const oversize = all[3];
  expect([oversize.truncated, oversize.size, oversize.payload.byteLength]).toEqual([true, BigInt(big.byteLength), 100]);
  expect(Buffer.from(oversize.payload)).toEqual(Buffer.from(big.subarray(0, 100)));
  expect(JSON.parse(Buffer.from(all[0].payload).toString())).toMatchObject({ messageId: 'g1' });
  // Filters: one device, one reason.
  expect((await listAll(viewer, { deviceId: 'd1' })).map((d) => d.reason)).toEqual(['malformed', 'oversize']);
  expect((await listAll(viewer, { reason: 'unknown_device' }, 1)).map((d) => d.deviceId)).toEqual(['ghost', 'ghost']);
  // The other tenant sees only its own.
  expect((await listAll(b.viewer.authorization)).map((d) => d.originalSubject)).toEqual([`iot.${b.tenantId}.dev.ghost.tel`]);
  const otherSequence = (await listAll(b.viewer.authorization))[0].sequence;

  // Replay needs an operator.
  const ghostSequences = all.slice(0, 2).map((d) => d.sequence);
  await expect(unary(client, client.replayDeadLetters, { sequences: ghostSequences }, { authorization: viewer })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
  await expect(unary(client, client.replayDeadLetters, { sequences: [] }, { authorization: a.operator.authorization })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });

  // The fix: the device gets registered; then its dead letters are replayed.
  await world.registerDevice(ta, 'ghost');
  const replay = await unary(client, client.replayDeadLetters, { sequences: [...ghostSequences, oversize.sequence, otherSequence] }, { authorization: a.operator.authorization });
  expect(replay).toEqual({ replayedCount: 2, truncatedSequences: [oversize.sequence], notFoundSequences: [otherSequence] });
  await eventually(async () => (await world.rowCount(ta)) === 3, 'the replayed messages stored');
  expect((await listAll(viewer)).map((d) => d.reason)).toEqual(['malformed', 'oversize']);
  // Replaying again finds nothing: they left the dead letters.
  expect(await unary(client, client.replayDeadLetters, { sequences: ghostSequences }, { authorization: a.operator.authorization })).toMatchObject({ replayedCount: 0, notFoundSequences: ghostSequences });
  // The other tenant's dead letter is untouched.
  expect(await listAll(b.viewer.authorization)).toHaveLength(1);
});

test('bad filters and tokens are refused with the field named', async () => {
  const viewer = a.viewer.authorization;
  await expect(unary(client, client.listDeadLetters, { deviceId: 'no such.device', reason: '' }, { authorization: viewer })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('device_id') });
  await expect(unary(client, client.listDeadLetters, { deviceId: '', reason: 'because' }, { authorization: viewer })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('reason') });
  await expect(unary(client, client.listDeadLetters, { deviceId: '', reason: '', page: { pageSize: 1, pageToken: 'garbage' } }, { authorization: viewer })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  await expect(unary(client, client.listDeadLetters, { deviceId: '', reason: '' }, {})).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
});

test('dead letters are counted by reason over a time window, per tenant and device, most frequent first', async () => {
  const c = await signed.signing.createTenant();
  await world.registerDevice(c.tenantId, 'd1');
  const viewer = c.viewer.authorization;
  const count = (request: { timeRange?: { start?: Date; end?: Date }; deviceId?: string }, authorization = viewer) =>
    unary(client, client.countDeadLetters, { deviceId: '', ...request }, { authorization });
  const before = new Date();
  expect(await count({})).toEqual({ counts: [], total: 0n, truncated: false });

  await world.publish(c.tenantId, 'ghost', jsonPayload({ messageId: 'g1', points: [{ metric: 'temp', numberValue: 1 }] }));
  await world.publish(c.tenantId, 'd1', Buffer.from('not json'));
  await eventually(async () => (await count({})).total === 2n, 'the first two dead letters counted');
  const middle = new Date();
  await world.publish(c.tenantId, 'ghost', jsonPayload({ messageId: 'g2', points: [{ metric: 'temp', numberValue: 2 }] }));
  await world.publish(c.tenantId, 'ghost', jsonPayload({ messageId: 'g3', points: [{ metric: 'temp', numberValue: 3 }] }));
  const all = await eventually(async () => {
    const counted = await count({});
    return counted.total === 4n && counted;
  }, 'all four dead letters counted');

  expect(all).toEqual({ counts: [{ reason: 'unknown_device', count: 3n }, { reason: 'malformed', count: 1n }], total: 4n, truncated: false });
  // The window: only what was dead-lettered inside it.
  expect(await count({ timeRange: { start: before, end: middle } })).toEqual({ counts: [{ reason: 'malformed', count: 1n }, { reason: 'unknown_device', count: 1n }], total: 2n, truncated: false });
  expect(await count({ timeRange: { start: middle } })).toMatchObject({ counts: [{ reason: 'unknown_device', count: 2n }], total: 2n });
  expect(await count({ timeRange: { end: before } })).toMatchObject({ counts: [], total: 0n });
  // One device; another tenant counts only its own.
  expect(await count({ deviceId: 'd1' })).toMatchObject({ counts: [{ reason: 'malformed', count: 1n }], total: 1n });
  const other = await count({}, b.viewer.authorization);
  expect(other.counts.every((r) => r.reason === 'unknown_device') && other.total).toBe(1n);
  // Past the count's limit (100,000 through the API; 3 here, on the archive itself) the counts cover the oldest and say so.
  const archive = new StreamDeadLetterArchive(world.nc, await world.nc.jetstreamManager(), world.nc.jetstream(), 'DEAD_LETTERS');
  const capped = await archive.countByReason({ tenantId: c.tenantId, start: before, end: new Date(), limit: 3 });
  expect([Object.fromEntries(capped.byReason), capped.truncated]).toEqual([{ unknown_device: 2, malformed: 1 }, true]);
  expect((await archive.countByReason({ tenantId: c.tenantId, start: before, end: new Date(), limit: 4 })).truncated).toBe(false);
  // Bad requests name the field; a caller needs a token.
  await expect(count({ timeRange: { start: middle, end: before } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('time_range') });
  await expect(count({ deviceId: 'no such.device' })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('device_id') });
  await expect(unary(client, client.countDeadLetters, { deviceId: '' }, {})).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
});
