import crypto from 'node:crypto';
import type { ChannelCredentials, Client, ClientOptions } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, headers, KV, NatsConnection } from 'nats';
import { Point, Telemetry } from '../../../gen/ts/iot/telemetry/v1/telemetry';
import { createLogger, createPool, DEVICE_DIRECTORY_BUCKET, insecureClient, deviceDirectoryKey, deviceSubject, GROUP_DIRECTORY_BUCKET, groupDirectoryKey, Pool } from '@iot-mesh/runtime';
import { CredentialState } from '../../../gen/ts/iot/device/v1/device';
import { DefaultAlertRule, UnknownMetricPolicy } from '../../../gen/ts/iot/device/v1/device_types';
import { DeviceDirectoryEntry, GroupDirectoryEntry } from '../../../gen/ts/iot/device/v1/directory';
import { TestNatsServer } from '../../../testing/nats-server';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { startTestService, TestService } from '../../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../../testing/signing';
import { createMonitoringService, MonitoringStats } from '../src/main';

/** The stream set-up and its settings, for tests outside this package that build the platform's streams (the clustered-NATS test) or size what a writer may hold (the fault suite). */
export { ensureTelemetryStream } from '../src/events/telemetry-stream';
export { monitoringEnv, telemetryStreamOptions, writerOptions } from '../src/config';

/** The directory's credential states by the names tests use. */
const CREDENTIAL_STATES = { none: CredentialState.CREDENTIAL_STATE_NONE, active: CredentialState.CREDENTIAL_STATE_ACTIVE, revoked: CredentialState.CREDENTIAL_STATE_REVOKED };

/** A unique tenant id (a valid subject token). */
export function newTenant(): string {
  return `t${crypto.randomBytes(5).toString('hex')}`;
}

/** Encodes a payload as binary Protobuf. */
export function protobufPayload(t: Partial<Telemetry> & { points: Partial<Point>[] }): Uint8Array {
  return Telemetry.encode(Telemetry.fromPartial(t)).finish();
}

/** Encodes a payload as canonical proto3 JSON. */
export function jsonPayload(t: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(t));
}

/** Waits until `probe` returns a truthy value (checked every 50 ms), failing after `timeoutMs`. */
export async function eventually<T>(probe: () => Promise<T> | T, what: string, timeoutMs = 20_000): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as Exclude<T, false | null | undefined | 0 | ''>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last, (_k, v) => (typeof v === 'bigint' ? String(v) : v))})`);
    await sleep(50);
  }
}

/** A running monitoring service with its own database and nats-server. */
export interface MonitoringWorld {
  nats: TestNatsServer;
  db: TestDatabase;
  /** A pool on the service's schema, for checking rows. */
  pool: Pool;
  nc: NatsConnection;
  directory: KV;
  services: { service: TestService<any>; stats: MonitoringStats }[];
  env: Record<string, string>;
  /** Starts one more replica with the same database and NATS. */
  startReplica(extraEnv?: Record<string, string>): Promise<{ service: TestService<any>; stats: MonitoringStats }>;
  /** Stops the newest replica and takes it out of `services`. */
  stopReplica(): Promise<void>;
  /**
   * Lifts the telemetry stream's message size limit, as a stream created before it had one was: what is
   * published next may be larger than one pull. The next replica's start puts the limit back.
   */
  liftStreamSizeLimit(): Promise<void>;
  /** Registers a device in the directory (as the device service would). */
  registerDevice(
    tenantId: string,
    deviceId: string,
    options?: {
      labels?: Record<string, string>;
      credentialState?: 'none' | 'active' | 'revoked';
      type?: string;
      /** A type that dead-letters every metric but these. */
      onlyMetrics?: string[];
      /** A DeviceType (accepting every metric) with these default alert rules. */
      deviceType?: { id: string; defaultAlertRules: DefaultAlertRule[] };
    },
  ): Promise<void>;
  /** Writes a device group's selector into the group directory (as the device service would); undefined selector: deletes the group. */
  putGroup(tenantId: string, groupId: string, matchLabels: Record<string, string> | undefined): Promise<void>;
  /** Publishes telemetry on the device's subject over NATS (optionally with a Nats-Msg-Id header) via JetStream. */
  publish(tenantId: string, deviceId: string, payload: Uint8Array, msgId?: string): Promise<void>;
  /** Rows stored for a tenant. */
  rowCount(tenantId: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Starts nats-server (JetStream + MQTT), a database and one monitoring
 * replica. When start-up fails partway, whatever was already started is
 * stopped again before the error is thrown: nothing leaks into later tests.
 */
export async function startWorld(env: Record<string, string> = {}, options: { replicas?: number; natsServer?: TestNatsServer } = {}): Promise<MonitoringWorld> {
  const started: { name: string; stop: () => Promise<unknown> }[] = [];
  const stopStarted = async () => {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    started.length = 0;
  };
  try {
    return await buildWorld(env, options, started);
  } catch (err) {
    await stopStarted();
    throw err;
  }
}

async function buildWorld(
  env: Record<string, string>,
  options: { replicas?: number; natsServer?: TestNatsServer },
  started: { name: string; stop: () => Promise<unknown> }[],
): Promise<MonitoringWorld> {
  const nats = options.natsServer ?? (await TestNatsServer.start({ jetstream: true, mqtt: true }));
  if (!options.natsServer) started.push({ name: 'nats-server', stop: () => nats.stop() });
  const db = await createTestDatabase('iot_mon');
  started.push({ name: 'database', stop: () => db.drop() });
  const baseEnv = { DATABASE_URL: db.url, NATS_URL: nats.url, WRITER_BATCH_WAIT_MS: '20', ...env };
  const nc = await connect({ servers: nats.url });
  started.push({ name: 'nats connection', stop: () => nc.close() });
  const directory = await nc.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
  const groupDirectory = await nc.jetstream().views.kv(GROUP_DIRECTORY_BUCKET, { history: 1 });
  const services: MonitoringWorld['services'] = [];
  started.push({
    name: 'monitoring replicas',
    stop: async () => {
      for (const s of services) await s.service.stop().catch(() => undefined);
    },
  });
  const startReplica = async (extraEnv: Record<string, string> = {}) => {
    let stats!: MonitoringStats;
    const service = await startTestService(createMonitoringService({ onStats: (s) => (stats = s) }), { ...baseEnv, ...extraEnv });
    const replica = { service, stats };
    services.push(replica);
    return replica;
  };
  for (let i = 0; i < (options.replicas ?? 1); i++) await startReplica();
  const pool = createPool(db.url, 'monitoring', createLogger('test', 'silent'));
  const js = nc.jetstream();
  return {
    nats,
    db,
    pool,
    nc,
    directory,
    services,
    env: baseEnv,
    startReplica,
    async stopReplica() {
      await services.pop()?.service.stop();
    },
    async liftStreamSizeLimit() {
      await (await nc.jetstreamManager()).streams.update(env.TELEMETRY_STREAM ?? 'TELEMETRY', { max_msg_size: -1 });
    },
    async registerDevice(tenantId, deviceId, opts = {}) {
      const entry = DeviceDirectoryEntry.fromPartial({
        tenantId,
        deviceId,
        name: deviceId,
        type: opts.type ?? 'sensor',
        labels: opts.labels ?? {},
        credentialState: CREDENTIAL_STATES[opts.credentialState ?? 'active'],
        updateTime: new Date(),
        ...(opts.deviceType ? { deviceTypeId: opts.deviceType.id, defaultAlertRules: opts.deviceType.defaultAlertRules, unknownMetricPolicy: UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_ACCEPT } : {}),
        ...(opts.onlyMetrics ? { metrics: opts.onlyMetrics, unknownMetricPolicy: UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER } : {}),
      });
      await directory.put(deviceDirectoryKey(tenantId, deviceId), DeviceDirectoryEntry.encode(entry).finish());
    },
    async putGroup(tenantId, groupId, matchLabels) {
      const key = groupDirectoryKey(tenantId, groupId);
      if (!matchLabels) return void (await groupDirectory.delete(key));
      await groupDirectory.put(key, GroupDirectoryEntry.encode({ tenantId, groupId, matchLabels, deviceTypeId: '' }).finish());
    },
    async publish(tenantId, deviceId, payload, msgId) {
      const h = headers();
      if (msgId) h.set('Nats-Msg-Id', msgId);
      await js.publish(deviceSubject(tenantId, deviceId, 'tel'), payload, msgId ? { headers: h } : {});
    },
    async rowCount(this: MonitoringWorld, tenantId: string) {
      const { rows } = await this.pool.query('SELECT count(*)::int AS n FROM points WHERE tenant_id = $1', [tenantId]);
      return rows[0].n;
    },
    async close(this: MonitoringWorld) {
      for (const s of services) await s.service.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
      await this.pool.end().catch(() => undefined);
      await db.drop().catch(() => undefined);
      if (!options.natsServer) await nats.stop();
    },
  };
}

/** A monitoring world whose API checks the tokens of a signing service of its own, with two tenants on it. */
export interface SignedWorld {
  signing: TestSigning;
  world: MonitoringWorld;
  a: TestTenant;
  b: TestTenant;
  /** A client of the first replica's API, closed by `close()`. */
  client<C extends Client>(ClientClass: new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C): C;
  /** Closes the clients, then stops the world and signing. */
  close(): Promise<void>;
}

/**
 * Starts signing and a monitoring world that checks its tokens (logs silent unless MON_LOG says otherwise;
 * `env` added to the service's), and creates two tenants. A failed start stops what had started.
 */
export async function startSignedWorld(env: Record<string, string> = {}): Promise<SignedWorld> {
  const signing = await startSigningForTest();
  let world: MonitoringWorld | undefined;
  try {
    world = await startWorld({ LOG_LEVEL: process.env.MON_LOG ?? 'silent', SIGNING_ADDRESS: signing.address, ...env });
    const [a, b] = await Promise.all([signing.createTenant(), signing.createTenant()]);
    const clients: Client[] = [];
    const started = world;
    return {
      signing,
      world,
      a,
      b,
      client(ClientClass) {
        const client = insecureClient(ClientClass, started.services[0].service.address);
        clients.push(client);
        return client;
      },
      async close() {
        for (const client of clients) client.close();
        await started.close();
        await signing.stop();
      },
    };
  } catch (err) {
    await world?.close().catch(() => undefined);
    await signing.stop().catch(() => undefined);
    throw err;
  }
}
