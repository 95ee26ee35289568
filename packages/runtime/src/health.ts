import { credentials, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import { HealthImplementation, service as healthService, ServingStatus } from 'grpc-health-check';
import { Logger } from './logger';
import { metrics } from './observability/metrics-registry';

/** A dependency the service talks to, checked every health interval. */
export interface DependencyCheck {
  name: string;
  /**
   * Whether the service cannot do its job without it (default true). A
   * required dependency down makes the service NOT_SERVING (readiness drops
   * it); an optional one down (a cache) only makes it degraded: it keeps
   * answering and stays SERVING.
   */
  required?: boolean;
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

/** Health service name that is SERVING only while every dependency, optional ones too, answers. */
export const DEPENDENCIES_HEALTH_SERVICE = 'dependencies';

/** Health service name of one dependency's last check: `dependency.<name>`. */
export function dependencyHealthService(name: string): string {
  return `dependency.${name}`;
}

const monitors = new Set<HealthMonitor>();

/**
 * `iot_dependency_up{dependency,required}`: 1 while the dependency answered
 * its last check, 0 when not. Read at scrape time from every running
 * monitor of the process (a dependency several in-process services share is
 * up only if it is up for all).
 */
function observeDependencies(): void {
  metrics.gauge('iot_dependency_up', 'Whether a dependency answered its last health check (1) or not (0); required="false" means the service only degrades without it.', ['dependency', 'required'], function collect() {
    this.reset();
    const up = new Map<string, { labels: { dependency: string; required: string }; value: number }>();
    for (const monitor of monitors) {
      for (const dep of monitor.dependencies()) {
        const labels = { dependency: dep.name, required: String(dep.required) };
        const key = `${labels.dependency}/${labels.required}`;
        const value = dep.up ? 1 : 0;
        up.set(key, { labels, value: Math.min(value, up.get(key)?.value ?? 1) });
      }
    }
    for (const { labels, value } of up.values()) this.set(labels, value);
  });
}

/**
 * Keeps `grpc.health.v1` truthful: NOT_SERVING until the service is ready and
 * whenever a required dependency stops answering, SERVING otherwise — also
 * while only optional dependencies are down (degraded: the service still
 * answers, so readiness keeps it). The overall status ("") and each business
 * service share that state. Degradation shows as a log line on every change,
 * the `iot_dependency_up` gauge, and two more health service names:
 * {@link DEPENDENCIES_HEALTH_SERVICE} (NOT_SERVING while any dependency is
 * down) and `dependency.<name>` per dependency.
 */
export class HealthMonitor {
  readonly implementation = new HealthImplementation({ '': 'NOT_SERVING', [DEPENDENCIES_HEALTH_SERVICE]: 'NOT_SERVING' });
  private readonly services = new Set<string>(['']);
  private readonly checks: Array<DependencyCheck & { required: boolean }> = [];
  private checked = false;
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
    this.checks.push({ ...check, required: check.required ?? true });
    this.implementation.setStatus(dependencyHealthService(check.name), 'NOT_SERVING');
  }

  /** Every registered dependency with its last result (down until first checked). */
  dependencies(): Array<{ name: string; required: boolean; up: boolean }> {
    return this.checks.map((c) => ({ name: c.name, required: c.required, up: this.checked && !this.failing.has(c.name) }));
  }

  /** True while the service is SERVING but an optional dependency does not answer. */
  get degraded(): boolean {
    return this.current === 'SERVING' && this.checks.some((c) => !c.required && this.failing.has(c.name));
  }

  /** Marks start-up as finished; from now on the checks decide. */
  async markReady(): Promise<void> {
    this.ready = true;
    monitors.add(this);
    observeDependencies();
    await this.probe();
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
    this.timer.unref();
  }

  /** Goes NOT_SERVING for good (shutdown). */
  stop(): void {
    this.stopped = true;
    monitors.delete(this);
    if (this.timer) clearInterval(this.timer);
    this.set('NOT_SERVING');
    this.implementation.setStatus(DEPENDENCIES_HEALTH_SERVICE, 'NOT_SERVING');
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
    for (const check of this.checks) {
      const down = failing.has(check.name);
      if (down && !this.failing.has(check.name)) {
        const effect = check.required ? 'not serving' : 'degraded, still serving';
        this.log.warn({ dependency: check.name, required: check.required }, `dependency unavailable: ${effect}`);
      }
      if (!down && this.failing.has(check.name)) this.log.info({ dependency: check.name, required: check.required }, 'dependency available again');
    }
    this.failing = failing;
    this.checked = true;
    if (this.stopped) return;
    for (const check of this.checks) this.implementation.setStatus(dependencyHealthService(check.name), failing.has(check.name) ? 'NOT_SERVING' : 'SERVING');
    this.implementation.setStatus(DEPENDENCIES_HEALTH_SERVICE, failing.size === 0 ? 'SERVING' : 'NOT_SERVING');
    const requiredDown = this.checks.some((c) => c.required && failing.has(c.name));
    this.set(this.ready && !requiredDown ? 'SERVING' : 'NOT_SERVING');
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
