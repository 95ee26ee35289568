import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { env, loadConfig, repoRoot } from '@iot-mesh/runtime';
import { nodeEntry } from './up-services';
import { displayPath } from './up-status';
import { Component } from './up-stack';
import { waitUntil } from './up-wait';

/** The fleet's variables (0 devices turns it off). */
const fleetEnv = {
  UP_FLEET_DEVICES: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'must not be negative').max(1000, 'at most 1000').default(6),
  /** Messages per second per device. */
  UP_FLEET_RATE: z.coerce.number({ error: 'must be a number' }).positive('must be greater than 0').max(100, 'at most 100').default(0.2),
  UP_FLEET_TRANSPORT: z.enum(['mqtt', 'nats'], { error: 'must be mqtt or nats' }).default('mqtt'),
  UP_FLEET_ENCODING: z.enum(['json', 'protobuf'], { error: 'must be json or protobuf' }).default('json'),
  UP_FLEET_PROFILE: z.enum(['weather', 'power', 'gps', 'mixed'], { error: 'must be weather, power, gps or mixed' }).default('mixed'),
  UP_FLEET_POINTS: env.positiveInt(5),
};

/**
 * A small simulated fleet (`npm run simulate` as a supervised child): on the
 * first run it creates the devices through the device API as the bootstrap
 * admin and keeps their credentials in `<data>/secrets/fleet-credentials.json`;
 * later runs reuse them. Each device connects with its own credential.
 */
export function simulatedFleet(): Component {
  return {
    name: 'simulator',
    async start(ctx) {
      const config = loadConfig(fleetEnv);
      const row = (state: string, address: string, detail: string, pid?: number) => ({ name: 'simulator', state, address, pid, detail });
      if (config.UP_FLEET_DEVICES === 0) return { rows: [row('off', '', 'UP_FLEET_DEVICES=0')] };
      const loginFile = path.join(ctx.config.secretsDir, 'admin-login.json');
      const credentialsFile = path.join(ctx.config.secretsDir, 'fleet-credentials.json');
      // The stack's own URLs (the same ones device credentials name).
      const url = config.UP_FLEET_TRANSPORT === 'mqtt' ? ctx.env.MQTT_URL : ctx.env.NATS_URL?.split(',')[0];
      const common = [
        ...(url ? ['--url', url] : []),
        '--devices', String(config.UP_FLEET_DEVICES),
        '--transport', config.UP_FLEET_TRANSPORT,
        '--encoding', config.UP_FLEET_ENCODING,
        '--profile', config.UP_FLEET_PROFILE,
        '--rate', String(config.UP_FLEET_RATE),
        '--points', String(config.UP_FLEET_POINTS),
      ];
      let args: string[];
      const env: Record<string, string> = {};
      if (fs.existsSync(credentialsFile)) {
        args = ['--credentials', credentialsFile, ...common];
      } else {
        if (!fs.existsSync(loginFile) || !ctx.addresses.device || !ctx.addresses.signing) {
          return { rows: [row('skipped', '', 'needs the admin login and the device service')] };
        }
        const login = JSON.parse(fs.readFileSync(loginFile, 'utf8')) as { tenant: string; email: string; password: string };
        args = ['--provision', '--device-api', ctx.addresses.device, '--signing-api', ctx.addresses.signing, '--tenant-name', login.tenant, '--email', login.email, '--prefix', 'fleet', '--save-credentials', credentialsFile, ...common];
        env.SIMULATOR_PASSWORD = login.password;
      }
      const proc = await ctx.spawn({
        name: 'simulator',
        command: process.execPath,
        args: [...nodeEntry('simulator/src/main'), ...args],
        cwd: repoRoot(),
        env: { ...process.env, ...ctx.env, ...env },
      });
      await waitUntil('simulated fleet to connect', async () => fs.existsSync(proc.logFile) && /devices connected/.test(fs.readFileSync(proc.logFile, 'utf8')), {
        timeoutMs: ctx.config.UP_START_TIMEOUT_MS,
        signal: ctx.signal,
        intervalMs: 250,
        failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`),
      });
      return {
        rows: [row('running', `${config.UP_FLEET_DEVICES} devices over ${config.UP_FLEET_TRANSPORT}`, displayPath(proc.logFile), proc.pid)],
        notes: [`Simulated fleet: ${config.UP_FLEET_DEVICES} ${config.UP_FLEET_PROFILE} devices, credentials in ${displayPath(credentialsFile)} (UP_FLEET_DEVICES=0 turns it off)`],
      };
    },
  };
}
