import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { redactUrl } from '@iot-mesh/runtime';
import { displayPath } from './up-status';
import { Component, UpContext } from './up-stack';
import { ensurePortFree, portAnswers, waitUntil } from './up-wait';

const LOCAL = '127.0.0.1';

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
      await ensurePortFree(config.UP_NATS_PORT, 'UP_NATS_PORT');
      await ensurePortFree(config.UP_NATS_MQTT_PORT, 'UP_NATS_MQTT_PORT');
      await ensurePortFree(config.UP_NATS_HTTP_PORT, 'UP_NATS_HTTP_PORT');
      const dir = path.join(config.dataDir, 'nats');
      fs.mkdirSync(dir, { recursive: true });
      const setup = auth ? await auth(ctx, dir) : undefined;
      const configFile = path.join(dir, 'nats.conf');
      const lines = [
        '# Written by `npm run up` on every start; edit scripts/up-servers.ts instead.',
        'server_name: iot_local',
        `listen: ${LOCAL}:${config.UP_NATS_PORT}`,
        `http: ${LOCAL}:${config.UP_NATS_HTTP_PORT}`,
        `jetstream { store_dir: "${path.join(dir, 'jetstream')}" }`,
        `mqtt { listen: ${LOCAL}:${config.UP_NATS_MQTT_PORT} }`,
        ...(setup?.configLines ?? []),
      ];
      fs.writeFileSync(configFile, lines.join('\n') + '\n');
      const proc = await ctx.spawn({ name: 'nats', command: 'nats-server', args: ['-c', configFile], stopSignal: 'SIGINT' });
      await waitUntil(
        'nats',
        async () => (await portAnswers(config.UP_NATS_PORT)) && (await portAnswers(config.UP_NATS_MQTT_PORT)),
        { timeoutMs: config.UP_START_TIMEOUT_MS, signal: ctx.signal, failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`) },
      );
      const url = `nats://${LOCAL}:${config.UP_NATS_PORT}`;
      const mqttUrl = `mqtt://${LOCAL}:${config.UP_NATS_MQTT_PORT}`;
      ctx.env.NATS_URL = url;
      ctx.env.MQTT_URL = mqttUrl;
      Object.assign(ctx.env, setup?.env ?? {});
      return {
        rows: [
          { name: 'nats', state: 'started', address: url, pid: proc.pid, detail: displayPath(proc.logFile) },
          { name: 'nats mqtt', state: 'started', address: mqttUrl, pid: proc.pid, detail: setup ? 'device credential as password' : 'no auth' },
          { name: 'nats monitor', state: 'started', address: `http://${LOCAL}:${config.UP_NATS_HTTP_PORT}`, pid: proc.pid, detail: '/varz /jsz /connz' },
        ],
        notes: setup?.notes,
      };
    },
  };
}

/** Numeric uid and gid of a local user, from /etc/passwd. */
function userIds(name: string): { uid: number; gid: number } | undefined {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** The folder with initdb and postgres: UP_POSTGRES_BIN or the newest Debian install. */
function postgresBinDir(configured?: string): string {
  if (configured) return configured;
  const base = '/usr/lib/postgresql';
  const versions = fs.existsSync(base) ? fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, 'bin', 'initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error('no PostgreSQL server found under /usr/lib/postgresql: install the postgresql package, set UP_POSTGRES_BIN, or set DATABASE_URL');
  return path.join(base, versions[0], 'bin');
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
      const bin = postgresBinDir(config.UP_POSTGRES_BIN);
      const ids = process.getuid?.() === 0 ? userIds('postgres') : undefined;
      if (process.getuid?.() === 0 && !ids) throw new Error('running as root, and PostgreSQL refuses root: create a `postgres` user (the postgresql package does) or set DATABASE_URL');
      const dir = path.join(config.dataDir, 'postgres');
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (ids) fs.chownSync(dir, ids.uid, ids.gid);
      if (!fs.existsSync(path.join(dir, 'PG_VERSION'))) {
        ctx.say(`  creating a PostgreSQL cluster in ${displayPath(dir)}`);
        await ctx.run({ name: 'initdb', command: path.join(bin, 'initdb'), args: ['-D', dir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-instructions'], ...ids });
      }
      await ensurePortFree(config.UP_POSTGRES_PORT, 'UP_POSTGRES_PORT');
      // No Unix socket (-k ''): the data folder may be too deep for a socket path.
      const proc = await ctx.spawn({
        name: 'postgres',
        command: path.join(bin, 'postgres'),
        args: ['-D', dir, '-p', String(config.UP_POSTGRES_PORT), '-h', LOCAL, '-k', '', '-c', 'max_connections=200'],
        stopSignal: 'SIGINT', // fast shutdown: roll back open transactions, exit 0
        ...ids,
      });
      const adminUrl = `postgres://postgres@${LOCAL}:${config.UP_POSTGRES_PORT}/postgres`;
      await waitUntil(
        'postgres',
        async () => {
          const client = new Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 });
          try {
            await client.connect();
            const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
            if (rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
            return true;
          } finally {
            await client.end().catch(() => undefined);
          }
        },
        { timeoutMs: config.UP_START_TIMEOUT_MS, signal: ctx.signal, intervalMs: 200, failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`) },
      );
      const url = `postgres://postgres@${LOCAL}:${config.UP_POSTGRES_PORT}/${DATABASE}`;
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
      await ensurePortFree(config.UP_REDIS_PORT, 'UP_REDIS_PORT');
      const dir = path.join(config.dataDir, 'redis');
      fs.mkdirSync(dir, { recursive: true });
      const proc = await ctx.spawn({
        name: 'redis',
        command: 'redis-server',
        args: ['--port', String(config.UP_REDIS_PORT), '--bind', LOCAL, '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      });
      await waitUntil('redis', () => portAnswers(config.UP_REDIS_PORT), {
        timeoutMs: config.UP_START_TIMEOUT_MS,
        signal: ctx.signal,
        failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`),
      });
      const url = `redis://${LOCAL}:${config.UP_REDIS_PORT}`;
      ctx.env.REDIS_URL = url;
      return { rows: [{ name: 'redis', state: 'started', address: url, pid: proc.pid, detail: displayPath(proc.logFile) }] };
    },
  };
}
