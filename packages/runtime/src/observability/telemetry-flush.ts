/**
 * A hook between the tracing SDK (loaded only through the tracing entry) and
 * the runtime's shutdown, so stopping a service flushes spans without the
 * runtime importing the SDK.
 */
const FLUSH = Symbol.for('iot-mesh.telemetry.flush');

type Flush = () => Promise<void>;

/** Registers what {@link flushTelemetry} runs (the tracing entry does this). */
export function registerTelemetryFlush(flush: Flush): void {
  (globalThis as Record<symbol, Flush | undefined>)[FLUSH] = flush;
}

/** Exports buffered spans, if tracing was started; never throws. */
export async function flushTelemetry(): Promise<void> {
  const flush = (globalThis as Record<symbol, Flush | undefined>)[FLUSH];
  await flush?.().catch(() => undefined);
}
