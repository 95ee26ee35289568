import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client as PgClient } from 'pg';
import { checkHealth, loadConfig } from '@iot-mesh/runtime';
import { monitoringEnv, writerOptions } from '@iot-mesh/monitoring/test-harness';
import { startPostgres, startRedis, StartedPostgres } from '../../scripts/local-servers';
import { TestLauncher } from '../../testing/server-launcher';
import { Platform } from '../../bench/src/platform';
import { ServiceProcess, startService } from '../../bench/src/processes';
import { DeviceIdentity } from '../../simulator/src/device';
import { KnownSet, KnownSetSize, NatsKnownSet, StoredCount } from './known-set';

/** One fault's row of RELIABILITY.md. */
export interface FaultResult {
  fault: string;
  /** What was done, in a sentence. */
  description: string;
  devices: number;
  /** Points the publishers sent (MQTT QoS 1). */
  sentPoints: number;
  /** Points acknowledged by PUBACK. */
  publishedPoints: number;
  storedPoints: number;
  duplicatedPoints: number;
  /** Acknowledged points missing from the store. */
  lostPoints: number;
  /** When each acknowledged message with a point missing got its PUBACK (message id → ms since the epoch). */
  lostAckTimes?: Record<string, number>;
  /** Of the lost points, those a limit stated on the page explains (set by the fault that knows it), not a breach. */
  knownLossPoints?: number;
  /** Sent points never acknowledged (the platform made no promise about them). */
  unacknowledgedPoints: number;
  /** From the fault's end until every service said SERVING and a new point was stored. */
  recoverMs: number;
  /** What else was observed (answers during an outage, restarts, …). */
  notes: string[];
  /** Highest resident set size of each monitoring replica during the fault (MiB), where measured. */
  peakRssMiB?: Record<string, number>;
  /** The NATS devices' set alongside, counted apart (at-most-once: what they lose is reported, not promised). */
  nats?: {
    devices: number;
    sentPoints: number;
    storedPoints: number;
    duplicatedPoints: number;
    /** Where the fault marked the platform recovered: points published after that, and how many are stored. */
    afterRecovery?: { sentPoints: number; storedPoints: number };
  };
}

/** Where the per-fault JSON goes: FAULTS_RESULTS_DIR, else test-results/faults. */
export const RESULTS_DIR = path.resolve(process.env.FAULTS_RESULTS_DIR ?? path.join(__dirname, '../../test-results/faults'));

/**
 * Removes an earlier run's results of these faults (each fault file clears its
 * own: jest runs the files in any order, so one clearing all would remove
 * what another file of this run wrote).
 */
export function clearResults(faults: string[]): void {
  for (const fault of faults) fs.rmSync(path.join(RESULTS_DIR, `${fault}.json`), { force: true });
}

/** Writes one fault's result as `<RESULTS_DIR>/<fault>.json` (faults/report.ts turns them into RELIABILITY.md). */
export function writeResult(result: FaultResult): void {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '?', memoryGiB: Math.round(os.totalmem() / 2 ** 30), loadAverage: Number(os.loadavg()[0].toFixed(1)), node: process.version, time: new Date().toISOString() };
  fs.writeFileSync(path.join(RESULTS_DIR, `${result.fault}.json`), JSON.stringify({ ...result, machine }, null, 2) + '\n');
}

/** A service replica the rig runs: its name and process. */
interface Replica {
  name: string;
  service: ServiceProcess;
}

/** How the rig runs the platform. */
export interface FaultRigOptions {
  /**
   * Three nats-server nodes (the bench Platform's `natsCluster`: operator
   * mode, JetStream and MQTT on every node, TELEMETRY with three replicas)
   * instead of one; the known sets then use persistent MQTT sessions and
   * every node, in the order {@link FaultRig.nodeOrder} gives.
   */
  natsCluster?: boolean;
}

/**
 * The platform as real processes for fault injection: a private PostgreSQL
 * cluster (so it can be stopped for real), the bench's Platform on it
 * (operator-mode nats-server with MQTT, or a three-node cluster, private
 * Redis, signing, device, one monitoring) and a second monitoring replica,
 * so one writer keeps going while the other is killed.
 */
export class FaultRig {
  platform!: Platform;
  postgres!: StartedPostgres;
  pg!: PgClient;
  /** Monitoring replicas (writers sharing the durable consumer). */
  readonly writers: Replica[] = [];
  /** NATS devices that publish a set of their own alongside each fault's MQTT set (none: no NATS set). */
  natsDevices: DeviceIdentity[] = [];
  /**
   * With a NATS cluster: the order (node indexes) the known sets' devices try
   * the nodes in, the first one first (all on it while it is up).
   */
  nodeOrder: number[] = [];
  private readonly launcher = new TestLauncher();
  /** Service processes the rig started again in place of the platform's (stopped with the rig). */
  private readonly restarted: ServiceProcess[] = [];
  private monitoringEnv: Record<string, string> = {};

  private constructor(private readonly options: FaultRigOptions) {}

  static async start(options: FaultRigOptions = {}): Promise<FaultRig> {
    const rig = new FaultRig(options);
    try {
      await rig.startAll();
    } catch (err) {
      await rig.stop();
      throw err;
    }
    return rig;
  }

  private async startAll(): Promise<void> {
    // PostgreSQL runs as the postgres user when we are root: it must reach its folder.
    fs.chmodSync(this.launcher.dir, 0o755);
    this.postgres = await this.launcher.explain(() => startPostgres(this.launcher, { dir: path.join(this.launcher.dir, 'postgres'), timeoutMs: 60_000 }));
    // The platform's database is created on the server TEST_DATABASE_URL names (testing/postgres.ts reads it at each call).
    process.env.TEST_DATABASE_URL = this.postgres.adminUrl;
    this.platform = await Platform.start({ signing: true, device: true, monitoring: true, natsCluster: this.options.natsCluster });
    const p = this.platform;
    // Every fault that stops PostgreSQL stops this one: the services must be on it (they were on the machine's own
    // server once, when an import read TEST_DATABASE_URL before it was set, and 'PostgreSQL stopped' stopped nothing they used).
    if (new URL(p.db.url).port !== String(this.postgres.port)) throw new Error(`the platform's database ${p.db.url} is not on the rig's PostgreSQL (port ${this.postgres.port})`);
    this.nodeOrder = Array.from({ length: p.natsCluster?.size ?? 0 }, (_, i) => i);
    this.monitoringEnv = { DATABASE_URL: p.db.url, NATS_URL: p.natsUrl, REDIS_URL: p.redis!.url, ...p.serviceEnv, SIGNING_ADDRESS: p.signing!.address };
    this.writers.push({ name: 'monitoring-a', service: p.monitoring! });
    this.writers.push({ name: 'monitoring-b', service: await this.startWriter() });
    this.pg = new PgClient({ connectionString: p.db.url });
    this.pg.on('error', () => undefined);
    await this.pg.connect();
  }

  /** Starts one more monitoring replica and waits until it is SERVING. */
  startWriter(): Promise<ServiceProcess> {
    return startService('monitoring', this.monitoringEnv);
  }

  /** Every service process with its gRPC address (signing, device, the writers). */
  services(): Array<{ name: string; service: ServiceProcess }> {
    return [
      { name: 'signing', service: this.platform.signing! },
      { name: 'device', service: this.platform.device! },
      ...this.writers,
    ];
  }

  /** Names of service processes that are not running (none should ever exit by themselves). */
  exited(): string[] {
    return this.services()
      .filter((s) => !s.service.process.running)
      .map((s) => `${s.name} (${s.service.process.exitDescription})`);
  }

  /** Each service's overall health. */
  async health(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const s of this.services()) out[s.name] = await checkHealth(s.service.address, '', 1000).catch(() => 'UNREACHABLE');
    return out;
  }

  /** Resolves once every service says SERVING (throws after `timeoutMs` with what they said). */
  async serving(timeoutMs = 60_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    while (Date.now() < until) {
      last = await this.health();
      if (Object.values(last).every((s) => s === 'SERVING')) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`not every service is SERVING: ${JSON.stringify(last)}`);
  }

  /** Provisions `count` MQTT devices of the bench tenant. */
  devices(prefix: string, count: number): Promise<DeviceIdentity[]> {
    return this.platform.devices(prefix, count, 'mqtt');
  }

  /** A known set for these devices on the platform's MQTT listener (a cluster's: every node's, persistent sessions). */
  knownSet(devices: DeviceIdentity[], size: KnownSetSize): KnownSet {
    const cluster = this.platform.natsCluster;
    if (!cluster) return new KnownSet(devices, this.platform.nats.mqttUrl, size);
    return new KnownSet(devices, this.nodeOrder.map((i) => ({ host: '127.0.0.1', port: cluster.node(i).mqttPort! })), size, { persistent: true });
  }

  /** A NATS known set for these devices (a cluster's every node, in {@link nodeOrder}). */
  natsKnownSet(devices: DeviceIdentity[], size: KnownSetSize): NatsKnownSet {
    const cluster = this.platform.natsCluster;
    return new NatsKnownSet(devices, cluster ? this.nodeOrder.map((i) => cluster.node(i).url).join(',') : this.platform.nats.url, size);
  }

  /** Stops PostgreSQL with a fast shutdown (SIGINT, as `pg_ctl stop -m fast`): the real server goes away. */
  async stopPostgres(): Promise<void> {
    await this.postgres.proc.stop(30_000);
  }

  /** Starts the same cluster again on the same port. */
  async startPostgres(): Promise<void> {
    this.postgres = await this.launcher.explain(() => startPostgres(this.launcher, { dir: path.join(this.launcher.dir, 'postgres'), port: this.postgres.port, timeoutMs: 60_000 }));
  }

  /** Kills signing with SIGKILL and waits until it is gone. */
  async killSigning(): Promise<void> {
    const proc = this.platform.signing!.process;
    proc.kill();
    await proc.exited();
  }

  /** Starts signing again with its environment on the same gRPC port (the other services know that address); waits until SERVING. */
  async startSigning(): Promise<void> {
    const old = this.platform.signing!;
    const env = Object.fromEntries(Object.entries(old.process.spec.env ?? {}).filter((e): e is [string, string] => e[1] !== undefined));
    this.platform.signing = await startService('signing', { ...env, GRPC_PORT: String(old.port) });
    this.restarted.push(this.platform.signing);
  }

  /** Each monitoring replica's resident set size now (MiB), read from /proc. */
  writerRssMiB(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const w of this.writers) {
      const pid = w.service.process.pid;
      if (!pid) continue;
      try {
        const kb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
        out[w.name] = Math.round(kb / 1024);
      } catch {
        // Gone between the pid and the read: no figure this time.
      }
    }
    return out;
  }

  /**
   * How far (MiB) a writer replica's resident set may grow over its baseline,
   * derived from the writer's own bounds as the replicas are configured:
   * twice the payload bytes it may hold and one pull (Buffers and their
   * copies while decoding), and 4 KiB per decoded point it may hold (the row
   * objects and their query parameters take a few hundred bytes; the rest is
   * room for the garbage collector and the rest of the process under load).
   * Generous by design, yet it tells a bounded writer from an unbounded one:
   * with the defaults about 740 MiB; in two runs a replica grew by 376-534 MiB
   * with the bounds, and by 865-932 MiB before them (2026-12-02).
   */
  writerMemoryAllowanceMiB(): number {
    const config = loadConfig(monitoringEnv, this.monitoringEnv);
    const writer = writerOptions(config);
    const heldPoints = (writer.batchesInFlight ?? 3) * ((writer.batchMaxPoints ?? 0) + config.INGEST_MAX_POINTS);
    return Math.ceil((2 * ((writer.maxHeldBytes ?? 0) + (writer.batchMaxBytes ?? 0)) + heldPoints * 4096) / 1024 ** 2);
  }

  /** Stops the platform's redis-server (SIGTERM). */
  async stopRedis(): Promise<void> {
    await this.platform.redis!.proc.stop(10_000);
  }

  /** Starts a redis-server again on the port the services know (empty: Redis is only a cache). */
  async startRedis(): Promise<void> {
    const port = this.platform.redis!.port;
    this.platform.redis = await this.launcher.explain(() => startRedis(this.launcher, { dir: path.join(this.launcher.dir, 'redis'), port, timeoutMs: 20_000 }));
  }

  /**
   * How long until the platform is back after a fault: every service
   * SERVING and a point of the running known set stored after `since`.
   */
  async recovered(set: KnownSet, since: number, timeoutMs = 90_000): Promise<number> {
    const before = await this.countSafely(set);
    await this.serving(timeoutMs);
    const until = since + timeoutMs;
    for (;;) {
      const now = await this.countSafely(set);
      if (now && before && now.stored > before.stored) break;
      if (now && now.lost === 0 && set.acked.size === set.sent) break; // everything already in: nothing new to wait for
      if (Date.now() > until) throw new Error('no new point stored after the fault');
      await new Promise((r) => setTimeout(r, 100));
    }
    return Date.now() - since;
  }

  /** The store's count, or undefined while the database does not answer. */
  private async countSafely(set: KnownSet): Promise<StoredCount | undefined> {
    try {
      return await set.count(await this.freshPg(), this.platform.tenantId);
    } catch {
      return undefined;
    }
  }

  /** The rig's PostgreSQL client, connected again after an outage. */
  async freshPg(): Promise<PgClient> {
    try {
      await this.pg.query('SELECT 1');
    } catch {
      await this.pg.end().catch(() => undefined);
      this.pg = new PgClient({ connectionString: this.platform.db.url });
      this.pg.on('error', () => undefined);
      await this.pg.connect();
    }
    return this.pg;
  }

  /** Runs a known set through `inject` (which injects the fault while the set is published) and returns its figures. */
  async run(
    fault: string,
    description: string,
    devices: DeviceIdentity[],
    size: KnownSetSize,
    inject: (set: KnownSet, natsSet: NatsKnownSet | undefined) => Promise<{ recoverMs: number; notes?: string[]; peakRssMiB?: Record<string, number> }>,
    drainMs = 60_000,
  ): Promise<FaultResult> {
    const set = this.knownSet(devices, size);
    const natsSet = this.natsDevices.length ? this.natsKnownSet(this.natsDevices, size) : undefined;
    await set.connect();
    await natsSet?.connect();
    try {
      const publishing = Promise.all([set.publish(), natsSet?.publish()]);
      const { recoverMs, notes = [], peakRssMiB } = await inject(set, natsSet);
      await publishing;
      await set.settle(60_000);
      const count = await set.drained(await this.freshPg(), this.platform.tenantId, drainMs);
      const natsCount = await natsSet?.count(await this.freshPg(), this.platform.tenantId);
      const natsAfter = natsSet?.recovered ? await natsSet.countAfterRecovery(await this.freshPg(), this.platform.tenantId) : undefined;
      const result: FaultResult = {
        fault,
        description,
        devices: devices.length,
        sentPoints: set.sent * size.pointsPerMessage,
        publishedPoints: set.ackedPoints,
        storedPoints: count.stored,
        duplicatedPoints: count.duplicated,
        lostPoints: count.lost,
        unacknowledgedPoints: (set.sent - set.acked.size) * size.pointsPerMessage,
        recoverMs,
        notes: count.lost > 0 ? [...notes, `PUBACKed and not stored (message ids \`<device>-<run>-<n>\`, n from 1 at ${size.ratePerDevice}/s): ${count.lostMessageIds.slice(0, 10).join(', ')}${count.lostMessageIds.length > 10 ? ', …' : ''}`] : notes,
        ...(count.lost > 0 ? { lostAckTimes: Object.fromEntries(count.lostMessageIds.map((id) => [id, set.acked.get(id)!])) } : {}),
        ...(peakRssMiB ? { peakRssMiB } : {}),
        ...(natsSet && natsCount
          ? {
              nats: {
                devices: this.natsDevices.length,
                sentPoints: natsSet.sent * size.pointsPerMessage,
                storedPoints: natsCount.stored,
                duplicatedPoints: natsCount.duplicated,
                ...(natsAfter ? { afterRecovery: { sentPoints: natsAfter.sent * size.pointsPerMessage, storedPoints: natsAfter.stored * size.pointsPerMessage } } : {}),
              },
            }
          : {}),
      };
      writeResult(result);
      return result;
    } finally {
      await set.close();
      await natsSet?.close();
    }
  }

  async stop(): Promise<void> {
    await this.pg?.end().catch(() => undefined);
    for (const w of this.writers) await w.service.process.stop(5000).catch(() => undefined);
    for (const p of this.restarted) await p.process.stop(5000).catch(() => undefined);
    await this.platform?.stop().catch(() => undefined);
    await this.launcher.destroy();
  }
}
