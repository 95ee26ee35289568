import { DeadLetter, DeadLetterServiceService } from '../../../../gen/ts/iot/monitoring/v1/dead_letters';
import { callerTenant, decodePageToken, defineService, encodePageToken, isSubjectToken, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { DeadLetters, MAX_COUNTED_DEAD_LETTERS, MAX_REPLAY, StoredDeadLetter } from '../domain/dead-letters';
import { DEAD_LETTER_REASONS } from '../events/telemetry-decoder';
import { resolveTimeRange } from './time-range';

/** What the DeadLetterService handlers call. */
export interface DeadLetterHandlerDeps {
  deadLetters: DeadLetters;
}

function toProto(d: StoredDeadLetter): DeadLetter {
  return {
    sequence: BigInt(d.sequence),
    deviceId: d.deviceId,
    reason: d.reason,
    detail: d.detail,
    sqlstate: d.sqlstate,
    messageId: d.messageId,
    originalSubject: d.originalSubject,
    receiveTime: d.receivedAt,
    deadLetterTime: d.deadLetteredAt,
    size: BigInt(d.size),
    truncated: d.truncated,
    payload: d.payload,
    headers: d.headers,
  };
}

/** DeadLetterService: decode → validate → dead-letter domain → encode, scoped to the caller's tenant. */
export function deadLetterService({ deadLetters }: DeadLetterHandlerDeps): ServiceRegistration {
  return defineService(DeadLetterServiceService, {
    async listDeadLetters(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (request.deviceId) v.check(isSubjectToken(request.deviceId), 'device_id', 'is not a valid device id');
      if (request.reason) v.check((DEAD_LETTER_REASONS as readonly string[]).includes(request.reason), 'reason', `is not one of ${DEAD_LETTER_REASONS.join(', ')}`);
      const token = decodePageToken(request.page?.pageToken);
      if (token) v.check(token.length === 1 && Number.isSafeInteger(token[0]) && (token[0] as number) > 0, 'page.page_token', 'is not a page token of this list');
      v.throwIfAny();
      const page = await deadLetters.list({
        tenantId,
        deviceId: request.deviceId || undefined,
        reason: request.reason || undefined,
        fromSequence: (token?.[0] as number | undefined) ?? 1,
        limit: pageSize(request.page?.pageSize),
      });
      return { deadLetters: page.items.map(toProto), page: { nextPageToken: page.next ? encodePageToken([page.next]) : '' } };
    },

    async countDeadLetters(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (request.deviceId) v.check(isSubjectToken(request.deviceId), 'device_id', 'is not a valid device id');
      const { start, end } = resolveTimeRange(v, request.timeRange);
      v.throwIfAny();
      const counted = await deadLetters.count({ tenantId, deviceId: request.deviceId || undefined, start, end, limit: MAX_COUNTED_DEAD_LETTERS });
      return { counts: counted.counts.map((c) => ({ reason: c.reason, count: BigInt(c.count) })), total: BigInt(counted.total), truncated: counted.truncated };
    },

    async replayDeadLetters(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(request.sequences.length > 0, 'sequences', 'is required');
      v.check(request.sequences.length <= MAX_REPLAY, 'sequences', `has more than ${MAX_REPLAY} entries`);
      request.sequences.forEach((s, i) => v.check(s > 0n && s <= BigInt(Number.MAX_SAFE_INTEGER), `sequences[${i}]`, 'is not a dead-letter sequence'));
      v.throwIfAny();
      const outcome = await deadLetters.replay(tenantId, request.sequences.map(Number));
      return { replayedCount: outcome.replayed, notFoundSequences: outcome.notFound.map(BigInt), truncatedSequences: outcome.truncated.map(BigInt) };
    },
  });
}
