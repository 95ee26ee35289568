import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeAppAccount, encodeTenantAccount, generateOperatorSetup, mintDeviceUser, NatsOperatorSetup, nkeyFromSeed, tenantAccountKeys } from '@iot-mesh/nats-auth';
import { StartedNatsClusterNode, startNatsCluster, startNatsClusterNode, waitForJetStreamCluster } from '../scripts/up-nats-cluster';
import { operatorLines } from './nats-server';
import { TestLauncher } from './server-launcher';

/** Runs `start`; on failure adds the last log lines of every node to the error. */
async function explainAll<T>(launchers: TestLauncher[], start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    const tails = launchers.map((l, i) => {
      const log = path.join(l.dir, 'logs', `nats-${i}.log`);
      return `--- nats-${i}\n${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trimEnd().split('\n').slice(-15).join('\n') : '(no log)'}`;
    });
    throw new Error(`${(err as Error).message}\n${tails.join('\n')}`);
  }
}

/**
 * A private nats-server JetStream cluster for one test file, started by the
 * up-command's cluster recipe (scripts/up-nats-cluster.ts): every node in
 * operator mode with the platform's accounts and one tenant account
 * preloaded (as the device service would push it), JetStream and an MQTT
 * listener on every node, ports bound by the servers themselves.
 */
export class TestNatsCluster {
  private constructor(
    readonly setup: NatsOperatorSetup,
    readonly tenantId: string | undefined,
    private readonly launchers: TestLauncher[],
    private readonly configLines: string[][],
    private nodes: StartedNatsClusterNode[],
    private readonly credsDir: string,
  ) {}

  /**
   * Starts `size` nodes with tenant `tenantId`'s account known to all of them;
   * without `tenantId` only the platform's accounts are preloaded (the device
   * service pushes tenant accounts, with {@link systemCredsFile}).
   */
  static async start(options: { size?: number; tenantId?: string }): Promise<TestNatsCluster> {
    const size = options.size ?? 3;
    const setup = generateOperatorSetup('iot-cluster-test');
    const signer = nkeyFromSeed(setup.operatorSigningSeed, 'O');
    const accounts: Record<string, string> = { [setup.systemAccount]: setup.systemAccountJwt, [setup.appAccount]: setup.appAccountJwt };
    if (options.tenantId) {
      const tenant = tenantAccountKeys(setup.tenantKeySecret, options.tenantId);
      accounts[setup.appAccount] = encodeAppAccount(signer, setup.appAccount, [{ tenantId: options.tenantId, account: tenant.account.publicKey }]);
      accounts[tenant.account.publicKey] = encodeTenantAccount(signer, tenant, setup.appAccount, { connections: -1, mqttStorageBytes: 64 * 1024 * 1024 });
    }
    const launchers = Array.from({ length: size }, () => new TestLauncher());
    const configLines = launchers.map((l) => operatorLines(l.dir, { operatorJwt: setup.operatorJwt, systemAccount: setup.systemAccount, accounts }));
    const credsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-cluster-creds-'));
    fs.writeFileSync(path.join(credsDir, 'service.creds'), setup.serviceCreds, { mode: 0o600 });
    fs.writeFileSync(path.join(credsDir, 'system.creds'), setup.systemCreds, { mode: 0o600 });
    try {
      const nodes = await explainAll(launchers, () =>
        startNatsCluster(
          { spawn: (spec) => launchers[Number(spec.name.split('-').pop())].spawn(spec), run: (spec) => launchers[0].run(spec) },
          { size, clusterName: 'iot_test', timeoutMs: 30_000, node: (i) => ({ dir: launchers[i].dir, name: `nats-${i}`, serverName: `node_${i}`, mqtt: true, configLines: configLines[i] }) },
        ),
      );
      return new TestNatsCluster(setup, options.tenantId, launchers, configLines, nodes, credsDir);
    } catch (err) {
      for (const l of launchers) await l.destroy();
      fs.rmSync(credsDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The node `i` as it runs now (ports, URLs, process). */
  node(i: number): StartedNatsClusterNode {
    return this.nodes[i];
  }

  /** Every node's client URL, comma-separated (the services' NATS_URL). */
  get urls(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  /** Path of the platform services' creds file (NATS_CREDS). */
  get serviceCredsFile(): string {
    return path.join(this.credsDir, 'service.creds');
  }

  /** Path of the system-account user's creds file (the device service's DEVICE_NATS_SYSTEM_CREDS). */
  get systemCredsFile(): string {
    return path.join(this.credsDir, 'system.creds');
  }

  /** How many nodes the cluster has. */
  get size(): number {
    return this.nodes.length;
  }

  /** A bearer credential of one of the tenant's devices, as the device service mints it. */
  deviceToken(deviceId: string, kind: 'mqtt' | 'nats'): string {
    if (!this.tenantId) throw new Error('deviceToken: the cluster was started without a tenant');
    const keys = tenantAccountKeys(this.setup.tenantKeySecret, this.tenantId);
    return mintDeviceUser(keys, { deviceId, kind, expireTime: new Date(Date.now() + 3_600_000) }).token;
  }

  /** kill -9 of node `i`, leaving its data (a crash). */
  async kill(i: number): Promise<void> {
    const proc = this.nodes[i].proc;
    proc.kill();
    await proc.exited();
  }

  /**
   * Starts node `i` again on the client, MQTT and cluster ports and the data it had (a new monitor port), routing to every other
   * node; resolves once the JetStream meta group is complete again (its
   * streams may still be catching up).
   */
  async restart(i: number): Promise<void> {
    const old = this.nodes[i];
    const routes = this.nodes.map((n) => n.clusterPort);
    this.nodes[i] = await explainAll(this.launchers, () =>
      startNatsClusterNode(this.launchers[i], {
        dir: this.launchers[i].dir,
        name: `nats-${i}`,
        serverName: `node_${i}`,
        clusterName: 'iot_test',
        port: old.port,
        // Any free monitor port (read back from the node): the old one, bound by the server's own pick, may have been taken
        // meanwhile as some client's ephemeral port (seen in a fault-rig run: "can't listen to the monitor port"). Clients and
        // routes need the client, MQTT and cluster ports, so those stay.
        httpPort: undefined,
        clusterPort: old.clusterPort,
        mqtt: old.mqttPort ?? true,
        routes,
        configLines: this.configLines[i],
        timeoutMs: 30_000,
      }),
    );
    await waitForJetStreamCluster(this.nodes, this.nodes.length, 30_000, undefined, { healthz: false });
  }

  /** Stops every node and removes their folders. */
  async stop(): Promise<void> {
    for (const l of this.launchers) await l.destroy();
    fs.rmSync(this.credsDir, { recursive: true, force: true });
  }
}
