import fs from 'node:fs';
import path from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { z } from 'zod';
import { DeviceType, DeviceTypeServiceClient, MetricKind } from '../gen/ts/iot/device/v1/device_types';
import { ProvisioningKey, ProvisioningServiceClient } from '../gen/ts/iot/device/v1/provisioning';
import { env, insecureClient, loadConfig, repoRoot, unary } from '@iot-mesh/runtime';
import { createSensor, PROFILE_NAMES, ProfileName } from '../simulator/src/profiles';
import { authorization } from '../simulator/src/provision';
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

/** The demo fleet's device type: every metric its profiles report (others are accepted too). */
export const FLEET_DEVICE_TYPE = 'demo-sensor';
/** Labels every device of the demo fleet gets from its provisioning key. */
export const FLEET_LABELS = { simulator: 'true', fleet: 'up' };

const UNITS: Record<string, string> = {
  temperature: '°C', humidity: '%', pressure: 'hPa', wind_speed: 'm/s', wind_direction: '°',
  voltage: 'V', current: 'A', power: 'W', energy: 'kWh', frequency: 'Hz',
  latitude: '°', longitude: '°', speed: 'km/h', heading: '°', battery: '%',
};
const KINDS: Record<string, MetricKind> = { energy: MetricKind.METRIC_KIND_COUNTER, moving: MetricKind.METRIC_KIND_BOOLEAN };

/** The demo device type for the fleet's profiles (string metrics such as the GPS `fix` are left undeclared). */
export function fleetDeviceType(profiles: readonly ProfileName[]): DeviceType {
  const metrics = profiles.flatMap((profile) => createSensor(profile, 1).metrics).filter((name) => name !== 'fix');
  return DeviceType.fromPartial({
    name: FLEET_DEVICE_TYPE,
    displayName: 'Simulated sensor (up-command fleet)',
    metrics: metrics.map((name) => ({ name, unit: UNITS[name] ?? '', kind: KINDS[name] ?? MetricKind.METRIC_KIND_GAUGE })),
  });
}

interface FleetKey {
  id: string;
  secret: string;
}

/**
 * The fleet's provisioning key, kept in `keyFile`: on the first run it
 * creates the demo device type (unless the tenant has one by that name) and
 * a key bound to it and {@link FLEET_LABELS}, as the bootstrap admin.
 */
async function fleetKey(keyFile: string, login: { tenant: string; email: string; password: string }, signingAddress: string, deviceAddress: string, profiles: readonly ProfileName[]): Promise<FleetKey> {
  if (fs.existsSync(keyFile)) return JSON.parse(fs.readFileSync(keyFile, 'utf8')) as FleetKey;
  const settings = { authorization: await authorization({ kind: 'password', signingAddress, ...login }) };
  const types = insecureClient(DeviceTypeServiceClient, deviceAddress);
  const keys = insecureClient(ProvisioningServiceClient, deviceAddress);
  try {
    await unary(types, types.createDeviceType, { deviceType: fleetDeviceType(profiles) }, settings).catch((err: { code?: number }) => {
      if (err.code !== GrpcStatus.ALREADY_EXISTS) throw err;
    });
    const created = await unary(keys, keys.createProvisioningKey, { provisioningKey: ProvisioningKey.fromPartial({ name: 'up-command fleet', deviceTypeId: FLEET_DEVICE_TYPE, labels: FLEET_LABELS }) }, settings);
    const key = { id: created.provisioningKey!.id, secret: created.secret };
    fs.writeFileSync(keyFile, JSON.stringify(key, null, 2) + '\n', { mode: 0o600 });
    return key;
  } finally {
    types.close();
    keys.close();
  }
}

/**
 * A small simulated fleet (`npm run simulate` as a supervised child) that
 * provisions itself: on the first run the bootstrap admin creates the demo
 * device type and a provisioning key bound to it (kept in
 * `<data>/secrets/fleet-provisioning-key.json`); the simulator then runs in
 * provisioning mode, each device claiming itself by its serial
 * (`FLEET-0001`…) and keeping its credential in
 * `<data>/secrets/fleet-claims.json`, so later runs are the same devices.
 */
export function simulatedFleet(): Component {
  return {
    name: 'simulator',
    async start(ctx) {
      const config = loadConfig(fleetEnv);
      const row = (state: string, address: string, detail: string, pid?: number) => ({ name: 'simulator', state, address, pid, detail });
      if (config.UP_FLEET_DEVICES === 0) return { rows: [row('off', '', 'UP_FLEET_DEVICES=0')] };
      const loginFile = path.join(ctx.config.secretsDir, 'admin-login.json');
      const keyFile = path.join(ctx.config.secretsDir, 'fleet-provisioning-key.json');
      const claimsFile = path.join(ctx.config.secretsDir, 'fleet-claims.json');
      if (!ctx.addresses.device || !ctx.addresses.signing || (!fs.existsSync(keyFile) && !fs.existsSync(loginFile))) {
        return { rows: [row('skipped', '', 'needs the admin login and the device service')] };
      }
      const profiles = config.UP_FLEET_PROFILE === 'mixed' ? PROFILE_NAMES : [config.UP_FLEET_PROFILE];
      const login = fs.existsSync(loginFile) ? (JSON.parse(fs.readFileSync(loginFile, 'utf8')) as { tenant: string; email: string; password: string }) : undefined;
      const key = await fleetKey(keyFile, login!, ctx.addresses.signing, ctx.addresses.device, profiles);
      // The stack's own URLs (the same ones device credentials name).
      const url = config.UP_FLEET_TRANSPORT === 'mqtt' ? ctx.env.MQTT_URL : ctx.env.NATS_URL?.split(',')[0];
      const args = [
        '--device-api', ctx.addresses.device,
        '--serial-prefix', 'FLEET',
        '--claims', claimsFile,
        ...(url ? ['--url', url] : []),
        '--devices', String(config.UP_FLEET_DEVICES),
        '--transport', config.UP_FLEET_TRANSPORT,
        '--encoding', config.UP_FLEET_ENCODING,
        '--profile', config.UP_FLEET_PROFILE,
        '--rate', String(config.UP_FLEET_RATE),
        '--points', String(config.UP_FLEET_POINTS),
      ];
      const proc = await ctx.spawn({
        name: 'simulator',
        command: process.execPath,
        args: [...nodeEntry('simulator/src/main'), ...args],
        cwd: repoRoot(),
        // The key travels in the environment, not on the command line other users can read.
        env: { ...process.env, ...ctx.env, SIMULATOR_PROVISIONING_KEY: key.secret },
      });
      // This run's lines only: the log keeps earlier runs', whose "connected" says nothing of this one.
      await waitUntil('simulated fleet to connect', async () => /devices connected/.test(proc.output()), {
        timeoutMs: ctx.config.UP_START_TIMEOUT_MS,
        signal: ctx.signal,
        intervalMs: 250,
        failed: () => (proc.running ? undefined : `exited (${proc.exitDescription})`),
      });
      return {
        rows: [row('running', `${config.UP_FLEET_DEVICES} devices over ${config.UP_FLEET_TRANSPORT}`, displayPath(proc.logFile), proc.pid)],
        notes: [
          `Simulated fleet: ${config.UP_FLEET_DEVICES} ${config.UP_FLEET_PROFILE} devices of type ${FLEET_DEVICE_TYPE}, provisioned by themselves with the key ${key.id}; credentials in ${displayPath(claimsFile)} (UP_FLEET_DEVICES=0 turns it off)`,
        ],
      };
    },
  };
}
