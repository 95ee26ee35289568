import crypto from 'node:crypto';
import fs from 'node:fs';
import { connect, ConnectionOptions, credsAuthenticator, KV, NatsConnection } from 'nats';
import { Client as PgClient } from 'pg';
import { AuthServiceClient } from '../../gen/ts/iot/signing/v1/auth';
import { CredentialState } from '../../gen/ts/iot/device/v1/device';
import { DeviceDirectoryEntry } from '../../gen/ts/iot/device/v1/directory';
import { DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey, insecureClient, unary } from '@iot-mesh/runtime';
import { DeviceIdentity } from '../../simulator/src/device';
import { Transport } from '../../simulator/src/links';
import { ProfileName } from '../../simulator/src/profiles';
import { provisionDevices } from '../../simulator/src/provision';
import { OperatorNats, startOperatorNats } from '../../testing/nats-operator';
import { TestNatsCluster } from '../../testing/nats-cluster';
import { CLUSTER_SIZE, createDirectoryBucket } from '../../scripts/up-cluster';
import { TestNatsServer, NatsServerOptions } from '../../testing/nats-server';
import { startRedis, StartedRedis } from '../../scripts/local-servers';
import { waitForReportedPort } from '../../scripts/reported-port';
import { createTestDatabase, TestDatabase } from '../../testing/postgres';
import { TestLauncher } from '../../testing/server-launcher';
import { BenchProcess, ServiceProcess, startNode, startService, stopAll } from './processes';

/**
 * The bench's device service issues this credential kind by default, so
 * fleets of that transport get their credentials in BatchCreateDevices calls
 * (one per 1,000 devices) and the others theirs in one BatchIssueCredentials call per 1,000.
 */
const DEFAULT_CREDENTIAL_KIND: Transport = 'mqtt';

/** Which pieces a scenario needs running. */
export interface PlatformNeeds {
  nats?: NatsServerOptions;
  /**
   * NATS in operator mode (decentralised JWT auth) with the platform's
   * accounts: devices need credentials minted by the device service, and the
   * services connect with their creds file. Implied by `device`.
   */
  operator?: boolean;
  signing?: boolean;
  monitoring?: boolean | Record<string, string>;
  device?: boolean;
  gateway?: boolean;
  /**
   * A three-node JetStream cluster (testing/nats-cluster.ts, the up-command's
   * cluster recipe) in operator mode instead of one nats-server, as the
   * clustered mode runs it (README "Clustered mode"): every service gets every
   * node's URL, monitoring TELEMETRY_STREAM_REPLICAS=3, the directory buckets
   * three replicas. Implies `operator`.
   */
  natsCluster?: boolean;
  /** Extra node options per service (e.g. `--cpu-prof`). */
  nodeArgs?: Partial<Record<'signing' | 'device' | 'monitoring' | 'gateway', string[]>>;
}

/**
 * The platform as a scenario sees it: a private nats-server, a database of
 * its own, and the services it asked for, each a child process running the
 * real code with the real runtime. Processes are listed for memory figures.
 */
export class Platform {
  nats!: TestNatsServer;
  /** Set in operator mode. */
  operatorNats?: OperatorNats;
  /** Set with `natsCluster` (then {@link nats} is unset: use the cluster's nodes). */
  natsCluster?: TestNatsCluster;
  db!: TestDatabase;
  nc!: NatsConnection;
  signing?: ServiceProcess;
  monitoring?: ServiceProcess;
  device?: ServiceProcess;
  gateway?: { process: BenchProcess; url: string };
  /** `Bearer <access token>` of the bench tenant's admin, when signing runs. */
  authorization?: string;
  /** The bench tenant's id (from signing's bootstrap), or a made-up one without signing. */
  tenantId = `bench${crypto.randomBytes(3).toString('hex')}`;
  private directory?: KV;
  private readonly started: BenchProcess[] = [];
  /** A private redis-server: services share caches (JWKS copies, API keys) through Redis, so a shared one mixes platforms. */
  redis?: StartedRedis;
  /** Runs the private redis-server (binds a free port, again on another if it loses one to a race). */
  private readonly launcher = new TestLauncher();

  /** Extra environment every service gets (NATS credentials in operator mode, …). */
  serviceEnv: Record<string, string> = {};

  static async start(needs: PlatformNeeds): Promise<Platform> {
    const p = new Platform();
    try {
      await p.startAll(needs);
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  }

  private async startAll(needs: PlatformNeeds): Promise<void> {
    let deviceNatsEnv: Record<string, string> = {};
    if (needs.natsCluster) {
      const cluster = (this.natsCluster = await TestNatsCluster.start({ size: CLUSTER_SIZE }));
      this.serviceEnv = { NATS_URL: cluster.urls, NATS_CREDS: cluster.serviceCredsFile, TELEMETRY_STREAM_REPLICAS: String(CLUSTER_SIZE) };
      deviceNatsEnv = {
        DEVICE_NATS_OPERATOR_SIGNING_SEED: cluster.setup.operatorSigningSeed,
        DEVICE_NATS_PLATFORM_ACCOUNT: cluster.setup.appAccount,
        DEVICE_NATS_TENANT_KEY_SECRET: cluster.setup.tenantKeySecret,
        DEVICE_NATS_SYSTEM_CREDS: cluster.systemCredsFile,
        DEVICE_NATS_PUBLIC_URL: cluster.urls,
        DEVICE_MQTT_PUBLIC_URL: cluster.node(0).mqttUrl!,
      };
      await createDirectoryBucket(cluster.urls, cluster.serviceCredsFile);
    } else if (needs.operator || needs.device) {
      this.operatorNats = await startOperatorNats({ jetstream: true, mqtt: true, ...needs.nats });
      this.nats = this.operatorNats.server;
      this.serviceEnv = this.operatorNats.serviceEnv();
      deviceNatsEnv = this.operatorNats.deviceEnv();
    } else {
      this.nats = await TestNatsServer.start({ jetstream: true, mqtt: true, ...needs.nats });
    }
    this.db = await createTestDatabase('iot_bench');
    this.nc = await this.connectNats('bench');
    this.redis = await this.launcher.explain(() => startRedis(this.launcher, { dir: this.launcher.dir, timeoutMs: 10_000 }));
    // One bench tenant drives the whole load (500 live streams, thousands of calls/s): the per-tenant limits measure nothing here.
    const unlimited = { API_RATE_PER_TENANT: '1000000', API_BURST_PER_TENANT: '1000000', STREAMS_PER_PRINCIPAL: '100000', STREAMS_PER_CONNECTION: '100000' };
    const common = { DATABASE_URL: this.db.url, NATS_URL: this.natsUrl, REDIS_URL: this.redis.url, ...unlimited, ...this.serviceEnv };
    if (needs.signing) {
      const bootstrapToken = crypto.randomBytes(24).toString('hex');
      this.signing = await startService('signing', {
        ...common,
        SIGNING_BOOTSTRAP_TOKEN: bootstrapToken,
        SIGNING_HTTP_PORT: '0',
        SIGNING_KEY_ACTIVATION_DELAY_MS: '0',
        SIGNING_LOGIN_ACCOUNT_FREE_ATTEMPTS: '1000',
        SIGNING_LOGIN_ADDRESS_FREE_ATTEMPTS: '1000',
        SIGNING_REDIS_PREFIX: `iot:bench:${process.pid}:`,
      }, { nodeArgs: needs.nodeArgs?.signing });
      this.started.push(this.signing.process);
      await this.bootstrap(bootstrapToken);
    }
    const signingEnv: Record<string, string> = this.signing ? { SIGNING_ADDRESS: this.signing.address } : {};
    if (needs.device) {
      this.device = await startService('device', { ...common, ...deviceNatsEnv, ...signingEnv, DEVICE_CREDENTIAL_DEFAULT_KIND: DEFAULT_CREDENTIAL_KIND }, { nodeArgs: needs.nodeArgs?.device });
      this.started.push(this.device.process);
    }
    if (needs.monitoring) {
      const extra = typeof needs.monitoring === 'object' ? needs.monitoring : {};
      this.monitoring = await startService('monitoring', { ...common, ...signingEnv, ...extra }, { nodeArgs: needs.nodeArgs?.monitoring });
      this.started.push(this.monitoring.process);
    }
    if (needs.gateway) {
      const hostPort = (s?: ServiceProcess) => (s ? { host: '127.0.0.1', port: String(s.port) } : undefined);
      // It binds a free port and logs it (at info).
      const env: Record<string, string> = { GATEWAY_PORT: '0', LOG_LEVEL: 'info' };
      for (const [name, s] of Object.entries({ SIGNING: hostPort(this.signing), DEVICE: hostPort(this.device), MONITORING: hostPort(this.monitoring) })) {
        if (s) Object.assign(env, { [`${name}_HOST`]: s.host, [`${name}_PORT`]: s.port });
      }
      const proc = await startNode('gateway', 'gateway/src/main.ts', env, needs.nodeArgs?.gateway);
      this.started.push(proc);
      const port = await waitForReportedPort(() => proc.output(), 'gateway listening', { timeoutMs: 60_000, failed: () => (proc.running ? undefined : `gateway exited (${proc.exitDescription}):\n${proc.tail()}`) });
      this.gateway = { process: proc, url: `http://127.0.0.1:${port}` };
    }
  }

  private async bootstrap(bootstrapToken: string): Promise<void> {
    const client = insecureClient(AuthServiceClient, this.signing!.address);
    const password = crypto.randomBytes(18).toString('base64url');
    try {
      const boot = await unary(client, client.bootstrap, {
        bootstrapToken,
        tenantName: 'bench',
        adminEmail: 'bench@example.com',
        adminPassword: password,
        adminDisplayName: 'Bench',
      });
      this.tenantId = boot.tenant!.id;
      const login = await unary(client, client.login, { tenant: 'bench', email: 'bench@example.com', password });
      this.authorization = `Bearer ${login.tokens!.accessToken}`;
    } finally {
      client.close();
    }
  }

  /** The NATS client URL(s) services connect to: the server's, or every cluster node's comma-separated. */
  get natsUrl(): string {
    return this.natsCluster ? this.natsCluster.urls : this.nats.url;
  }

  /** Processes to report memory for: name → pid (this process included as `bench`). */
  pids(): Record<string, number> {
    const out: Record<string, number> = { bench: process.pid };
    const natsPid = this.nats?.pid;
    if (natsPid) out['nats-server'] = natsPid;
    for (let i = 0; i < (this.natsCluster?.size ?? 0); i++) {
      const pid = this.natsCluster!.node(i).proc.pid;
      if (pid) out[`nats-${i}`] = pid;
    }
    if (this.redis?.proc.pid) out['redis-server'] = this.redis.proc.pid;
    for (const p of this.started) if (p.running && p.pid) out[p.spec.name] = p.pid;
    return out;
  }

  /** How a platform client connects to NATS (with the services' creds in operator mode). */
  natsOptions(name = 'bench'): ConnectionOptions {
    const creds = this.natsCluster?.serviceCredsFile ?? this.operatorNats?.serviceCredsFile;
    return { servers: this.natsUrl.split(','), name, ...(creds ? { authenticator: credsAuthenticator(fs.readFileSync(creds)) } : {}) };
  }

  /** A new NATS connection as a platform client (the caller closes it). */
  connectNats(name = 'bench'): Promise<NatsConnection> {
    return connect(this.natsOptions(name));
  }

  /**
   * `count` devices `<prefix>-1…` of the bench tenant, ready for a fleet:
   * created through the device API with credentials when the device service
   * runs (as a real fleet is), typed for `transport`, else only registered in the device directory
   * for an open server.
   */
  async devices(prefix: string, count: number, transport: Transport, profile: ProfileName = 'weather'): Promise<DeviceIdentity[]> {
    if (this.device) {
      return provisionDevices({ deviceAddress: this.device.address, authorization: this.authorization!, count, prefix, profileOf: () => profile, transport: transport === DEFAULT_CREDENTIAL_KIND ? undefined : transport });
    }
    const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`);
    await this.registerDevices(this.tenantId, ids);
    return ids.map((deviceId) => ({ tenantId: this.tenantId, deviceId, natsUrl: this.nats.url, mqttUrl: this.nats.mqttUrl }));
  }

  /** Registers devices in the device directory as the device service does (binary `DeviceDirectoryEntry`), for scenarios without it. */
  async registerDevices(tenantId: string, deviceIds: string[], labels: Record<string, string> = {}): Promise<void> {
    this.directory ??= await this.nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
    const updateTime = new Date();
    await Promise.all(
      deviceIds.map((deviceId) => {
        const entry = DeviceDirectoryEntry.fromPartial({ tenantId, deviceId, name: deviceId, type: 'weather-station', labels, credentialState: CredentialState.CREDENTIAL_STATE_ACTIVE, updateTime });
        return this.directory!.put(deviceDirectoryKey(tenantId, deviceId), DeviceDirectoryEntry.encode(entry).finish());
      }),
    );
  }

  /** A client on the platform's database (the caller ends it). */
  async pg(): Promise<PgClient> {
    const client = new PgClient({ connectionString: this.db.url });
    await client.connect();
    return client;
  }

  async stop(): Promise<void> {
    await stopAll(this.started);
    await this.launcher.destroy();
    await this.nc?.close().catch(() => undefined);
    await this.db?.drop().catch(() => undefined);
    await (this.natsCluster ?? this.operatorNats ?? this.nats)?.stop().catch(() => undefined);
  }
}
