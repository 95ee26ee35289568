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
