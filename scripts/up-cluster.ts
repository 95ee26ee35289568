import fs from 'node:fs';
import path from 'node:path';
import { connect, credsAuthenticator } from 'nats';
import { DEVICE_DIRECTORY_BUCKET, GROUP_DIRECTORY_BUCKET, withJetStreamStartupPatience } from '@iot-mesh/runtime';
import { displayPath } from './up-status';
import { NatsAuthSetup } from './up-servers';
import { startNatsCluster } from './up-nats-cluster';
import { Component, UpContext } from './up-stack';
import { ensurePortFree } from './up-wait';

/** Nodes of the up-command's clustered mode. */
export const CLUSTER_SIZE = 3;

/** Port of node `i`: the configured base plus `i`, or any (0) when the base is 0. */
function nodePort(base: number, i: number): number | undefined {
  return base === 0 ? undefined : base + i;
}

/**
 * The clustered mode's NATS (`npm run up -- --cluster`, UP_CLUSTER=true):
 * three nats-server processes under `<data>/nats/node-<i>`, routed to each
 * other (cluster `iot`), each with JetStream and an MQTT listener, in the
 * same operator mode as the single server (one operator setup in
 * `<data>/nats/auth`; each node keeps its own resolver folder). Node i
 * listens on UP_NATS_PORT+i, UP_NATS_MQTT_PORT+i, UP_NATS_HTTP_PORT+i and
 * UP_NATS_CLUSTER_PORT+i. NATS_URL lists every node; the streams get
 * {@link CLUSTER_SIZE} replicas (TELEMETRY_STREAM_REPLICAS for monitoring,
 * and the device directory bucket is created here with them).
 */
export function natsClusterServer(auth?: (ctx: UpContext, dir: string) => Promise<NatsAuthSetup>): Component {
  return {
    name: 'nats cluster',
    async start(ctx) {
      const { config } = ctx;
      if (config.NATS_URL) throw new Error('UP_CLUSTER starts its own NATS cluster; unset NATS_URL (or UP_CLUSTER)');
      const bases: Array<[number, string]> = [
        [config.UP_NATS_PORT, 'UP_NATS_PORT'],
        [config.UP_NATS_MQTT_PORT, 'UP_NATS_MQTT_PORT'],
        [config.UP_NATS_HTTP_PORT, 'UP_NATS_HTTP_PORT'],
        [config.UP_NATS_CLUSTER_PORT, 'UP_NATS_CLUSTER_PORT'],
      ];
      for (const [base, variable] of bases) {
        for (let i = 0; i < CLUSTER_SIZE; i++) if (base !== 0) await ensurePortFree(base + i, `${variable}${i ? `+${i}` : ''}`);
      }
      const natsDir = path.join(config.dataDir, 'nats');
      fs.mkdirSync(natsDir, { recursive: true });
      const setup = auth ? await auth(ctx, natsDir) : undefined;
      const sharedResolver = path.join(natsDir, 'auth', 'accounts');
      const nodeDir = (i: number) => path.join(natsDir, `node-${i}`);
      const nodes = await startNatsCluster(ctx, {
        size: CLUSTER_SIZE,
        clusterName: 'iot',
        timeoutMs: config.UP_START_TIMEOUT_MS,
        signal: ctx.signal,
        node: (i) => {
          fs.mkdirSync(path.join(nodeDir(i), 'accounts'), { recursive: true });
          return {
            dir: nodeDir(i),
            name: `nats-${i}`,
            serverName: `iot_local_${i}`,
            port: nodePort(config.UP_NATS_PORT, i),
            httpPort: nodePort(config.UP_NATS_HTTP_PORT, i),
            clusterPort: nodePort(config.UP_NATS_CLUSTER_PORT, i),
            mqtt: nodePort(config.UP_NATS_MQTT_PORT, i) ?? true,
            // A full resolver writes its folder: one per node.
            configLines: setup?.configLines.map((line) => line.split(sharedResolver).join(path.join(nodeDir(i), 'accounts'))),
          };
        },
      });
      ctx.env.NATS_URL = nodes.map((n) => n.url).join(',');
      ctx.env.MQTT_URL = nodes[0].mqttUrl!;
      Object.assign(ctx.env, setup?.env ?? {});
      await createDirectoryBucket(ctx.env.NATS_URL, ctx.env.NATS_CREDS);
      return {
        rows: nodes.flatMap((n, i) => [
          { name: `nats-${i}`, state: 'started', address: n.url, pid: n.proc.pid, detail: displayPath(n.proc.logFile) },
          { name: `nats-${i} mqtt`, state: 'started', address: n.mqttUrl!, pid: n.proc.pid, detail: setup ? 'device credential as password' : 'no auth' },
          { name: `nats-${i} monitor`, state: 'started', address: n.monitorUrl, pid: n.proc.pid, detail: `cluster port ${n.clusterPort}` },
        ]),
        notes: [...(setup?.notes ?? []), `NATS cluster "iot" of ${CLUSTER_SIZE} nodes: streams with ${CLUSTER_SIZE} replicas, two replicas of every service (README "Clustered mode")`],
      };
    },
  };
}

/**
 * The device service opens its directory bucket with the default one replica;
 * created here first with {@link CLUSTER_SIZE}, it is bound as it is (the
 * fault rig's clustered platform, bench/src/platform.ts, does the same). On a
 * cluster that just formed the first creation can be answered "error creating
 * store for stream" (seen in 1 of 9 fault-rig starts): it waits that out.
 */
export async function createDirectoryBucket(servers: string, credsFile: string | undefined): Promise<void> {
  const nc = await connect({ servers: servers.split(','), authenticator: credsFile ? credsAuthenticator(fs.readFileSync(credsFile)) : undefined });
  try {
    for (const bucket of [DEVICE_DIRECTORY_BUCKET, GROUP_DIRECTORY_BUCKET]) await withJetStreamStartupPatience(() => nc.jetstream().views.kv(bucket, { history: 1, replicas: CLUSTER_SIZE }));
  } finally {
    await nc.close();
  }
}

/**
 * The services' variables for replica `replica` (0-based) in clustered mode:
 * NATS_URL starting at a different node (nats.js also shuffles the list), the
 * stream replica count for monitoring.
 */
export function clusterServiceEnv(ctx: UpContext, replica: number): Record<string, string> {
  const urls = ctx.env.NATS_URL.split(',');
  const rotated = [...urls.slice(replica % urls.length), ...urls.slice(0, replica % urls.length)];
  return { NATS_URL: rotated.join(','), TELEMETRY_STREAM_REPLICAS: String(CLUSTER_SIZE) };
}
