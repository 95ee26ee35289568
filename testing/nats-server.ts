import fs from 'node:fs';
import path from 'node:path';
import { startNatsServer, StartedNatsServer } from '../scripts/local-servers';
import { ManagedProcess } from '../scripts/up-process';
import { TestLauncher } from './server-launcher';

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

/** The operator-mode config lines, with the JWT files they name written into `dir`. */
export function operatorLines(dir: string, operator: OperatorModeOptions): string[] {
  fs.writeFileSync(path.join(dir, 'operator.jwt'), operator.operatorJwt);
  fs.mkdirSync(path.join(dir, 'accounts'), { recursive: true });
  return [
    `operator: "${path.join(dir, 'operator.jwt')}"`,
    `system_account: ${operator.systemAccount}`,
    `resolver: { type: full, dir: "${path.join(dir, 'accounts')}", allow_delete: false, interval: "2m" }`,
    'resolver_preload: {',
    ...Object.entries(operator.accounts).map(([pub, jwt]) => `  ${pub}: "${jwt}"`),
    '}',
  ];
}

/**
 * A private nats-server process for one test file, started by the same
 * starter as the up-command's (scripts/local-servers.ts): it binds ports of
 * its own choosing and reports them, so no port is picked and released first.
 */
export class TestNatsServer {
  private proc?: ManagedProcess;
  private bound: StartedNatsServer;

  private constructor(
    private readonly launcher: TestLauncher,
    private readonly options: NatsServerOptions,
    private readonly configLines: string[],
    started: StartedNatsServer,
  ) {
    this.bound = started;
    this.proc = started.proc;
  }

  /** The server's folder: config, JetStream store, `accounts/` of the resolver, logs. */
  get dir(): string {
    return this.launcher.dir;
  }

  /** The config file it runs with. */
  get configFile(): string {
    return this.bound.configFile;
  }

  /** Client port. */
  get port(): number {
    return this.bound.port;
  }

  /** MQTT port when MQTT is on. */
  get mqttPort(): number | undefined {
    return this.bound.mqttPort;
  }

  /** HTTP monitoring port (/varz, /jsz). */
  get monitorPort(): number {
    return this.bound.httpPort;
  }

  /** The server's process id while it runs (benchmarks read its memory and CPU). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** `nats://127.0.0.1:<port>` */
  get url(): string {
    return this.bound.url;
  }

  /** `mqtt://127.0.0.1:<port>` when MQTT is on. */
  get mqttUrl(): string {
    if (!this.bound.mqttUrl) throw new Error('this server has no MQTT listener');
    return this.bound.mqttUrl;
  }

  /** Starts a server with the options; resolves once its ports accept connections. */
  static async start(options: NatsServerOptions = {}): Promise<TestNatsServer> {
    const launcher = new TestLauncher();
    try {
      const configLines = [...(options.operator ? operatorLines(launcher.dir, options.operator) : []), ...(options.extraConfig ? [options.extraConfig] : [])];
      const started = await launcher.explain(() =>
        startNatsServer(launcher, {
          dir: launcher.dir,
          serverName: `test_${path.basename(launcher.dir).replace(/\W/g, '_')}`,
          jetstream: options.jetstream,
          mqtt: options.mqtt,
          configLines,
          timeoutMs: 20_000,
        }),
      );
      return new TestNatsServer(launcher, options, configLines, started);
    } catch (err) {
      await launcher.destroy();
      throw err;
    }
  }

  /**
   * Starts the server again with the same config and data (after stop or
   * kill), on the ports it had, so clients reconnect to the address they know.
   */
  async restart(): Promise<void> {
    await this.stop(false);
    this.bound = await this.launcher.explain(() =>
      startNatsServer(this.launcher, {
        dir: this.launcher.dir,
        serverName: `test_${path.basename(this.launcher.dir).replace(/\W/g, '_')}`,
        port: this.bound.port,
        httpPort: this.bound.httpPort,
        jetstream: this.options.jetstream,
        mqtt: this.bound.mqttPort ?? false,
        configLines: this.configLines,
        timeoutMs: 20_000,
      }),
    );
    this.proc = this.bound.proc;
  }

  /** Kills the server hard (SIGKILL), leaving its data folder, like a crash. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc?.running) return;
    proc.kill();
    await proc.exited();
  }

  /** Stops the server; removes its data folder unless `removeData` is false. */
  async stop(removeData = true): Promise<void> {
    await this.proc?.stop(10_000);
    if (removeData) await this.launcher.destroy();
  }
}
