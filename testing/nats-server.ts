import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitForPort } from './ports';

/** Operator-mode (decentralised JWT) settings for a test server. */
export interface OperatorModeOptions {
  /** The operator JWT. */
  operatorJwt: string;
  /** Public key of the system account (its JWT must be in `accounts`). */
  systemAccount: string;
  /** Account public key → account JWT, preloaded into the full resolver. */
  accounts: Record<string, string>;
}

/** What to start. */
export interface NatsServerOptions {
  /** JetStream on (default true), stored in the server's own temp folder. */
  jetstream?: boolean;
  /** Open an MQTT listener (needs JetStream). */
  mqtt?: boolean;
  /** Decentralised JWT auth instead of no auth. */
  operator?: OperatorModeOptions;
  /** Extra lines appended to the generated config. */
  extraConfig?: string;
}

/** A private nats-server process on random ports, for one test file. */
export class TestNatsServer {
  private child?: ChildProcess;

  private constructor(
    readonly dir: string,
    readonly configFile: string,
    readonly port: number,
    readonly mqttPort: number | undefined,
    readonly monitorPort: number,
  ) {}

  /** `nats://127.0.0.1:<port>` */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** `mqtt://127.0.0.1:<port>` when MQTT is on. */
  get mqttUrl(): string {
    if (!this.mqttPort) throw new Error('this server has no MQTT listener');
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  /** Starts a server with the options; resolves once its ports accept connections. */
  static async start(options: NatsServerOptions = {}): Promise<TestNatsServer> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-nats-'));
    const port = await freePort();
    const monitorPort = await freePort();
    const mqttPort = options.mqtt ? await freePort() : undefined;
    const lines = [
      `server_name: test_${port}`,
      `listen: 127.0.0.1:${port}`,
      `http: 127.0.0.1:${monitorPort}`,
    ];
    if (options.jetstream !== false || options.mqtt) lines.push(`jetstream { store_dir: "${path.join(dir, 'js')}" }`);
    if (mqttPort) lines.push(`mqtt { listen: 127.0.0.1:${mqttPort} }`);
    if (options.operator) {
      fs.writeFileSync(path.join(dir, 'operator.jwt'), options.operator.operatorJwt);
      fs.mkdirSync(path.join(dir, 'accounts'));
      lines.push(`operator: "${path.join(dir, 'operator.jwt')}"`);
      lines.push(`system_account: ${options.operator.systemAccount}`);
      lines.push(`resolver: { type: full, dir: "${path.join(dir, 'accounts')}", allow_delete: false, interval: "2m" }`);
      lines.push('resolver_preload: {');
      for (const [pub, jwt] of Object.entries(options.operator.accounts)) lines.push(`  ${pub}: "${jwt}"`);
      lines.push('}');
    }
    if (options.extraConfig) lines.push(options.extraConfig);
    const configFile = path.join(dir, 'nats.conf');
    fs.writeFileSync(configFile, lines.join('\n') + '\n');
    const server = new TestNatsServer(dir, configFile, port, mqttPort, monitorPort);
    await server.spawn();
    return server;
  }

  private async spawn(): Promise<void> {
    const child = spawn('nats-server', ['-c', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    this.child = child;
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`nats-server exited with ${code}: ${stderr}`))),
    );
    await Promise.race([
      (async () => {
        await waitForPort(this.port);
        if (this.mqttPort) await waitForPort(this.mqttPort);
      })(),
      exited,
    ]);
    exited.catch(() => undefined);
  }

  /** Starts the server again with the same config and data (after stop or kill). */
  async restart(): Promise<void> {
    await this.stop(false);
    await this.spawn();
  }

  /** Kills the server hard (SIGKILL), leaving its data folder, like a crash. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** Stops the server; removes its data folder unless `keepData` is false. */
  async stop(removeData = true): Promise<void> {
    await this.signal('SIGTERM');
    if (removeData) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(sig);
    });
    this.child = undefined;
  }
}
