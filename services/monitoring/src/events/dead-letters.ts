import { headers, NatsConnection } from 'nats';
import { deadLetterSubject } from '@iot-mesh/runtime';
import type { IngestStats } from '../metrics';
import type { RejectedTelemetry } from './telemetry-decoder';

/** Headers of a dead-lettered message; its body is the original payload, byte for byte. */
export const DEAD_LETTER_HEADERS = {
  reason: 'Iot-Dead-Letter-Reason',
  detail: 'Iot-Dead-Letter-Detail',
  subject: 'Iot-Original-Subject',
} as const;

/** Publishes a rejected message to its tenant's dead-letter subject and counts it. */
export function publishDeadLetter(nc: NatsConnection, stats: IngestStats, subject: string, data: Uint8Array, rejected: RejectedTelemetry, msgId?: string): void {
  const h = headers();
  h.set(DEAD_LETTER_HEADERS.reason, rejected.reason);
  // Header values are one line.
  h.set(DEAD_LETTER_HEADERS.detail, rejected.detail.replace(/[\r\n]+/g, ' ').slice(0, 512));
  h.set(DEAD_LETTER_HEADERS.subject, subject);
  if (msgId) h.set('Nats-Msg-Id', msgId);
  nc.publish(deadLetterSubject(rejected.tenantId), data, { headers: h });
  stats.deadLetters[rejected.reason]++;
  stats.onDeadLetter?.(rejected.reason);
}
