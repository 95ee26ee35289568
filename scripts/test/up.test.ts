import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { connect, credsAuthenticator, NatsConnection } from 'nats';
import Redis from 'ioredis';
import { Client } from 'pg';
import { encodeTenantAccount, mintDeviceUser, NatsOperatorSetup, nkeyFromSeed, tenantAccountKeys, updateAccountClaims } from '@iot-mesh/nats-auth';
import { checkHealth, deviceSubject, insecureClient, readMigrations, repoPath, repoRoot, unary } from '@iot-mesh/runtime';
import { DeviceServiceClient, ListDevicesRequest } from '../../gen/ts/iot/device/v1/device';
import { ProvisioningServiceClient } from '../../gen/ts/iot/device/v1/provisioning';
import { TelemetryServiceClient } from '../../gen/ts/iot/monitoring/v1/telemetry';
import { AuthServiceClient } from '../../gen/ts/iot/signing/v1/auth';
import { FLEET_DEVICE_TYPE } from '../up-fleet';
import { natsSetupFiles } from '../nats-setup';
import { ManagedProcess } from '../up-process';
import { parseStatus, StatusRow } from '../up-status';

/** Runs the up-command from source (as `npx tsx scripts/up.ts` would), output collected. */
function startUp(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const base = { ...process.env };
  // The machine's or CI's own settings must not leak into the private stack.
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'NATS_URL', 'NATS_CREDS', 'MQTT_URL', 'GRPC_PORT']) delete base[name];
  const child = spawn(process.execPath, ['--import', 'tsx', repoPath('scripts', 'up.ts')], {
    cwd: repoRoot(),
    env: { ...base, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

async function waitForOutput(up: { child: ChildProcess; output: () => string }, text: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!up.output().includes(text)) {
    if (up.child.exitCode !== null) throw new Error(`up-command exited with ${up.child.exitCode}:\n${up.output()}`);
    if (Date.now() > until) throw new Error(`no "${text}" after ${timeoutMs} ms:\n${up.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run up (scripts/up.ts)', () => {
  let dataDir: string;
  let ports: Record<string, number>;
  let up: ReturnType<typeof startUp>;
  let rows: StatusRow[];

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-up-'));
    ports = {};
    // Everything binds ports of its own choosing (0) and the table reports them: no port is picked for a child.
    const anyPort = ['UP_NATS_PORT', 'UP_NATS_MQTT_PORT', 'UP_NATS_HTTP_PORT', 'UP_POSTGRES_PORT', 'UP_REDIS_PORT', 'SIGNING_GRPC_PORT', 'SIGNING_HTTP_PORT', 'DEVICE_GRPC_PORT', 'MONITORING_GRPC_PORT', 'GATEWAY_PORT', 'SIGNING_METRICS_PORT', 'DEVICE_METRICS_PORT', 'MONITORING_METRICS_PORT'];
    up = startUp({ UP_DATA_DIR: dataDir, ...Object.fromEntries(anyPort.map((name) => [name, '0'])) });
    // Each service compiles its sources through tsx on first start: slow on a cold cache and a busy machine.
    await waitForOutput(up, 'iot-mesh is up', 100_000);
    rows = parseStatus(up.output());
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    // `nats://127.0.0.1:4223`, `127.0.0.1:50051`, `http://127.0.0.1:9464/metrics`: the port after the host.
    const portOf = (name: string) => Number(/^(?:[a-z]+:\/\/)?[^/]*:(\d+)/.exec(byName[name].address)?.[1]);
    Object.assign(ports, {
      UP_NATS_PORT: portOf('nats'),
      UP_NATS_MQTT_PORT: portOf('nats mqtt'),
      UP_POSTGRES_PORT: portOf('postgres'),
      UP_REDIS_PORT: portOf('redis'),
      SIGNING_GRPC_PORT: portOf('signing'),
      SIGNING_HTTP_PORT: portOf('signing jwks'),
      DEVICE_GRPC_PORT: portOf('device'),
      MONITORING_GRPC_PORT: portOf('monitoring'),
      GATEWAY_PORT: portOf('gateway'),
      SIGNING_METRICS_PORT: portOf('signing metrics'),
      DEVICE_METRICS_PORT: portOf('device metrics'),
      MONITORING_METRICS_PORT: portOf('monitoring metrics'),
    });
  }, 110_000);

  afterAll(async () => {
    // After a failure: let the up-command stop its children, then kill whatever its pid files still name.
    if (up && up.child.exitCode === null && up.child.signalCode === null) {
      up.child.kill('SIGINT');
      const stopped = await Promise.race([exitOf(up.child).then(() => true), new Promise((r) => setTimeout(() => r(false), 30_000))]);
      if (!stopped) up.child.kill('SIGKILL');
    }
    const runDir = dataDir ? path.join(dataDir, 'run') : '';
    for (const file of runDir && fs.existsSync(runDir) ? fs.readdirSync(runDir) : []) {
      const pid = Number(fs.readFileSync(path.join(runDir, file), 'utf8'));
      if (pid > 0 && alive(pid)) process.kill(-pid, 'SIGKILL'); // each child leads its own process group
    }
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  }, 40_000);

  test('prints a status table with every piece, where it runs and its process', () => {
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    for (const [name, port] of Object.entries(ports)) expect([name, port > 0]).toEqual([name, true]);
    expect(byName.nats).toMatchObject({ state: 'started', address: `nats://127.0.0.1:${ports.UP_NATS_PORT}` });
    expect(byName['nats mqtt']).toMatchObject({ address: `mqtt://127.0.0.1:${ports.UP_NATS_MQTT_PORT}` });
    expect(byName.postgres).toMatchObject({ state: 'started', address: `postgres://postgres@127.0.0.1:${ports.UP_POSTGRES_PORT}/iot` });
    expect(byName.redis).toMatchObject({ state: 'started', address: `redis://127.0.0.1:${ports.UP_REDIS_PORT}` });
    expect(byName.signing).toMatchObject({ state: 'SERVING', address: `127.0.0.1:${ports.SIGNING_GRPC_PORT}` });
    expect(byName.device).toMatchObject({ state: 'SERVING', address: `127.0.0.1:${ports.DEVICE_GRPC_PORT}` });
    expect(byName.monitoring).toMatchObject({ state: 'SERVING', address: `127.0.0.1:${ports.MONITORING_GRPC_PORT}` });
    for (const name of ['nats', 'postgres', 'redis', 'signing', 'device', 'monitoring']) expect(alive(byName[name].pid!)).toBe(true);
  });

  test('only the device service is handed the NATS operator signing key and the tenant key secret; nobody the operator identity', () => {
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    const variablesOf = (pid: number) =>
      fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').map((entry) => entry.split('=')[0]);
    expect(variablesOf(byName.device.pid!)).toEqual(expect.arrayContaining(['DEVICE_NATS_OPERATOR_SIGNING_SEED', 'DEVICE_NATS_TENANT_KEY_SECRET', 'NATS_CREDS']));
    for (const name of ['signing', 'monitoring']) {
      const variables = variablesOf(byName[name].pid!);
      expect(variables).toContain('NATS_CREDS');
      expect(variables).not.toContain('DEVICE_NATS_OPERATOR_SIGNING_SEED');
      expect(variables).not.toContain('DEVICE_NATS_TENANT_KEY_SECRET');
    }
    const setup = JSON.parse(fs.readFileSync(natsSetupFiles(path.join(dataDir, 'nats', 'auth')).setupFile, 'utf8')) as NatsOperatorSetup;
    for (const row of rows.filter((r) => r.pid && alive(r.pid))) expect(fs.readFileSync(`/proc/${row.pid}/environ`, 'utf8')).not.toContain(setup.operatorSeed);
  });

  test('each service serves Prometheus metrics on its own port, listed in the table', async () => {
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    for (const name of ['signing', 'device', 'monitoring']) {
      const port = ports[`${name.toUpperCase()}_METRICS_PORT`];
      expect(byName[`${name} metrics`]).toMatchObject({ state: 'listening', address: `http://127.0.0.1:${port}/metrics` });
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(body).toContain('grpc_server_handled_total');
      expect(body).toContain('process_cpu_user_seconds_total');
    }
  });

  test('serves the dashboard through the gateway and prints its URL', async () => {
    const gateway = rows.find((r) => r.name === 'gateway');
    expect(gateway).toMatchObject({ state: 'listening', address: `http://127.0.0.1:${ports.GATEWAY_PORT}` });
    expect(up.output()).toContain(`Dashboard: http://127.0.0.1:${ports.GATEWAY_PORT}/`);
    const page = await fetch(`http://127.0.0.1:${ports.GATEWAY_PORT}/`, { headers: { accept: 'text/html' } });
    expect(await page.text()).toContain('<div id="root">');
  });

  test('signing serves its JWKS on the port the table names (bound by signing itself)', async () => {
    const jwks = rows.find((r) => r.name === 'signing jwks');
    expect(jwks).toMatchObject({ state: 'listening', address: `http://127.0.0.1:${ports.SIGNING_HTTP_PORT}/.well-known/jwks.json` });
    const body = (await (await fetch(jwks!.address)).json()) as { keys: unknown[] };
    expect(body.keys.length).toBeGreaterThan(0);
  });

  test('every service answers grpc.health.v1 with SERVING', async () => {
    for (const port of [ports.SIGNING_GRPC_PORT, ports.DEVICE_GRPC_PORT, ports.MONITORING_GRPC_PORT]) {
      expect(await checkHealth(`127.0.0.1:${port}`)).toBe('SERVING');
    }
  });

  test('its simulated fleet provisioned itself with a key: devices of the demo type with its labels, claimed by serial, whose data is stored', async () => {
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(byName.simulator).toMatchObject({ state: 'running', address: '6 devices over mqtt' });
    const login = JSON.parse(fs.readFileSync(path.join(dataDir, 'secrets', 'admin-login.json'), 'utf8')) as { tenant: string; email: string; password: string };
    const auth = insecureClient(AuthServiceClient, `127.0.0.1:${ports.SIGNING_GRPC_PORT}`);
    const devices = insecureClient(DeviceServiceClient, `127.0.0.1:${ports.DEVICE_GRPC_PORT}`);
    const keys = insecureClient(ProvisioningServiceClient, `127.0.0.1:${ports.DEVICE_GRPC_PORT}`);
    const telemetry = insecureClient(TelemetryServiceClient, `127.0.0.1:${ports.MONITORING_GRPC_PORT}`);
    try {
      const settings = { authorization: `Bearer ${(await unary(auth, auth.login, login)).tokens!.accessToken}` };
      const fleet = (await unary(devices, devices.listDevices, ListDevicesRequest.fromPartial({ labels: { fleet: 'up' } }), settings)).devices;
      expect(fleet.map((d) => d.serialNumber).sort()).toEqual(['FLEET-0001', 'FLEET-0002', 'FLEET-0003', 'FLEET-0004', 'FLEET-0005', 'FLEET-0006']);
      for (const d of fleet) expect(d).toMatchObject({ type: FLEET_DEVICE_TYPE, labels: { simulator: 'true', fleet: 'up' } });
      const key = JSON.parse(fs.readFileSync(path.join(dataDir, 'secrets', 'fleet-provisioning-key.json'), 'utf8')) as { id: string };
      const listed = (await unary(keys, keys.listProvisioningKeys, {}, settings)).provisioningKeys.find((k) => k.id === key.id);
      expect(listed).toMatchObject({ deviceTypeId: expect.any(String), labels: { simulator: 'true', fleet: 'up' }, deviceCount: 6n });
      // At 0.2 messages per second each device has published within seconds; the writer stores it.
      const ids = fleet.map((d) => d.id);
      const until = Date.now() + 60_000;
      let stored = 0;
      while (Date.now() < until) {
        stored = new Set((await unary(telemetry, telemetry.getLatest, { deviceIds: ids, metrics: [] }, settings)).points.map((p) => p.deviceId)).size;
        if (stored === ids.length) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect(stored).toBe(ids.length);
    } finally {
      for (const client of [auth, devices, keys, telemetry]) client.close();
    }
  }, 70_000);

  test('its PostgreSQL holds each service schema with the migrations applied', async () => {
    const client = new Client({ connectionString: `postgres://postgres@127.0.0.1:${ports.UP_POSTGRES_PORT}/iot` });
    await client.connect();
    try {
      for (const service of ['signing', 'device', 'monitoring']) {
        const { rows: applied } = await client.query<{ version: number }>(`SELECT version FROM "${service}".schema_migrations ORDER BY version`);
        const expected = readMigrations(repoPath('services', service, 'migrations')).map((m) => m.version);
        expect(applied.map((r) => r.version)).toEqual(expected);
      }
    } finally {
      await client.end();
    }
  });

  test('its Redis answers, and its nats-server runs JetStream and MQTT in operator mode', async () => {
    const redis = new Redis(ports.UP_REDIS_PORT, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    expect(await redis.ping()).toBe('PONG');
    redis.disconnect();

    // The ports nats-server chose are the ones the table shows.
    const monitor = rows.find((r) => r.name === 'nats monitor')!.address;
    const varz = (await (await fetch(`${monitor}/varz`)).json()) as { port: number; mqtt: { port: number } };
    expect(varz).toMatchObject({ port: ports.UP_NATS_PORT, mqtt: { port: ports.UP_NATS_MQTT_PORT } });

    const servers = `nats://127.0.0.1:${ports.UP_NATS_PORT}`;
    const mqttUrl = `mqtt://127.0.0.1:${ports.UP_NATS_MQTT_PORT}`;
    // No credentials, no entry: over NATS and over MQTT.
    await expect(connect({ servers, reconnect: false })).rejects.toThrow(/authoriz/i);
    await expect(mqtt.connectAsync(mqttUrl, { clientId: 'up-test-anonymous', reconnectPeriod: 0 })).rejects.toThrow(/authoriz/i);

    // The services' creds and the application account written by the setup hook.
    const files = natsSetupFiles(path.join(dataDir, 'nats', 'auth'));
    const setup = JSON.parse(fs.readFileSync(files.setupFile, 'utf8')) as NatsOperatorSetup;
    const nc: NatsConnection = await connect({ servers, timeout: 30_000, authenticator: credsAuthenticator(fs.readFileSync(files.serviceCredsFile)) });
    try {
      const account = await (await nc.jetstreamManager()).getAccountInfo();
      expect(account.limits).toBeDefined();
      const sub = nc.subscribe(deviceSubject('uptest', 'one', 'tel'), { max: 1 });
      await nc.flush();
      // A device credential minted in the tenant's own account is the MQTT password. Only the tenant account is
      // pushed (its imports carry telemetry into the platform account); the platform account, with the device
      // service's imports of the fleet's tenants, is left as the device service pushed it.
      const system = await connect({ servers, authenticator: credsAuthenticator(fs.readFileSync(files.systemCredsFile)) });
      const signer = nkeyFromSeed(setup.operatorSigningSeed, 'O');
      const tenant = tenantAccountKeys(setup.tenantKeySecret, 'uptest');
      await updateAccountClaims(system, tenant.account.publicKey, encodeTenantAccount(signer, tenant, setup.appAccount, { connections: 10, mqttStorageBytes: 1 << 24 }));
      await system.close();
      const { token } = mintDeviceUser(tenant, { deviceId: 'one', kind: 'mqtt', expireTime: new Date(Date.now() + 3_600_000) });
      const device = await mqtt.connectAsync(mqttUrl, { clientId: 'up-test', username: 'one', password: token, reconnectPeriod: 0 });
      await device.publishAsync('iot/uptest/dev/one/tel', 'hello', { qos: 1 });
      for await (const msg of sub) expect(Buffer.from(msg.data).toString()).toBe('hello');
      await device.endAsync();
    } finally {
      await nc.close();
    }
  }, 60_000);

  test('SIGINT stops everything in reverse order and exits 0', async () => {
    up.child.kill('SIGINT');
    expect(await exitOf(up.child)).toBe(0);
    const out = up.output();
    expect(out).toContain('all stopped.');
    // Reverse start order; pieces started side by side stop in either order.
    const at = (name: string) => out.indexOf(`stopped ${name}\n`);
    const stages = [['monitoring', 'device'], ['signing'], ['redis', 'postgres', 'nats']];
    for (const name of stages.flat()) expect(at(name)).toBeGreaterThan(0);
    for (let i = 1; i < stages.length; i++) {
      expect(Math.max(...stages[i - 1].map(at))).toBeLessThan(Math.min(...stages[i].map(at)));
    }
    for (const row of rows) if (row.pid) expect(alive(row.pid)).toBe(false);
    expect(fs.readdirSync(path.join(dataDir, 'run'))).toEqual([]);
  });
});

describe('up-command configuration and leftovers', () => {
  test('a bad port exits 2 naming the variable', async () => {
    const up = startUp({ UP_DATA_DIR: path.join(os.tmpdir(), 'iot-up-never'), UP_REDIS_PORT: 'not-a-port' });
    expect(await exitOf(up.child)).toBe(2);
    expect(up.output()).toMatch(/UP_REDIS_PORT: must be a port number/);
  });

  test('a process left running by a killed run is stopped before its name is started again', async () => {
    const dirs = { logsDir: fs.mkdtempSync(path.join(os.tmpdir(), 'iot-up-logs-')), runDir: fs.mkdtempSync(path.join(os.tmpdir(), 'iot-up-run-')) };
    try {
      const first = new ManagedProcess({ name: 'sleeper', command: 'sleep', args: ['60'] }, dirs);
      await first.start();
      const pid = first.pid!;
      // A new run knows only the pid file.
      const second = new ManagedProcess({ name: 'sleeper', command: 'sleep', args: ['60'] }, dirs);
      expect(await second.stopLeftover(5000)).toBe(true);
      expect(alive(pid)).toBe(false);
      expect(await second.stopLeftover(5000)).toBe(false);
    } finally {
      fs.rmSync(dirs.logsDir, { recursive: true, force: true });
      fs.rmSync(dirs.runDir, { recursive: true, force: true });
    }
  });
});
