import { credentials, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import { HealthImplementation, service as healthService, ServingStatus } from 'grpc-health-check';
import { Logger } from './logger';

/** A dependency the service cannot serve without. */
export interface DependencyCheck {
  name: string;
  /** Resolves when the dependency answers; rejects (or times out) when not. */
  check(): Promise<void>;
}

const CHECK_TIMEOUT_MS = 1500;

function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      () => { clearTimeout(timer); resolve(); },
      (err: unknown) => { clearTimeout(timer); reject(err); },
    );
  });
}

/**
 * Keeps `grpc.health.v1` truthful: NOT_SERVING until the service is ready and
 * whenever a dependency stops answering, SERVING otherwise. The overall status
 * ("") and each business service share the same state.
 */
export class HealthMonitor {
  readonly implementation = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly services = new Set<string>(['']);
  private readonly checks: DependencyCheck[] = [];
  private ready = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private current: ServingStatus = 'NOT_SERVING';
  private failing = new Set<string>();

  constructor(private readonly log: Logger, private readonly intervalMs: number) {}

  addService(name: string): void {
    this.services.add(name);
    this.implementation.setStatus(name, this.current);
  }

  addCheck(check: DependencyCheck): void {
    this.checks.push(check);
  }

  /** Marks start-up as finished; from now on the checks decide. */
  async markReady(): Promise<void> {
    this.ready = true;
    await this.probe();
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
    this.timer.unref();
  }

  /** Goes NOT_SERVING for good (shutdown). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.set('NOT_SERVING');
  }

  get status(): ServingStatus {
    return this.current;
  }

  /** Runs every check once and updates the status. */
  async probe(): Promise<void> {
    const results = await Promise.allSettled(this.checks.map((c) => withTimeout(c.check(), CHECK_TIMEOUT_MS)));
    const failing = new Set<string>();
    results.forEach((result, i) => {
      if (result.status === 'rejected') failing.add(this.checks[i].name);
    });
    for (const name of failing) {
      if (!this.failing.has(name)) this.log.warn({ dependency: name }, 'dependency unavailable');
    }
    for (const name of this.failing) {
      if (!failing.has(name)) this.log.info({ dependency: name }, 'dependency available again');
    }
    this.failing = failing;
    if (this.stopped) return;
    this.set(this.ready && failing.size === 0 ? 'SERVING' : 'NOT_SERVING');
  }

  private set(status: ServingStatus): void {
    if (status === this.current) return;
    this.current = status;
    for (const name of this.services) this.implementation.setStatus(name, status);
  }
}

/**
 * Asks a server's `grpc.health.v1.Health/Check` for `service` ("" = the
 * whole server). Resolves to the status, or rejects when nothing answers.
 */
export async function checkHealth(address: string, service = '', deadlineMs = 2000): Promise<ServingStatus> {
  const HealthClient = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
  const client = new HealthClient(address, credentials.createInsecure());
  try {
    return await new Promise<ServingStatus>((resolve, reject) => {
      client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (value: { service: string }) => healthService.Check.requestSerialize(value),
        (buffer: Buffer) => healthService.Check.responseDeserialize(buffer) as { status: ServingStatus },
        { service },
        new Metadata(),
        { deadline: new Date(Date.now() + deadlineMs) },
        (err, response) => (err ? reject(err) : resolve(response!.status)),
      );
    });
  } finally {
    client.close();
  }
}
