import fs from 'node:fs';
import { env, loadConfig, repoPath, repoRoot } from '../services/runtime/src';
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

/**
 * The Node gateway with the dashboard: builds the dashboard when no build
 * exists, starts gateway/src/main pointed at the services started before it,
 * waits for /healthz and prints the dashboard's URL.
 */
export function gatewayComponent(): Component {
  return {
    name: 'gateway',
    async start(ctx) {
      const { GATEWAY_PORT: port } = loadConfig(gatewayEnv);
      await ensurePortFree(port, 'GATEWAY_PORT');
      if (!fs.existsSync(repoPath('gateway', 'web', 'dist', 'index.html'))) {
        ctx.say('  building the dashboard (npm run build:web)…');
        await ctx.run({ name: 'dashboard-build', command: process.execPath, args: [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web'], cwd: repoRoot(), env: process.env });
      }
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
        env: { ...process.env, ...ctx.env, ...upstreams, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(port) },
      });
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
