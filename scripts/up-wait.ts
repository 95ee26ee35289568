import net from 'node:net';

/** Thrown when start-up is interrupted by Ctrl-C. */
export class StartAborted extends Error {
  constructor() {
    super('start-up interrupted');
    this.name = 'StartAborted';
  }
}

/**
 * Polls `probe` every `intervalMs` until it returns true; rejects with
 * `what` after `timeoutMs`, on abort, or when `failed()` returns a reason
 * (a child that exited while we waited for it).
 */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  options: { timeoutMs: number; signal?: AbortSignal; failed?: () => string | undefined; intervalMs?: number },
): Promise<void> {
  const until = Date.now() + options.timeoutMs;
  for (;;) {
    if (options.signal?.aborted) throw new StartAborted();
    const failure = options.failed?.();
    if (failure) throw new Error(`${what}: ${failure}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > until) throw new Error(`${what}: not ready after ${options.timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}

/** Whether something accepts TCP connections on host:port. */
export function portAnswers(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Throws a message naming `variable` when host:port cannot be bound. */
export async function ensurePortFree(port: number, variable: string, host = '127.0.0.1'): Promise<void> {
  const free = await new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
  if (!free) throw new Error(`port ${host}:${port} is already in use: stop what holds it or set ${variable} to another port`);
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago, for a server that
 * cannot bind port 0 and report what it bound (PostgreSQL, Redis): whoever
 * uses it must start again on another pick when its bind fails.
 */
export function pickFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
