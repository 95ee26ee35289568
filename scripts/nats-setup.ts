/**
 * NATS operator setup for local runs: one operator (its identity key signs
 * only the operator JWT; an operator signing key signs the accounts), the
 * system account and the platform account (the services), with the creds
 * files the services connect with, and the secret the device service derives
 * each tenant's own account from. Written once under a folder and reused
 * after, so device credentials minted earlier stay valid across restarts.
 *
 *   npm run setup:nats [-- <folder>]     (default .data/nats/auth)
 *
 * The up-command uses {@link natsOperatorAuth} as its nats-server auth hook.
 */
import fs from 'node:fs';
import path from 'node:path';
import { generateOperatorSetup, NatsOperatorSetup } from '@iot-mesh/nats-auth';

/** Files of a setup folder. */
export interface NatsSetupFiles {
  dir: string;
  /** All keys and JWTs (secret; mode 0600). */
  setupFile: string;
  operatorJwtFile: string;
  /** Creds of the platform services' user: NATS_CREDS. */
  serviceCredsFile: string;
  /** Creds of a system-account user: DEVICE_NATS_SYSTEM_CREDS. */
  systemCredsFile: string;
  /** Where the full account resolver keeps account JWTs. */
  resolverDir: string;
  /** The device service's variables as an env file (secret; mode 0600). */
  envFile: string;
}

/** Paths of the setup under `dir`. */
export function natsSetupFiles(dir: string): NatsSetupFiles {
  return {
    dir,
    setupFile: path.join(dir, 'operator-setup.json'),
    operatorJwtFile: path.join(dir, 'operator.jwt'),
    serviceCredsFile: path.join(dir, 'service.creds'),
    systemCredsFile: path.join(dir, 'system.creds'),
    resolverDir: path.join(dir, 'accounts'),
    envFile: path.join(dir, 'device.env'),
  };
}

/** Reads the setup of `dir`, generating and writing it first when there is none (a setup from before tenant accounts is replaced). */
export function ensureNatsSetup(dir: string): { setup: NatsOperatorSetup; files: NatsSetupFiles; created: boolean } {
  const files = natsSetupFiles(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(files.resolverDir, { recursive: true, mode: 0o700 });
  let created = false;
  let setup: NatsOperatorSetup;
  const existing = fs.existsSync(files.setupFile) ? (JSON.parse(fs.readFileSync(files.setupFile, 'utf8')) as Partial<NatsOperatorSetup>) : undefined;
  if (existing?.operatorSigningSeed && existing.tenantKeySecret) {
    setup = existing as NatsOperatorSetup;
  } else {
    setup = generateOperatorSetup('iot-mesh');
    fs.writeFileSync(files.setupFile, JSON.stringify(setup, null, 2) + '\n', { mode: 0o600 });
    created = true;
  }
  const secret = (file: string, body: string) => fs.writeFileSync(file, body, { mode: 0o600 });
  fs.writeFileSync(files.operatorJwtFile, setup.operatorJwt + '\n');
  secret(files.serviceCredsFile, setup.serviceCreds);
  secret(files.systemCredsFile, setup.systemCreds);
  secret(files.envFile, Object.entries(deviceServiceEnv(setup, files)).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
  writeKubernetesSecretFiles(setup, path.join(dir, 'kubernetes'));
  return { setup, files, created };
}

/**
 * The Helm chart's NATS auth Secret as files, one per key (`kubectl create
 * secret generic <release>-iot-mesh-nats-auth --from-file=<dir>/kubernetes`):
 * `auth.conf` (operator, system account and preloaded accounts, JWTs inline,
 * no paths; nats.conf includes it), the services' and the device service's
 * system creds, and the device service's keys.
 */
export function writeKubernetesSecretFiles(setup: NatsOperatorSetup, dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const authConf = [
    `operator: "${setup.operatorJwt}"`,
    `system_account: ${setup.systemAccount}`,
    'resolver_preload: {',
    `  ${setup.systemAccount}: "${setup.systemAccountJwt}"`,
    `  ${setup.appAccount}: "${setup.appAccountJwt}"`,
    '}',
  ];
  const files: Record<string, string> = {
    'auth.conf': authConf.join('\n') + '\n',
    'service.creds': setup.serviceCreds,
    'system.creds': setup.systemCreds,
    'operator-signing-seed': setup.operatorSigningSeed,
    'platform-account': setup.appAccount,
    'tenant-key-secret': setup.tenantKeySecret,
  };
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body, { mode: 0o600 });
}

/**
 * nats.conf lines for operator mode: a full resolver (it accepts the device
 * service's pushes of tenant accounts and keeps them in `resolverDir`),
 * preloaded with the system and platform accounts.
 */
export function natsConfigLines(setup: NatsOperatorSetup, files: NatsSetupFiles): string[] {
  return [
    `operator: "${files.operatorJwtFile}"`,
    `system_account: ${setup.systemAccount}`,
    `resolver: { type: full, dir: "${files.resolverDir}", allow_delete: false, interval: "2m" }`,
    'resolver_preload: {',
    `  ${setup.systemAccount}: "${setup.systemAccountJwt}"`,
    `  ${setup.appAccount}: "${setup.appAccountJwt}"`,
    '}',
  ];
}

/** Variables of the device service (which also needs NATS_CREDS like every service). */
export function deviceServiceEnv(setup: NatsOperatorSetup, files: NatsSetupFiles): Record<string, string> {
  return {
    NATS_CREDS: files.serviceCredsFile,
    DEVICE_NATS_OPERATOR_SIGNING_SEED: setup.operatorSigningSeed,
    DEVICE_NATS_PLATFORM_ACCOUNT: setup.appAccount,
    DEVICE_NATS_TENANT_KEY_SECRET: setup.tenantKeySecret,
    DEVICE_NATS_SYSTEM_CREDS: files.systemCredsFile,
  };
}

/**
 * The up-command's nats-server auth hook (`natsServer(natsOperatorAuth)`):
 * operator mode and NATS_CREDS for every process. The device service's keys
 * are not among them: only the device entry asks for them, through
 * {@link deviceServiceEnvBeside}, so no other process holds the seeds.
 */
export async function natsOperatorAuth(_ctx: unknown, natsDir: string): Promise<{ configLines: string[]; env: Record<string, string>; notes: string[] }> {
  const { setup, files, created } = ensureNatsSetup(path.join(natsDir, 'auth'));
  return {
    configLines: natsConfigLines(setup, files),
    env: { NATS_CREDS: files.serviceCredsFile },
    notes: [`NATS operator mode: keys and creds ${created ? 'generated' : 'reused'} in ${files.dir} (secret)`],
  };
}

/**
 * The device service's variables for the operator setup whose service creds
 * file is `serviceCredsFile` (as handed to every process in NATS_CREDS); empty
 * when NATS runs without operator mode.
 */
export function deviceServiceEnvBeside(serviceCredsFile: string | undefined): Record<string, string> {
  if (!serviceCredsFile) return {};
  const { setup, files } = ensureNatsSetup(path.dirname(serviceCredsFile));
  return deviceServiceEnv(setup, files);
}

if (require.main === module) {
  const dir = path.resolve(process.argv[2] ?? path.join('.data', 'nats', 'auth'));
  const { setup, files, created } = ensureNatsSetup(dir);
  const lines = [
    `${created ? 'generated' : 'kept existing'} NATS operator setup in ${files.dir}`,
    `  operator          ${setup.operatorJwt ? 'operator.jwt' : ''}`,
    `  system account    ${setup.systemAccount}`,
    `  platform account  ${setup.appAccount}   (IOT: the services; each tenant's devices get an account of their own)`,
    `  service creds     ${files.serviceCredsFile}   (NATS_CREDS for every service)`,
    `  system creds      ${files.systemCredsFile}   (DEVICE_NATS_SYSTEM_CREDS)`,
    `  device env        ${files.envFile}   (seeds: set -a; . ${path.relative(process.cwd(), files.envFile)}; set +a)`,
    `  Helm chart        kubectl create secret generic <release>-iot-mesh-nats-auth --from-file=${path.join(files.dir, 'kubernetes')}`,
    '',
    'nats.conf lines:',
    ...natsConfigLines(setup, files).map((l) => `  ${l.length > 160 ? `${l.slice(0, 157)}...` : l}`),
  ];
  console.log(lines.join('\n'));
}
