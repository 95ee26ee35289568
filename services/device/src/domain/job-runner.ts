import crypto from 'node:crypto';
import { GrpcCode, Logger, ServiceError } from '@iot-mesh/runtime';
import type { JobStore } from '../store/job-store';
import { type Commands, DEVICE_OFFLINE } from './commands';
import type { JobRecord, JobStep } from './jobs';
import type { Twins } from './twins';

/** What the runner is built from. */
export interface JobRunnerDeps {
  store: JobStore;
  commands: Pick<Commands, 'send'>;
  twins: Pick<Twins, 'get' | 'updateDesired'>;
  log: Logger;
  /** How often the table is read when nothing woke the runner. */
  pollMs?: number;
}

/** How often a desired-state step retries when the twin changed under it. */
const DESIRED_ATTEMPTS = 5;

/**
 * Carries out jobs from the table: each pass sweeps timeouts and endings,
 * then claims what each running job's rollout allows (see
 * {@link JobStore.claim}) and runs those steps. Any number of replicas run
 * one; a step's claim and its outcome are rows of the table, so a restart
 * resumes where the table says, and a step claimed once is sent once.
 */
export class JobRunner {
  /** This process's name in claims. */
  readonly replica = `${process.pid}-${crypto.randomUUID()}`;
  private readonly inFlight = new Set<Promise<void>>();
  private timer?: NodeJS.Timeout;
  private passing?: Promise<void>;
  private again = false;
  private stopping = false;

  constructor(private readonly deps: JobRunnerDeps) {}

  start(): void {
    this.timer = setInterval(() => this.wake(), this.deps.pollMs ?? 1000);
    this.wake();
  }

  /** Runs a pass soon: a job was created, a step finished, or a device connected. */
  wake(): void {
    if (this.stopping) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = this.pass()
      .catch((err: Error) => this.deps.log.warn({ err: err.message }, 'job pass failed'))
      .finally(() => {
        this.passing = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** A device connected: its queued steps may go now. */
  connected(): void {
    this.wake();
  }

  /** Claims nothing more and waits for the steps under way to finish (each is bounded by its timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.passing;
    await Promise.allSettled([...this.inFlight]);
  }

  private async pass(): Promise<void> {
    const { store } = this.deps;
    await store.sweep();
    for (const job of await store.running()) {
      if (this.stopping) return;
      for (const deviceId of await store.claim(job, this.replica)) {
        const step = this.run(job, deviceId).then((finished) => {
          this.inFlight.delete(step);
          // A finished step makes room for the next; a requeued one waits for the next poll (or connect), not a busy loop.
          if (finished) this.wake();
        });
        this.inFlight.add(step);
      }
    }
  }

  /** Runs one claimed step and records it; true when it finished (rather than going back to the queue). */
  private async run(job: JobRecord, deviceId: string): Promise<boolean> {
    const { store, log } = this.deps;
    let outcome: JobStep | 'offline' | 'awaiting';
    try {
      outcome = job.command ? await this.command(job, deviceId) : await this.desired(job, deviceId);
    } catch (err) {
      outcome = { state: 'failed', reason: (err as Error).message };
    }
    try {
      if (outcome === 'offline') await store.requeue(job, deviceId, this.replica);
      else if (outcome === 'awaiting') await store.awaitReport(job, deviceId, this.replica);
      else await store.finish(job, deviceId, this.replica, outcome);
    } catch (err) {
      // The row stays sent; a sweep times it out after its deadline, and nothing is sent again.
      log.error({ err: (err as Error).message, jobId: job.id, deviceId }, 'recording a job step failed');
    }
    return outcome !== 'offline' && outcome !== 'awaiting';
  }

  private async command(job: JobRecord, deviceId: string): Promise<JobStep | 'offline'> {
    const c = job.command!;
    try {
      const record = await this.deps.commands.send(job.tenantId, deviceId, {
        name: c.name,
        payload: c.params,
        timeoutMs: c.timeoutMs,
        actorId: job.actorId,
        remainingMs: c.timeoutMs + 100,
        signal: new AbortController().signal,
      });
      return record.status === 'succeeded' ? { state: 'succeeded', reason: '', result: record.result } : { state: 'failed', reason: record.error, result: record.result };
    } catch (err) {
      const code = err instanceof ServiceError ? err.code : undefined;
      // Refused before sending: the device went offline since the claim; it waits for its next connect.
      if (code === GrpcCode.FAILED_PRECONDITION && (err as ServiceError).reason === DEVICE_OFFLINE) return 'offline';
      if (code === GrpcCode.DEADLINE_EXCEEDED) return { state: 'timed_out', reason: `the device did not answer within ${c.timeoutMs} ms` };
      throw err;
    }
  }

  private async desired(job: JobRecord, deviceId: string): Promise<JobStep | 'awaiting'> {
    for (let attempt = 1; ; attempt++) {
      const twin = await this.deps.twins.get(job.tenantId, deviceId);
      const running = (twin.reported?.firmware as { version?: unknown; status?: unknown } | undefined) ?? {};
      if (job.awaitFirmware && running.version === job.awaitFirmware && running.status === 'succeeded') return { state: 'succeeded', reason: `already runs ${job.awaitFirmware}` };
      try {
        const updated = await this.deps.twins.updateDesired(job.tenantId, deviceId, { ...twin.desired, ...job.desiredPatch }, twin.desiredVersion);
        // A firmware step finishes when the device reports (see JobStore.finishReported).
        if (job.awaitFirmware) return 'awaiting';
        return { state: 'succeeded', reason: `desired state version ${updated.desiredVersion}` };
      } catch (err) {
        // Someone else changed the desired state in between: merge into theirs.
        if (err instanceof ServiceError && err.code === GrpcCode.ABORTED && attempt < DESIRED_ATTEMPTS) continue;
        throw err;
      }
    }
  }
}
