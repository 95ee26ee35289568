import { pickFreePort, portAnswers, waitUntil } from '../scripts/up-wait';

/**
 * A TCP port that was free a moment ago on 127.0.0.1. Racy by nature (it is
 * released before anyone binds it): prefer letting the server bind port 0 and
 * report its port (startTestService, TestNatsServer, the starters in
 * scripts/local-servers.ts). Kept for callers that still hand a port to a
 * child that cannot report one.
 */
export const freePort: () => Promise<number> = () => pickFreePort();

/** Resolves once something accepts TCP connections on host:port, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  await waitUntil(`nothing listens on ${host}:${port}`, () => portAnswers(port, host), { timeoutMs, intervalMs: 50 });
}
