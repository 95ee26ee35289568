import { credsAuthenticator, NatsConnection, connect } from 'nats';
import fs from 'node:fs';
import { insecureClient } from '@iot-mesh/runtime';
import { CommandServiceClient } from '../../../gen/ts/iot/device/v1/command';
import { CredentialServiceClient } from '../../../gen/ts/iot/device/v1/credential';
import { DeviceServiceClient } from '../../../gen/ts/iot/device/v1/device';
import { TwinServiceClient } from '../../../gen/ts/iot/device/v1/twin';
import { OperatorNats, startOperatorNats } from '../../../testing/nats-operator';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { startTestService, TestService } from '../../../testing/services';
import { startSigningForTest, TestSigning } from '../../../testing/signing';
import { deviceEnv, deviceService } from '../src/main';

/** Generated clients of the device service. */
export interface DeviceClients {
  devices: DeviceServiceClient;
  credentials: CredentialServiceClient;
  twin: TwinServiceClient;
  commands: CommandServiceClient;
  close(): void;
}

export function deviceClients(address: string): DeviceClients {
  const devices = insecureClient(DeviceServiceClient, address);
  const credentials = insecureClient(CredentialServiceClient, address);
  const twin = insecureClient(TwinServiceClient, address);
  const commands = insecureClient(CommandServiceClient, address);
  return { devices, credentials, twin, commands, close: () => [devices, credentials, twin, commands].forEach((c) => c.close()) };
}

/** Everything a device-service test talks to, started for one test file. */
export interface DeviceHarness {
  signing: TestSigning;
  nats: OperatorNats;
  db: TestDatabase;
  device: TestService<typeof deviceEnv>;
  clients: DeviceClients;
  /** A connection of the platform services' user (sees every subject of the account). */
  platform: NatsConnection;
  /** Environment the device service was started with (to start another instance). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startDeviceHarness(options: { mqtt?: boolean; env?: Record<string, string> } = {}): Promise<DeviceHarness> {
  const [signing, nats, db] = await Promise.all([startSigningForTest(), startOperatorNats({ mqtt: options.mqtt }), createTestDatabase('iot_device')]);
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    SIGNING_ADDRESS: signing.address,
    ...nats.deviceEnv(),
    ...options.env,
  };
  const device = await startTestService(deviceService, env);
  const clients = deviceClients(device.address);
  const platform = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(fs.readFileSync(nats.serviceCredsFile)) });
  return {
    signing,
    nats,
    db,
    device,
    clients,
    platform,
    env,
    async stop() {
      clients.close();
      await platform.close().catch(() => undefined);
      await device.stop();
      await signing.stop();
      await nats.stop();
      await db.drop();
    },
  };
}

/** Resolves when `predicate` holds, polling every `everyMs`; rejects after `timeoutMs` with `what`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
