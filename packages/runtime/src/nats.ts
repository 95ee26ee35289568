import { connect, ConnectionOptions, credsAuthenticator, NatsConnection } from 'nats';
import fs from 'node:fs';
import { Logger } from './logger';

export type { NatsConnection };

/** How a process authenticates to NATS: nothing, or a `.creds` file (operator mode). */
export interface NatsAuth {
  credsFile?: string;
}

/**
 * Connects to NATS and keeps reconnecting forever; the first connect waits
 * until a server answers, so a process may start before NATS does.
 */
export async function connectNats(servers: string, name: string, log: Logger, auth: NatsAuth = {}, extra: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  const options: ConnectionOptions = {
    servers: servers.split(',').map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    ...extra,
  };
  if (auth.credsFile) options.authenticator = credsAuthenticator(fs.readFileSync(auth.credsFile));
  const nc = await connect(options);
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') log.warn({ server: status.data }, 'nats disconnected');
      else if (status.type === 'reconnect') log.info({ server: status.data }, 'nats reconnected');
      else if (status.type === 'error') log.warn({ err: String(status.data) }, 'nats error');
    }
  })();
  return nc;
}

/** Resolves when the connection answers a round trip to the server. */
export async function pingNats(nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) throw new Error('nats connection closed');
  await nc.flush();
}

/**
 * What a JetStream cluster answers for a while after it formed, before every
 * node has loaded the account (operator mode loads accounts lazily): "JetStream
 * not enabled for account" (10039) and "error creating store for stream"
 * (10049, the replica has no account folder yet). Both pass within seconds.
 */
const JETSTREAM_STARTUP_CODES = new Set([10039, 10049]);

/** JetStream API error codes (`api_error.err_code`) the services act on. */
export const JETSTREAM_ERROR = { consumerNameExists: 10013, consumerNotFound: 10014, noMessage: 10037, streamNameInUse: 10058, streamNotFound: 10059 } as const;

/** The JetStream API error code of a failed call (`api_error.err_code`); undefined for any other error. */
export function jetStreamErrorCode(err: unknown): number | undefined {
  return (err as { api_error?: { err_code?: number } } | undefined)?.api_error?.err_code;
}

/**
 * Runs `create` (a stream or bucket creation), again every 250 ms while the
 * cluster gives one of its startup answers, for up to `patienceMs`; any other
 * error, or one past that, is thrown.
 */
export async function withJetStreamStartupPatience<T>(create: () => Promise<T>, patienceMs = 30_000): Promise<T> {
  const until = Date.now() + patienceMs;
  for (;;) {
    try {
      return await create();
    } catch (err) {
      const code = jetStreamErrorCode(err);
      if (code === undefined || !JETSTREAM_STARTUP_CODES.has(code) || Date.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
