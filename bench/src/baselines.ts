import fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { credentials, Client as GrpcClient, Metadata } from '@grpc/grpc-js';
import { connect, ConnectionOptions, headers, JetStreamClient, PubAck, StorageType } from 'nats';
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { repoPath } from '@iot-mesh/runtime';
import { closedLoop, Latencies, nowMs } from './measure';
import { startNode, STOP_GRACE_MS } from './processes';
import { waitForReportedPort } from '../../scripts/reported-port';

const DAY_MS = 86_400_000;
const METRICS = ['temperature', 'humidity', 'pressure', 'wind_speed', 'wind_direction'];

/** A throughput measurement. */
export interface Rate {
  count: number;
  seconds: number;
  perSecond: number;
}

/**
 * Raw PostgreSQL COPY from one Node client into a table of the telemetry
 * store's shape (the monitoring migration applied in a scratch schema: same
 * columns, primary key and day partitioning), with no staging table, no
 * conflict handling and no "latest" upsert: the ceiling the writer is held to.
 * Rows are generated and formatted in Node as the writer must.
 */
export async function rawCopyRate(databaseUrl: string, durationMs: number, rowsPerBatch = 5000): Promise<Rate> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  const schema = `bench_copy_${process.pid}`;
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    const migration = fs.readFileSync(repoPath('services', 'monitoring', 'migrations', '0001_telemetry.sql'), 'utf8');
    await client.query(migration);
    const day = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    await client.query(`CREATE TABLE points_today PARTITION OF points FOR VALUES FROM ('${new Date(day).toISOString()}') TO ('${new Date(day + DAY_MS).toISOString()}')`);
    let rows = 0;
    let sequence = 0;
    const started = nowMs();
    const until = started + durationMs;
    while (nowMs() < until) {
      let text = '';
      for (let i = 0; i < rowsPerBatch; i++) {
        const n = sequence++;
        const device = n % 100;
        const message = Math.floor(n / METRICS.length);
        const time = new Date(day + 1000 + (n % 80_000_000)).toISOString();
        text += `bench\td-${device}\t${METRICS[n % METRICS.length]}\t${time}\td-${device}-run-${message.toString(36)}\t${n % METRICS.length}\t${(20 + (n % 1000) / 100).toFixed(2)}\t\\N\t\\N\n`;
      }
      await pipeline(Readable.from([text]), client.query(copyFrom(`COPY points (tenant_id, device_id, metric, time, message_id, point_index, number_value, bool_value, string_value) FROM STDIN`)));
      rows += rowsPerBatch;
    }
    const seconds = (nowMs() - started) / 1000;
    return { count: rows, seconds, perSecond: rows / seconds };
  } finally {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await client.end();
  }
}

/**
 * Raw JetStream async publish from nats.js: a file-storage stream with a
 * duplicate window (like the telemetry stream), messages of the given
 * payload with a `Nats-Msg-Id`, up to `window` publish acks outstanding.
 */
export async function rawJetStreamRate(nats: ConnectionOptions, payload: Uint8Array, durationMs: number, window = 512): Promise<Rate> {
  const nc = await connect(nats);
  const name = `BENCH_RAW_${process.pid}`;
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.streams.add({ name, subjects: [`bench.raw.${process.pid}.>`], storage: StorageType.File, duplicate_window: 120_000_000_000, max_bytes: 2 * 1024 ** 3 });
    const js: JetStreamClient = nc.jetstream();
    const pending = new Set<Promise<PubAck>>();
    let sent = 0;
    let acked = 0;
    const started = nowMs();
    const until = started + durationMs;
    while (nowMs() < until) {
      const h = headers();
      h.set('Nats-Msg-Id', `raw-${sent}`);
      const p = js.publish(`bench.raw.${process.pid}.d${sent % 100}`, payload, { headers: h });
      sent++;
      pending.add(p);
      void p.then(
        () => {
          acked++;
          pending.delete(p);
        },
        () => pending.delete(p),
      );
      if (pending.size >= window) await Promise.race(pending);
    }
    await Promise.allSettled([...pending]);
    const seconds = (nowMs() - started) / 1000;
    return { count: acked, seconds, perSecond: acked / seconds };
  } finally {
    await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
  }
}

/** The bare grpc-js echo server's method path. */
export const ECHO_PATH = '/bench.Echo/Echo';
const identity = (b: Buffer) => b;

/** A running bare echo server (its own process, as the services are). */
export interface EchoServer {
  address: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts bench/src/echo-server.ts in a child process; it binds a free port and reports it. */
export async function startEchoServer(): Promise<EchoServer> {
  const proc = await startNode('grpc-echo', 'bench/src/echo-server.ts', { ECHO_PORT: '0' });
  const failed = () => (proc.running ? undefined : `the echo server exited (${proc.exitDescription}):\n${proc.tail()}`);
  const port = await waitForReportedPort(() => proc.output(), 'grpc listening', { timeoutMs: 30_000, failed }).catch(async (err) => {
    await proc.stop(STOP_GRACE_MS);
    throw err;
  });
  return { address: `127.0.0.1:${port}`, pid: proc.pid!, stop: async () => void (await proc.stop(STOP_GRACE_MS)) };
}

/**
 * Unary calls to the echo server with `concurrency` in flight for
 * `durationMs`: the same request bytes and response size as a device lookup.
 */
export async function echoLoad(address: string, request: Buffer, concurrency: number, durationMs: number): Promise<{ latencies: Latencies; seconds: number; errors: number; firstError?: string }> {
  const client = new GrpcClient(address, credentials.createInsecure());
  try {
    const call = () =>
      new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest(ECHO_PATH, identity, identity, request, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
      );
    await call();
    return await closedLoop(concurrency, durationMs, call);
  } finally {
    client.close();
  }
}
