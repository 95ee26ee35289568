/**
 * How this repository starts nats-server, PostgreSQL and Redis from the
 * machine's packages: the one recipe behind `npm run up` (scripts/up-servers.ts)
 * and the private servers `npm test` starts when the standard ones do not
 * answer (testing/global-setup.ts, testing/nats-server.ts). Each starter takes
 * a {@link ServerLauncher} (how to run a child: the up-command's supervised
 * processes, or a test run's) and, when given no port, lets the server pick one
 * and reports it — nats-server binds port -1 and writes the ports it bound;
 * PostgreSQL and Redis cannot bind port 0 and report it, so they get a port
 * that was free and are started again on another when the bind loses a race.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Client } from 'pg';
import { findPostgresBinDir, POSTGRES_BASE, resolveCommand } from './preflight';
import { ManagedProcess, ProcessSpec } from './up-process';
import { pickFreePort, portAnswers, waitUntil } from './up-wait';

const LOCAL = '127.0.0.1';

/** What a starter needs from whoever runs the child processes. */
export interface ServerLauncher {
  /** Starts a long-running child; it is stopped by whoever owns the launcher. */
  spawn(spec: ProcessSpec): Promise<ManagedProcess>;
  /** Runs a one-off command (initdb) to its end; throws unless it exits 0. */
  run(spec: ProcessSpec): Promise<void>;
  /** Aborts waits (Ctrl-C during start-up). */
  signal?: AbortSignal;
  /** Progress lines. */
  say?(line: string): void;
}

/** Common options: where the server keeps its files and how long it may take. */
interface ServerOptions {
  /** The server's own folder (config, data). */
  dir: string;
  /** How long the server may take to answer. */
  timeoutMs: number;
  /** Name of the process (log and pid file); default the server's. */
  name?: string;
}

/** Why a child exited, or undefined while it runs: for `waitUntil`'s `failed`. */
function exitReason(proc: ManagedProcess): () => string | undefined {
  return () => (proc.running ? undefined : `exited (${proc.exitDescription})`);
}

/** Whether a server's log says it lost the race for its port (bind failed). */
function lostPortRace(proc: ManagedProcess): boolean {
  return /address already in use|could not bind|could not create any TCP\/IP sockets/i.test(proc.tail(40));
}

/**
 * Starts a server on `port`, or, with no port, on a free one, starting it
 * again on another port (at most five times) when another process took the
 * port between the pick and the bind.
 */
async function startOnPort<T>(port: number | undefined, start: (port: number) => Promise<{ proc: ManagedProcess; ready: () => Promise<T> }>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const { proc, ready } = await start(port ?? (await pickFreePort()));
    try {
      return await ready();
    } catch (err) {
      if (port !== undefined || attempt >= 5 || proc.running || !lostPortRace(proc)) throw err;
    }
  }
}

// ---------------------------------------------------------------------------
// nats-server
// ---------------------------------------------------------------------------

/** Options of {@link startNatsServer}. */
export interface NatsServerStart extends ServerOptions {
  /** Client port; undefined: any free port (reported). */
  port?: number;
  /** HTTP monitoring port (/varz); undefined: any free port. */
  httpPort?: number;
  /** Open an MQTT listener (needs JetStream): true for any free port, or the port. */
  mqtt?: boolean | number;
  /** JetStream with its store under `<dir>/jetstream` (default true). */
  jetstream?: boolean;
  /** `server_name` (JetStream needs one); default `local`. */
  serverName?: string;
  /** Lines appended to the config (operator mode, limits…). */
  configLines?: string[];
}

/** A started nats-server and the ports it bound. */
export interface StartedNatsServer {
  proc: ManagedProcess;
  configFile: string;
  port: number;
  httpPort: number;
  mqttPort?: number;
  /** `nats://127.0.0.1:<port>` */
  url: string;
  /** `mqtt://127.0.0.1:<port>` when MQTT is on. */
  mqttUrl?: string;
  /** `http://127.0.0.1:<httpPort>` */
  monitorUrl: string;
}

/** The nats.conf for the options; `-1` ports mean "pick one" to nats-server. */
export function natsConfig(options: NatsServerStart): string {
  const store = path.join(options.dir, 'jetstream');
  const lines = [
    '# Written on every start by scripts/local-servers.ts; edit that instead.',
    `server_name: ${options.serverName ?? 'local'}`,
    `listen: ${LOCAL}:${options.port ?? -1}`,
    `http: ${LOCAL}:${options.httpPort ?? -1}`,
    // The bound ports land here as <program>_<pid>.ports, so nothing has to guess them.
    `ports_file_dir: "${options.dir}"`,
    // Explicit, and equal to monitoring's TELEMETRY_STREAM_MAX_MSG_SIZE: the MQTT listener does not apply it, the stream does.
    'max_payload: 1048576',
  ];
  if (options.jetstream !== false || options.mqtt) lines.push(`jetstream { store_dir: "${store}" }`);
  if (options.mqtt) lines.push(`mqtt { listen: ${LOCAL}:${options.mqtt === true ? -1 : options.mqtt} }`);
  lines.push(...(options.configLines ?? []));
  return lines.join('\n') + '\n';
}

/** The port of the first `scheme://host:port` URL in a list. */
function portOf(urls: string[] | undefined): number | undefined {
  const first = urls?.[0];
  return first ? Number(new URL(first).port) : undefined;
}

/**
 * Starts nats-server with the options, waits until it accepts clients (and
 * MQTT when on) and returns the ports it bound: from its ports file, and the
 * MQTT port (not in that file in 2.9) from its own /varz.
 */
export async function startNatsServer(launcher: ServerLauncher, options: NatsServerStart): Promise<StartedNatsServer> {
  fs.mkdirSync(options.dir, { recursive: true });
  for (const stale of fs.readdirSync(options.dir).filter((f) => f.endsWith('.ports'))) fs.rmSync(path.join(options.dir, stale), { force: true });
  const configFile = path.join(options.dir, 'nats.conf');
  fs.writeFileSync(configFile, natsConfig(options));
  const proc = await launcher.spawn({ name: options.name ?? 'nats', command: resolveCommand('nats-server'), args: ['-c', configFile], stopSignal: 'SIGINT' });
  const portsFile = path.join(options.dir, `nats-server_${proc.pid}.ports`);
  let bound: { port: number; httpPort: number; mqttPort?: number } | undefined;
  await waitUntil(
    options.name ?? 'nats',
    async () => {
      if (!fs.existsSync(portsFile)) return false;
      const ports = JSON.parse(fs.readFileSync(portsFile, 'utf8')) as { nats?: string[]; monitoring?: string[] };
      const port = portOf(ports.nats);
      const httpPort = portOf(ports.monitoring);
      if (!port || !httpPort || !(await portAnswers(port))) return false;
      let mqttPort: number | undefined;
      if (options.mqtt) {
        const varz = (await (await fetch(`http://${LOCAL}:${httpPort}/varz`)).json()) as { mqtt?: { port?: number } };
        mqttPort = varz.mqtt?.port;
        if (!mqttPort || !(await portAnswers(mqttPort))) return false;
      }
      bound = { port, httpPort, mqttPort };
      return true;
    },
    { timeoutMs: options.timeoutMs, signal: launcher.signal, intervalMs: 50, failed: exitReason(proc) },
  );
  const { port, httpPort, mqttPort } = bound!;
  return {
    proc,
    configFile,
    port,
    httpPort,
    mqttPort,
    url: `nats://${LOCAL}:${port}`,
    mqttUrl: mqttPort ? `mqtt://${LOCAL}:${mqttPort}` : undefined,
    monitorUrl: `http://${LOCAL}:${httpPort}`,
  };
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

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

/** Options of {@link startPostgres}. */
export interface PostgresStart extends ServerOptions {
  /** TCP port on 127.0.0.1; undefined: a free one. */
  port?: number;
  /** Folder with initdb and postgres; default the newest /usr/lib/postgresql/<v>/bin. */
  binDir?: string;
  /** A database created once the server answers (the up-command's `iot`). */
  database?: string;
}

/** A started PostgreSQL (trust auth, user postgres). */
export interface StartedPostgres {
  proc: ManagedProcess;
  port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  adminUrl: string;
  /** The URL of `database` (or of `postgres` when none was asked for). */
  url: string;
}

/**
 * PostgreSQL from the machine's packages with its cluster in `dir` (created
 * with initdb on first start). As root, initdb and postgres run as the
 * `postgres` user. TCP on 127.0.0.1 only, trust auth, no Unix socket (the
 * folder may be too deep for a socket path).
 */
export async function startPostgres(launcher: ServerLauncher, options: PostgresStart): Promise<StartedPostgres> {
  const bin = options.binDir ?? postgresBinDir();
  const ids = process.getuid?.() === 0 ? userIds('postgres') : undefined;
  if (process.getuid?.() === 0 && !ids) throw new Error('running as root, and PostgreSQL refuses root: create a `postgres` user (the postgresql package does) or point at a running server');
  const dir = options.dir;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (ids) fs.chownSync(dir, ids.uid, ids.gid);
  if (!fs.existsSync(path.join(dir, 'PG_VERSION'))) {
    launcher.say?.(`  creating a PostgreSQL cluster in ${dir}`);
    await launcher.run({ name: 'initdb', command: path.join(bin, 'initdb'), args: ['-D', dir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-instructions'], ...ids });
  }
  const name = options.name ?? 'postgres';
  return startOnPort(options.port, async (port) => {
    const proc = await launcher.spawn({
      name,
      command: path.join(bin, 'postgres'),
      args: ['-D', dir, '-p', String(port), '-h', LOCAL, '-k', '', '-c', 'max_connections=200'],
      stopSignal: 'SIGINT', // fast shutdown: roll back open transactions, exit 0
      ...ids,
    });
    const adminUrl = `postgres://postgres@${LOCAL}:${port}/postgres`;
    return {
      proc,
      ready: async () => {
        await waitUntil(
          name,
          async () => {
            const client = new Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 });
            try {
              await client.connect();
              // Our own cluster, not another server that took the port first.
              const { rows } = await client.query<{ data_directory: string }>('SHOW data_directory');
              if (fs.realpathSync(rows[0].data_directory) !== fs.realpathSync(dir)) throw new Error(`port ${port} answers with another cluster`);
              if (options.database) {
                const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [options.database]);
                if (rowCount === 0) await client.query(`CREATE DATABASE "${options.database}"`);
              }
              return true;
            } finally {
              await client.end().catch(() => undefined);
            }
          },
          { timeoutMs: options.timeoutMs, signal: launcher.signal, intervalMs: 200, failed: exitReason(proc) },
        );
        return { proc, port, adminUrl, url: `postgres://postgres@${LOCAL}:${port}/${options.database ?? 'postgres'}` };
      },
    };
  });
}

/** The folder with initdb and postgres: `configured`, or the newest Debian install. */
export function postgresBinDir(configured?: string): string {
  if (configured) return configured;
  const found = findPostgresBinDir();
  if (!found) throw new Error(`no PostgreSQL server found under ${POSTGRES_BASE}: install the postgresql package or point at a running server`);
  return found;
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/** The `process_id` a Redis on 127.0.0.1:port reports (INFO server), or undefined. */
function redisProcessId(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(port, LOCAL);
    let reply = '';
    const done = (pid?: number) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1000, () => done());
    socket.once('error', () => done());
    socket.once('connect', () => socket.write('INFO server\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      const match = /process_id:(\d+)/.exec(reply);
      if (match) done(Number(match[1]));
      else if (reply.startsWith('-')) done();
    });
  });
}

/** Options of {@link startRedis}. */
export interface RedisStart extends ServerOptions {
  /** TCP port on 127.0.0.1; undefined: a free one. */
  port?: number;
}

/** A started Redis. */
export interface StartedRedis {
  proc: ManagedProcess;
  port: number;
  /** `redis://127.0.0.1:<port>` */
  url: string;
}

/** Redis from the machine's packages, nothing kept on disk, its working folder `dir`. */
export async function startRedis(launcher: ServerLauncher, options: RedisStart): Promise<StartedRedis> {
  fs.mkdirSync(options.dir, { recursive: true });
  const name = options.name ?? 'redis';
  return startOnPort(options.port, async (port) => {
    const proc = await launcher.spawn({
      name,
      command: resolveCommand('redis-server'),
      args: ['--port', String(port), '--bind', LOCAL, '--dir', options.dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    });
    return {
      proc,
      ready: async () => {
        // Our own process answering, not another server that took the port first.
        await waitUntil(name, async () => (await redisProcessId(port)) === proc.pid, { timeoutMs: options.timeoutMs, signal: launcher.signal, failed: exitReason(proc) });
        return { proc, port, url: `redis://${LOCAL}:${port}` };
      },
    };
  });
}
