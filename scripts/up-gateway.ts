import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { env, loadConfig, repoPath, repoRoot } from '@iot-mesh/runtime';
import { reportedPortOf } from './reported-port';
import { nodeEntry } from './up-services';
import { displayPath } from './up-status';
import { Component } from './up-stack';
import { ensurePortFree, waitUntil } from './up-wait';

/** The gateway's port for the up-command (the gateway process reads the same variable). */
const gatewayEnv = { GATEWAY_PORT: env.port(8080) };

function hostPort(address: string | undefined, name: string): [string, string] {
  if (!address) throw new Error(`gateway: ${name} has not started`);
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), address.slice(at + 1)];
}

/** The built dashboard the gateway serves by default. */
const DASHBOARD_INDEX = repoPath('gateway', 'web', 'dist', 'index.html');

/**
 * The dashboard build and the Node gateway, as two entries of the process
 * table: `build` goes first and, when no build exists, runs Vite in the
 * background while the rest starts; `gateway` goes last, waits for that build,
 * starts gateway/src/main pointed at the services started before it (on
 * GATEWAY_PORT; 0: a port it binds and logs), waits for /healthz and prints
 * the dashboard's URL.
 */
export function dashboardAndGateway(): { build: Component; gateway: Component } {
  let built: Promise<void> = Promise.resolve();
  const build: Component = {
    name: 'dashboard build',
    async start(ctx) {
      if (fs.existsSync(DASHBOARD_INDEX)) return { rows: [] };
      const logFile = path.join(ctx.config.logsDir, 'dashboard-build.log');
      const out = fs.openSync(logFile, 'w');
      const child = spawn(process.execPath, [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web'], { cwd: repoRoot(), env: process.env, stdio: ['ignore', out, out] });
      fs.closeSync(out);
      const kill = () => child.kill('SIGTERM');
      ctx.signal.addEventListener('abort', kill, { once: true });
      built = new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (code) => {
          ctx.signal.removeEventListener('abort', kill);
          if (code === 0) resolve();
          else reject(new Error(`the dashboard build failed (exit ${code}); see ${displayPath(logFile)}`));
        });
      });
      // Reported by the gateway entry, which waits for it.
      built.catch(() => undefined);
      ctx.say('  building the dashboard in the background (npm run build:web)…');
      return { rows: [] };
    },
  };
  return { build, gateway: gatewayComponent(() => built) };
}

/** The Node gateway entry; `dashboardBuilt` resolves once gateway/web/dist is ready. */
export function gatewayComponent(dashboardBuilt: () => Promise<void> = async () => undefined): Component {
  return {
    name: 'gateway',
    async start(ctx) {
      const { GATEWAY_PORT: configuredPort } = loadConfig(gatewayEnv);
      await ensurePortFree(configuredPort, 'GATEWAY_PORT');
      await dashboardBuilt();
      if (!fs.existsSync(DASHBOARD_INDEX)) throw new Error('gateway: no dashboard build in gateway/web/dist (run npm run build:web)');
      const upstreams: Record<string, string> = {};
      for (const name of ['signing', 'device', 'monitoring']) {
        const [host, servicePort] = hostPort(ctx.addresses[name], name);
        upstreams[`${name.toUpperCase()}_HOST`] = host;
        upstreams[`${name.toUpperCase()}_PORT`] = servicePort;
      }
      const proc = await ctx.spawn({
        name: 'gateway',
        command: process.execPath,
        args: nodeEntry('gateway/src/main'),
        cwd: repoRoot(),
        env: { ...process.env, ...ctx.env, ...upstreams, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(configuredPort) },
      });
      // GATEWAY_PORT=0: the gateway binds a free port and logs it.
      const port = await reportedPortOf(proc, configuredPort, 'gateway listening', ctx);
      const url = `http://127.0.0.1:${port}`;
      await waitUntil('gateway /healthz', async () => (await fetch(`${url}/healthz`)).ok, {
        timeoutMs: ctx.config.UP_START_TIMEOUT_MS,
        signal: ctx.signal,
        intervalMs: 200,
        failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`),
      });
      return {
        rows: [{ name: 'gateway', state: 'listening', address: url, pid: proc.pid, detail: displayPath(proc.logFile) }],
        notes: [`Dashboard: ${url}/   REST: ${url}/v1/…   gRPC-Web: ${url}/<package>.<Service>/<Method>`],
      };
    },
  };
}
