import { checkHealth } from '../../src';
import { ReceivedSpan } from './otlp-receiver';
import { TracedProcess } from './traced-process';

/** OTLP span kinds. */
export const SERVER = 2;
export const CLIENT = 3;
export const PRODUCER = 4;
export const CONSUMER = 5;

/** A PostgreSQL client span, under the stable (`db.system.name`) or the older (`db.system`) conventions. */
export const isPostgres = (s: ReceivedSpan) => (s.attributes['db.system.name'] ?? s.attributes['db.system']) === 'postgresql';

/** pino lines of a process's output. */
export function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Waits until a traced service process answers SERVING (fails if it exits). */
export async function waitServing(address: string, process: TracedProcess): Promise<void> {
  for (;;) {
    if (process.child.exitCode !== null) throw new Error(`service exited ${process.child.exitCode}: ${process.output()}`);
    const status = await checkHealth(address).catch(() => undefined);
    if (status === 'SERVING') return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

