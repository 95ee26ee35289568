import { status as GrpcStatus } from '@grpc/grpc-js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AuthServiceClient } from '../gen/ts/iot/signing/v1/auth';
import { checkHealth, insecureClient, MeshServiceName, repoRoot, unary } from '@iot-mesh/runtime';
import { UpConfig } from './up-config';
import { reportedPortOf } from './reported-port';
import { displayPath } from './up-status';
import { Component, UpContext } from './up-stack';
import { ensurePortFree, portAnswers, waitUntil } from './up-wait';

const LOCAL = '127.0.0.1';

/**
 * The node command line for a TypeScript entry point given without extension
 * (`services/signing/src/main`): every process runs its TypeScript through tsx,
 * with the runtime's tracing entry loaded first.
 */
export function nodeEntry(entry: string): string[] {
  // The tracing entry loads first in every process; it exports spans only when
  // OTEL_* variables ask for it (README "Operating it"), and costs nothing else.
  return ['--import', 'tsx', '--import', require.resolve('@iot-mesh/runtime/tracing-entry'), path.join(repoRoot(), `${entry}.ts`)];
}

/** The services the up-command starts: the mesh's services, the ones with a default port. */
export type ServiceName = MeshServiceName;

/** The up-command variables holding a service's gRPC and `/metrics` ports: SIGNING_GRPC_PORT, SIGNING_METRICS_PORT… */
function portVariables(name: ServiceName) {
  const prefix = name.toUpperCase() as Uppercase<ServiceName>;
  return { grpc: `${prefix}_GRPC_PORT` as const, metrics: `${prefix}_METRICS_PORT` as const };
}

/** A gRPC service process of ours, started with `node`. */
export interface GrpcServiceOptions {
  /**
   * `signing`, `device`… also the address key in `ctx.addresses`; its ports
   * come from `<NAME>_GRPC_PORT` and `<NAME>_METRICS_PORT` (handed over as
   * GRPC_PORT and METRICS_PORT).
   */
  name: ServiceName;
  /** Entry point without extension, relative to the repository root. */
  entry: string;
  /** Extra node options placed before the entry (for example `--import` of a tracing preload). */
  nodeOptions?: string[];
  /**
   * Further ports it listens on (`SIGNING_HTTP_PORT`…), checked free before it
   * starts; one configured as 0 is read back from the service's log line
   * `report` (signing's `http listening`).
   */
  extraPorts?: (config: UpConfig) => Array<{ port: number; variable: string; report: string }>;
  /** Further status rows (an HTTP endpoint beside the gRPC port); `ports`: the extra ports as bound, by variable. */
  extraRows?: (config: UpConfig, ports: Record<string, number>) => Array<{ name: string; address: string; port: number; detail?: string }>;
  /** The service's own variables, computed when it starts (after everything before it is up). */
  env?: (ctx: UpContext) => Record<string, string> | Promise<Record<string, string>>;
  /**
   * A further replica (clustered mode): 1 for the second. It binds ports of
   * its own choosing (every configured port is the first replica's), is named
   * `<name>-<replica+1>`, and leaves `ctx.addresses` and `<NAME>_ADDRESS` to
   * the first replica.
   */
  replica?: number;
}

/**
 * Starts a service with the shared env (DATABASE_URL, REDIS_URL, NATS_URL…,
 * plus anything set in the up-command's own environment), its own port and
 * variables, and waits until `grpc.health.v1` says SERVING — which the
 * runtime says only after connecting its dependencies and applying its
 * migrations. A port configured as 0 is bound by the service itself and read
 * back from its log (`grpc listening`, `metrics at /metrics`).
 */
export function grpcService(options: GrpcServiceOptions): Component {
  return {
    name: options.replica ? `${options.name}-${options.replica + 1}` : options.name,
    async start(ctx) {
      const variables = portVariables(options.name);
      const label = options.replica ? `${options.name}-${options.replica + 1}` : options.name;
      const configuredPort = options.replica ? 0 : ctx.config[variables.grpc];
      const configuredMetricsPort = options.replica ? 0 : ctx.config[variables.metrics];
      const extraPorts = (options.extraPorts?.(ctx.config) ?? []).map((extra) => (options.replica ? { ...extra, port: 0 } : extra));
      await ensurePortFree(configuredPort, variables.grpc);
      await ensurePortFree(configuredMetricsPort, variables.metrics);
      for (const extra of extraPorts) await ensurePortFree(extra.port, extra.variable);
      const proc = await ctx.spawn({
        name: label,
        command: process.execPath,
        args: [...(options.nodeOptions ?? []), ...nodeEntry(options.entry)],
        cwd: repoRoot(),
        env: { ...process.env, ...ctx.env, GRPC_HOST: LOCAL, GRPC_PORT: String(configuredPort), METRICS_PORT: String(configuredMetricsPort), ...(await options.env?.(ctx)) },
      });
      const boundPort = (configured: number, report: string) => reportedPortOf(proc, configured, report, ctx);
      const port = await boundPort(configuredPort, 'grpc listening');
      const metricsPort = await boundPort(configuredMetricsPort, 'metrics at /metrics');
      const extraBound: Record<string, number> = {};
      for (const extra of extraPorts) extraBound[extra.variable] = await boundPort(extra.port, extra.report);
      const address = `${LOCAL}:${port}`;
      await waitUntil(`${label} health`, async () => (await checkHealth(address, '', 1000)) === 'SERVING', {
        timeoutMs: ctx.config.UP_START_TIMEOUT_MS,
        signal: ctx.signal,
        intervalMs: 250,
        failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`),
      });
      if (!options.replica) {
        ctx.addresses[options.name] = address;
        // Later children find it the way services find signing: SIGNING_ADDRESS, DEVICE_ADDRESS…
        ctx.env[`${options.name.toUpperCase()}_ADDRESS`] = address;
      }
      const extraRows = [];
      const rows = [{ name: `${label} metrics`, address: `http://${LOCAL}:${metricsPort}/metrics`, port: metricsPort }, ...(options.extraRows?.(ctx.config, extraBound) ?? [])];
      for (const { port: extraPort, ...row } of rows) {
        extraRows.push({ state: (await portAnswers(extraPort)) ? 'listening' : 'closed', pid: proc.pid, ...row });
      }
      return { rows: [{ name: label, state: 'SERVING', address, pid: proc.pid, detail: displayPath(proc.logFile) }, ...extraRows] };
    },
  };
}

/** Reads a secret kept under the data folder, creating it on first use. */
function keptSecret(config: UpConfig, file: string, make: () => string): string {
  const full = path.join(config.secretsDir, file);
  if (fs.existsSync(full)) return fs.readFileSync(full, 'utf8').trim();
  const value = make();
  fs.writeFileSync(full, `${value}\n`, { mode: 0o600 });
  return value;
}

/** SIGNING_BOOTSTRAP_TOKEN: the configured one, else one generated once and kept in `<data>/secrets`. */
export function bootstrapToken(config: UpConfig): string {
  return config.SIGNING_BOOTSTRAP_TOKEN ?? keptSecret(config, 'bootstrap-token', () => crypto.randomBytes(32).toString('base64url'));
}

/** SIGNING_KEY_ENCRYPTION_KEY: the configured one, else one generated once and kept in `<data>/secrets`. */
export function keyEncryptionKey(config: UpConfig): string {
  return config.SIGNING_KEY_ENCRYPTION_KEY ?? keptSecret(config, 'key-encryption-key', () => crypto.randomBytes(32).toString('base64url'));
}

/** The first admin's login, as saved after a successful bootstrap. */
interface AdminLogin {
  tenant: string;
  email: string;
  password: string;
}

/**
 * Creates the platform tenant and its first admin through signing's
 * Bootstrap RPC with a generated password, keeps the login in
 * `<data>/secrets/admin-login.json` and prints it. On later runs Bootstrap
 * refuses (a tenant exists) and the kept login is printed again.
 */
export function adminBootstrap(options: { tenant?: string; email?: string } = {}): Component {
  return {
    name: 'admin login',
    async start(ctx) {
      const address = ctx.addresses.signing;
      if (!address) throw new Error('admin bootstrap needs the signing service started before it');
      const loginFile = path.join(ctx.config.secretsDir, 'admin-login.json');
      const login: AdminLogin = {
        tenant: options.tenant ?? 'platform',
        email: options.email ?? 'admin@example.com',
        password: crypto.randomBytes(18).toString('base64url'),
      };
      const client = insecureClient(AuthServiceClient, address);
      const row = (state: string, detail: string) => ({ name: 'admin login', state, address: 'signing AuthService/Login', detail });
      const show = (l: AdminLogin) => [`Admin login: tenant "${l.tenant}", email ${l.email}, password ${l.password}  (kept in ${displayPath(loginFile)})`];
      try {
        await unary(client, client.bootstrap, {
          bootstrapToken: bootstrapToken(ctx.config),
          tenantName: login.tenant,
          adminEmail: login.email,
          adminPassword: login.password,
          adminDisplayName: 'Platform admin',
        });
        fs.writeFileSync(loginFile, JSON.stringify(login, null, 2) + '\n', { mode: 0o600 });
        return { rows: [row('created', login.email)], notes: show(login) };
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code === GrpcStatus.UNIMPLEMENTED) return { rows: [row('skipped', 'signing has no Bootstrap yet')] };
        if (code === GrpcStatus.FAILED_PRECONDITION || code === GrpcStatus.ALREADY_EXISTS) {
          if (!fs.existsSync(loginFile)) return { rows: [row('exists', `bootstrapped earlier; login not kept in ${ctx.config.secretsDir}`)] };
          const kept = JSON.parse(fs.readFileSync(loginFile, 'utf8')) as AdminLogin;
          return { rows: [row('exists', kept.email)], notes: show(kept) };
        }
        throw new Error(`admin bootstrap failed: ${(err as Error).message}`);
      } finally {
        client.close();
      }
    },
  };
}
