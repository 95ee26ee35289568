import { collectDefaultMetrics, Counter, CounterConfiguration, Gauge, GaugeConfiguration, Histogram, HistogramConfiguration, Registry } from 'prom-client';

/**
 * The one Prometheus registry of this process, with Node's default process
 * metrics (`process_cpu_seconds_total`, `nodejs_eventloop_lag_seconds`, …).
 * Everything served on `/metrics` is registered here.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

type Kind = 'counter' | 'gauge' | 'histogram';
const created = new Map<string, { kind: Kind; labels: string; metric: Counter | Gauge | Histogram }>();

function getOrCreate<M extends Counter | Gauge | Histogram>(kind: Kind, name: string, labelNames: readonly string[], make: () => M): M {
  const labels = [...labelNames].sort().join(',');
  const existing = created.get(name);
  if (existing) {
    // A second module asking for the same name gets the same metric; a
    // mismatch is a programming error that would otherwise surface as a
    // confusing duplicate-registration error at scrape time.
    if (existing.kind !== kind || existing.labels !== labels) {
      throw new Error(`metric ${name} is already registered as a ${existing.kind} with labels [${existing.labels}]`);
    }
    return existing.metric as M;
  }
  const metric = make();
  created.set(name, { kind, labels, metric });
  return metric;
}

/**
 * Get-or-create access to the process registry: the first caller registers a
 * metric, later callers with the same name, kind and label names get the same
 * object, so modules (and services started twice in one test process) never
 * register duplicates.
 *
 * ```ts
 * const deadLetters = metrics.counter('iot_dead_letters_total', 'Messages sent to the dead-letter subject.', ['reason']);
 * deadLetters.inc({ reason: 'malformed' });
 * ```
 */
export const metrics = {
  registry,
  counter<L extends string = string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return getOrCreate('counter', name, labelNames, () => new Counter<L>({ name, help, labelNames, registers: [registry] } as CounterConfiguration<L>));
  },
  gauge<L extends string = string>(name: string, help: string, labelNames: readonly L[] = [], collect?: GaugeConfiguration<L>['collect']): Gauge<L> {
    return getOrCreate('gauge', name, labelNames, () => new Gauge<L>({ name, help, labelNames, registers: [registry], collect } as GaugeConfiguration<L>));
  },
  histogram<L extends string = string>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]): Histogram<L> {
    return getOrCreate('histogram', name, labelNames, () => new Histogram<L>({ name, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) } as HistogramConfiguration<L>));
  },
  /** The text exposition of every metric, as served on `/metrics`. */
  async text(): Promise<string> {
    return registry.metrics();
  },
};

/** Prometheus' default latency buckets (as go-grpc-prometheus uses), in seconds. */
export const DEFAULT_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
