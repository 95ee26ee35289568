/**
 * A nats-server JetStream cluster on one machine: the up-command's clustered
 * mode (`npm run up -- --cluster`, scripts/up-servers.ts) and the cluster
 * tests (testing/nats-cluster.ts) start it with this one recipe. Every node is
 * a nats-server of scripts/local-servers.ts (JetStream, MQTT listener, the
 * same auth lines) plus a `cluster {}` block routing to every node's cluster
 * port; a node started again gets the same ports and routes.
 */
import { ServerLauncher, startNatsServer, StartedNatsServer } from './local-servers';
import { pickFreePort, waitUntil } from './up-wait';

const LOCAL = '127.0.0.1';

/** How one node of the cluster is started. */
export interface NatsClusterNodeStart {
  /** The node's own folder (config, JetStream store, ports file). */
  dir: string;
  /** Unique per node (JetStream's peer name). */
  serverName: string;
  /** Name of the process (log file). */
  name: string;
  /** The cluster's name, the same on every node. */
  clusterName: string;
  /** Ports; undefined: any free one (reported). */
  port?: number;
  httpPort?: number;
  clusterPort?: number;
  /** MQTT listener: true for any free port, or the port. */
  mqtt: boolean | number;
  /** Cluster ports of the nodes it routes to. */
  routes: number[];
  /** Lines appended to the config (operator mode…). */
  configLines?: string[];
  timeoutMs: number;
}

/** A started node: its ports, including the cluster port it bound. */
export interface StartedNatsClusterNode extends StartedNatsServer {
  clusterPort: number;
}

/** The `cluster {}` block of a node. */
export function natsClusterLines(clusterName: string, clusterPort: number | undefined, routes: number[]): string[] {
  return [
    'cluster {',
    `  name: ${clusterName}`,
    `  listen: ${LOCAL}:${clusterPort ?? -1}`,
    `  routes: [${routes.map((p) => `"nats-route://${LOCAL}:${p}"`).join(', ')}]`,
    '}',
  ];
}

/** Starts one node and reads back the cluster port it bound (from its /varz). */
export async function startNatsClusterNode(launcher: ServerLauncher, options: NatsClusterNodeStart): Promise<StartedNatsClusterNode> {
  const started = await startNatsServer(launcher, {
    dir: options.dir,
    name: options.name,
    serverName: options.serverName,
    port: options.port,
    httpPort: options.httpPort,
    mqtt: options.mqtt,
    configLines: [...natsClusterLines(options.clusterName, options.clusterPort, options.routes), ...(options.configLines ?? [])],
    timeoutMs: options.timeoutMs,
  });
  const varz = (await (await fetch(`${started.monitorUrl}/varz`)).json()) as { cluster?: { cluster_port?: number } };
  const clusterPort = varz.cluster?.cluster_port;
  if (!clusterPort) throw new Error(`${options.name}: /varz names no cluster port`);
  return { ...started, clusterPort };
}

/** What every node of {@link startNatsCluster} shares, and what differs per node. */
export interface NatsClusterStart {
  size: number;
  clusterName: string;
  /** Per node (0-based): folder, names, fixed ports (undefined: any), extra config lines. */
  node(index: number): Omit<NatsClusterNodeStart, 'clusterName' | 'routes' | 'timeoutMs'>;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Starts every node at once, each routing to all cluster ports (nats-server
 * skips a route to itself; JetStream refuses to start clustered without a
 * configured route, so the ports are known up front: the given ones, or free
 * ones picked now), and waits until every node sees the JetStream meta group
 * complete (a leader and all peers), so streams with `size` replicas can be
 * created at once.
 */
export async function startNatsCluster(launcher: ServerLauncher, options: NatsClusterStart): Promise<StartedNatsClusterNode[]> {
  const clusterPorts: number[] = [];
  for (let i = 0; i < options.size; i++) clusterPorts.push(options.node(i).clusterPort ?? (await pickFreePort()));
  const nodes = await Promise.all(
    clusterPorts.map((clusterPort, i) =>
      startNatsClusterNode(launcher, { ...options.node(i), clusterPort, clusterName: options.clusterName, routes: clusterPorts, timeoutMs: options.timeoutMs }),
    ),
  );
  await waitForJetStreamCluster(nodes, options.size, options.timeoutMs, options.signal);
  return nodes;
}

/**
 * Waits until each node's /jsz reports a meta leader and `size` peers, the
 * leader (which alone lists its followers) sees them current, and every
 * node's /healthz says ok (JetStream current there): a stream created before
 * that can fail with 503 or "error creating store for stream". `healthz:
 * false` skips the last (a node started again while streams take writes is
 * not healthy until it caught up; wait for the stream itself then).
 */
export async function waitForJetStreamCluster(nodes: Array<{ monitorUrl: string }>, size: number, timeoutMs: number, signal?: AbortSignal, options: { healthz?: boolean } = {}): Promise<void> {
  await waitUntil(
    'JetStream cluster',
    async () => {
      let leaderSeesAll = false;
      for (const node of nodes) {
        const jsz = (await (await fetch(`${node.monitorUrl}/jsz`)).json()) as { meta_cluster?: { leader?: string; cluster_size?: number; replicas?: Array<{ current?: boolean; offline?: boolean }> } };
        const meta = jsz.meta_cluster;
        if (!meta?.leader || meta.cluster_size !== size) return false;
        const peers = meta.replicas ?? [];
        if (peers.length === size - 1 && peers.every((p) => p.current && !p.offline)) leaderSeesAll = true;
        if (options.healthz !== false && !(await fetch(`${node.monitorUrl}/healthz`)).ok) return false;
      }
      return leaderSeesAll;
    },
    { timeoutMs, signal, intervalMs: 100 },
  );
}
