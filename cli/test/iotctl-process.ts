import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startMeshForTest, TestMesh } from '../../testing/mesh';
import type { TestTenant } from '../../testing/signing';

const BIN = path.join(__dirname, '..', 'bin', 'iotctl.js');

/** What one iotctl process did. */
export interface IotctlRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs iotctl as a real process against a mesh, with its own config home (the
 * stored session) and no API key from the environment unless `extraEnv` (laid
 * over the rest) gives one.
 */
export function runIotctl(mesh: TestMesh, configHome: string, args: string[], stdin = '', extraEnv: Record<string, string> = {}): Promise<IotctlRun> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_CONFIG_HOME: configHome,
    IOTCTL_SIGNING_ADDRESS: mesh.addresses.signing,
    IOTCTL_DEVICE_ADDRESS: mesh.addresses.device,
    IOTCTL_MONITORING_ADDRESS: mesh.addresses.monitoring,
    ...extraEnv,
  };
  if (!extraEnv.IOTCTL_API_KEY) delete env.IOTCTL_API_KEY;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** A mesh, a tenant and an iotctl config home logged in as one of its users, for one test file. */
export interface IotctlSession {
  readonly mesh: TestMesh;
  readonly tenant: TestTenant;
  /** The config home holding the stored session. */
  readonly configHome: string;
  /** Runs iotctl with the stored session. */
  iotctl(args: string[], stdin?: string): Promise<IotctlRun>;
  /** Runs iotctl expecting success and returns its stdout. */
  ok(args: string[], stdin?: string): Promise<string>;
}

/**
 * Registers the beforeAll/afterAll of a CLI test file: starts the mesh,
 * creates a tenant and logs iotctl in as its `role` user (through
 * `--password-stdin`, as a script would); the fields are set once beforeAll ran.
 */
export function iotctlSession(name: string, role: 'admin' | 'operator'): IotctlSession {
  let mesh: TestMesh | undefined;
  let tenant: TestTenant | undefined;
  let configHome = '';
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the iotctl session is used before beforeAll ran');
    return value;
  };
  const session: IotctlSession = {
    get mesh() {
      return started(mesh);
    },
    get tenant() {
      return started(tenant);
    },
    get configHome() {
      return configHome;
    },
    iotctl: (args, stdin = '') => runIotctl(started(mesh), configHome, args, stdin),
    async ok(args, stdin = '') {
      const run = await session.iotctl(args, stdin);
      if (run.code !== 0) throw new Error(`iotctl ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
      return run.stdout;
    },
  };

  beforeAll(async () => {
    configHome = fs.mkdtempSync(path.join(os.tmpdir(), `iotctl-${name}-`));
    mesh = await startMeshForTest();
    tenant = await mesh.signing.createTenant();
    const user = tenant[role];
    await session.ok(['login', '--tenant', tenant.tenantName, '--email', user.email, '--password-stdin'], `${user.password}\n`);
  }, 60_000);

  afterAll(async () => {
    await mesh?.stop();
    if (configHome) fs.rmSync(configHome, { recursive: true, force: true });
  });
  return session;
}
