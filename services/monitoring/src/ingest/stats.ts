import { DEAD_LETTER_REASONS, DeadLetterReason } from './decode';

/**
 * Counters of the ingest pipeline, kept as plain numbers so the metrics
 * layer can read (or hook) them without the pipeline knowing about it.
 */
export class IngestStats {
  /** Dead-lettered messages per reason. */
  readonly deadLetters: Record<DeadLetterReason, number> = Object.fromEntries(DEAD_LETTER_REASONS.map((r) => [r, 0])) as Record<DeadLetterReason, number>;
  /** Messages taken from the stream. */
  messagesReceived = 0;
  /** Batches committed. */
  batchesCommitted = 0;
  /** Points in committed batches, and how many of them were new rows. */
  pointsCommitted = 0;
  rowsInserted = 0;
  /** Size of the last committed batch, in points. */
  lastBatchPoints = 0;
  /** Failed write attempts (each is retried). */
  writeFailures = 0;
  /** Total milliseconds spent in committed writes. */
  writeMillis = 0;
  /** Messages waiting in this replica for the writer. */
  queued = 0;

  /** Called for each message taken from the stream. */
  onMessage?: (encoding: 'json' | 'protobuf') => void;
  /** Called after each committed batch, for whoever wants a histogram. */
  onBatch?: (points: number, millis: number) => void;
  /** Called for each failed write attempt. */
  onWriteFailure?: () => void;
  /** Called for each dead letter. */
  onDeadLetter?: (reason: DeadLetterReason) => void;

  /** Total dead letters over all reasons. */
  get deadLettersTotal(): number {
    return Object.values(this.deadLetters).reduce((a, b) => a + b, 0);
  }
}
