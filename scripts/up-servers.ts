import fs from 'node:fs';
import path from 'node:path';
import { redactUrl } from '@iot-mesh/runtime';
import { displayPath } from './up-status';
import { Component, UpContext } from './up-stack';
import { startNatsServer, startPostgres, startRedis, postgresBinDir } from './local-servers';
import { ensurePortFree } from './up-wait';

/** A configured port, with 0 meaning "let the server pick one" (it reports what it bound). */
function anyWhenZero(port: number): number | undefined {
  return port === 0 ? undefined : port;
}

/** Checks each configured port (0: any) up front, so a clash names its variable. */
async function ensurePortsFree(ports: Array<[number, string]>): Promise<void> {
  for (const [port, variable] of ports) if (port !== 0) await ensurePortFree(port, variable);
}

/**
 * Settings a NATS auth setup (operator mode) adds to the up-command's
 * nats-server: config lines and the credentials the services connect with.
 */
export interface NatsAuthSetup {
  /** Lines appended to nats.conf (operator, resolver, system_account…). */
  configLines: string[];
  /** Variables for every later child, e.g. NATS_CREDS. */
  env: Record<string, string>;
  /** Shown under the status table. */
  notes?: string[];
}

/**
 * The platform's own nats-server (JetStream and the MQTT listener) under
 * `<data>/nats`, unless NATS_URL points at a running one. `auth` turns on
 * operator mode (decentralised JWT auth); without it the server has no auth.
 */
export function natsServer(auth?: (ctx: UpContext, dir: string) => Promise<NatsAuthSetup>): Component {
  return {
    name: 'nats',
    async start(ctx) {
      const { config } = ctx;
      if (config.NATS_URL) {
        ctx.env.NATS_URL = config.NATS_URL;
        if (config.MQTT_URL) ctx.env.MQTT_URL = config.MQTT_URL;
        return { rows: [{ name: 'nats', state: 'external', address: redactUrl(config.NATS_URL), detail: 'NATS_URL' }] };
      }
      await ensurePortsFree([
        [config.UP_NATS_PORT, 'UP_NATS_PORT'],
        [config.UP_NATS_MQTT_PORT, 'UP_NATS_MQTT_PORT'],
        [config.UP_NATS_HTTP_PORT, 'UP_NATS_HTTP_PORT'],
      ]);
      const dir = path.join(config.dataDir, 'nats');
      fs.mkdirSync(dir, { recursive: true });
      const setup = auth ? await auth(ctx, dir) : undefined;
      const nats = await startNatsServer(ctx, {
        dir,
        serverName: 'iot_local',
        port: anyWhenZero(config.UP_NATS_PORT),
        httpPort: anyWhenZero(config.UP_NATS_HTTP_PORT),
        mqtt: anyWhenZero(config.UP_NATS_MQTT_PORT) ?? true,
        configLines: setup?.configLines,
        timeoutMs: config.UP_START_TIMEOUT_MS,
      });
      const { proc, url } = nats;
      const mqttUrl = nats.mqttUrl!;
      ctx.env.NATS_URL = url;
      ctx.env.MQTT_URL = mqttUrl;
      Object.assign(ctx.env, setup?.env ?? {});
      return {
        rows: [
          { name: 'nats', state: 'started', address: url, pid: proc.pid, detail: displayPath(proc.logFile) },
          { name: 'nats mqtt', state: 'started', address: mqttUrl, pid: proc.pid, detail: setup ? 'device credential as password' : 'no auth' },
          { name: 'nats monitor', state: 'started', address: nats.monitorUrl, pid: proc.pid, detail: '/varz /jsz /connz' },
        ],
        notes: setup?.notes,
      };
    },
  };
}

/** The database the services share (one schema each). */
const DATABASE = 'iot';

/**
 * PostgreSQL from the machine's packages with its cluster under
 * `<data>/postgres`, unless DATABASE_URL points at a running server. As
 * root, initdb and postgres run as the `postgres` user. TCP on 127.0.0.1
 * only, trust auth (a local development cluster).
 */
export function postgresServer(): Component {
  return {
    name: 'postgres',
    async start(ctx) {
      const { config } = ctx;
      if (config.DATABASE_URL) {
        ctx.env.DATABASE_URL = config.DATABASE_URL;
        return { rows: [{ name: 'postgres', state: 'external', address: redactUrl(config.DATABASE_URL), detail: 'DATABASE_URL' }] };
      }
      await ensurePortsFree([[config.UP_POSTGRES_PORT, 'UP_POSTGRES_PORT']]);
      const { proc, url } = await startPostgres(ctx, {
        dir: path.join(config.dataDir, 'postgres'),
        port: anyWhenZero(config.UP_POSTGRES_PORT),
        binDir: postgresBinDir(config.UP_POSTGRES_BIN),
        database: DATABASE,
        timeoutMs: config.UP_START_TIMEOUT_MS,
      });
      ctx.env.DATABASE_URL = url;
      return { rows: [{ name: 'postgres', state: 'started', address: url, pid: proc.pid, detail: displayPath(proc.logFile) }] };
    },
  };
}

/** Redis from the machine's packages, nothing kept on disk, unless REDIS_URL points at a running one. */
export function redisServer(): Component {
  return {
    name: 'redis',
    async start(ctx) {
      const { config } = ctx;
      if (config.REDIS_URL) {
        ctx.env.REDIS_URL = config.REDIS_URL;
        return { rows: [{ name: 'redis', state: 'external', address: redactUrl(config.REDIS_URL), detail: 'REDIS_URL' }] };
      }
      await ensurePortsFree([[config.UP_REDIS_PORT, 'UP_REDIS_PORT']]);
      const { proc, url } = await startRedis(ctx, { dir: path.join(config.dataDir, 'redis'), port: anyWhenZero(config.UP_REDIS_PORT), timeoutMs: config.UP_START_TIMEOUT_MS });
      ctx.env.REDIS_URL = url;
      return { rows: [{ name: 'redis', state: 'started', address: url, pid: proc.pid, detail: displayPath(proc.logFile) }] };
    },
  };
}
