/** One stored dead letter, as the archive reads it back. */
export interface StoredDeadLetter {
  sequence: number;
  tenantId: string;
  /** Empty when the subject named no usable device. */
  deviceId: string;
  reason: string;
  detail: string;
  sqlstate: string;
  messageId: string;
  originalSubject: string;
  receivedAt?: Date;
  deadLetteredAt: Date;
  size: number;
  truncated: boolean;
  payload: Buffer;
  /** The original's headers (without the dead letter's own). */
  headers: Record<string, string>;
}

/** What a list asks for: one tenant, optionally one device and one reason, from a stream position on. */
export interface DeadLetterQuery {
  tenantId: string;
  deviceId?: string;
  reason?: string;
  /** First stream sequence to look at. */
  fromSequence: number;
  limit: number;
}

/** What a count asks for: one tenant (optionally one device), dead-lettered in [start, end). */
export interface DeadLetterCountQuery {
  tenantId: string;
  deviceId?: string;
  start: Date;
  end: Date;
  /** Most dead letters read; beyond it the counts cover the oldest `limit` and say so. */
  limit: number;
}

/** Dead letters per reason, most frequent first. */
export interface DeadLetterCounts {
  counts: { reason: string; count: number }[];
  total: number;
  truncated: boolean;
}

/** Most dead letters one count reads (headers only). */
export const MAX_COUNTED_DEAD_LETTERS = 100_000;

/** Where dead letters are kept (the DEAD_LETTERS stream). */
export interface DeadLetterArchive {
  /** Dead letters matching the query, oldest first, and where the next page starts (undefined: no more). */
  list(query: DeadLetterQuery): Promise<{ items: StoredDeadLetter[]; next?: number }>;
  /** How many dead letters had each reason (unordered; reasons with none left out). */
  countByReason(query: DeadLetterCountQuery): Promise<{ byReason: Map<string, number>; truncated: boolean }>;
  /** One dead letter of the tenant, or undefined. */
  get(tenantId: string, sequence: number): Promise<StoredDeadLetter | undefined>;
  /** Publishes the payload into the telemetry stream again (resolves on its acknowledgement), then removes the dead letter. */
  replay(letter: StoredDeadLetter): Promise<void>;
}

/** Most dead letters one replay takes. */
export const MAX_REPLAY = 1000;

/** What a replay did. */
export interface ReplayOutcome {
  replayed: number;
  notFound: number[];
  truncated: number[];
}

/**
 * Dead letters of a tenant: listing them with the reason, and replaying them
 * into ingest once what refused them is fixed.
 */
export class DeadLetters {
  constructor(private readonly archive: DeadLetterArchive) {}

  /** One page of a tenant's dead letters. */
  list(query: DeadLetterQuery): Promise<{ items: StoredDeadLetter[]; next?: number }> {
    return this.archive.list(query);
  }

  /** A tenant's dead letters counted by reason over a window, the most frequent reason first (then by name). */
  async count(query: DeadLetterCountQuery): Promise<DeadLetterCounts> {
    const { byReason, truncated } = await this.archive.countByReason(query);
    const counts = [...byReason].map(([reason, count]) => ({ reason, count })).sort((x, y) => y.count - x.count || x.reason.localeCompare(y.reason));
    return { counts, total: counts.reduce((sum, c) => sum + c.count, 0), truncated };
  }

  /** Replays the named dead letters of the tenant; the others are reported, not failed. */
  async replay(tenantId: string, sequences: number[]): Promise<ReplayOutcome> {
    const outcome: ReplayOutcome = { replayed: 0, notFound: [], truncated: [] };
    for (const sequence of [...new Set(sequences)]) {
      const letter = await this.archive.get(tenantId, sequence);
      if (!letter) outcome.notFound.push(sequence);
      else if (letter.truncated) outcome.truncated.push(sequence);
      else {
        await this.archive.replay(letter);
        outcome.replayed++;
      }
    }
    return outcome;
  }
}
