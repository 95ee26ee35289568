import { spawn } from 'node:child_process';
import path from 'node:path';
import type { TestMesh } from '../../testing/mesh';

const BIN = path.join(__dirname, '..', 'bin', 'iotctl.js');

/** What one iotctl process did. */
export interface IotctlRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs iotctl as a real process against a mesh, with its own config home (the
 * stored session) and no API key from the environment.
 */
export function runIotctl(mesh: TestMesh, configHome: string, args: string[], stdin = ''): Promise<IotctlRun> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_CONFIG_HOME: configHome,
    IOTCTL_SIGNING_ADDRESS: mesh.addresses.signing,
    IOTCTL_DEVICE_ADDRESS: mesh.addresses.device,
    IOTCTL_MONITORING_ADDRESS: mesh.addresses.monitoring,
  };
  delete env.IOTCTL_API_KEY;
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
