import { credsAuthenticator, NatsConnection, connect } from 'nats';
import fs from 'node:fs';
import { Metadata } from '@grpc/grpc-js';
import { insecureClient, rpcStatusDetails, unary } from '@iot-mesh/runtime';
import { CommandServiceClient } from '../../../gen/ts/iot/device/v1/command';
import { CredentialServiceClient } from '../../../gen/ts/iot/device/v1/credential';
import { DeviceServiceClient } from '../../../gen/ts/iot/device/v1/device';
import { DeviceType, DeviceTypeServiceClient } from '../../../gen/ts/iot/device/v1/device_types';
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

/** Clients of every device API at `address` (plaintext); `close()` closes them all. */
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

/**
 * Starts signing, an operator-mode NATS server, a database and the device
 * service. When a step fails, whatever had started is stopped before the
 * error is rethrown, so a failed start leaks no server.
 */
export async function startDeviceHarness(options: { mqtt?: boolean; env?: Record<string, string> } = {}): Promise<DeviceHarness> {
  // Stop actions of what has started so far, run in reverse order.
  const started: (() => Promise<unknown> | void)[] = [];
  const stopAll = async () => {
    for (const stop of started.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  };
  try {
    // allSettled, not all: a failure must not leave a sibling still starting, unseen and never stopped.
    const [signing, nats, db] = await Promise.allSettled([startSigningForTest(), startOperatorNats({ mqtt: options.mqtt }), createTestDatabase('iot_device')]).then(
      ([signing, nats, db]) => {
        // Stopped in reverse: the database is dropped last.
        if (db.status === 'fulfilled') started.push(() => db.value.drop());
        if (nats.status === 'fulfilled') started.push(() => nats.value.stop());
        if (signing.status === 'fulfilled') started.push(() => signing.value.stop());
        const failed = [signing, nats, db].find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        return [(signing as PromiseFulfilledResult<TestSigning>).value, (nats as PromiseFulfilledResult<OperatorNats>).value, (db as PromiseFulfilledResult<TestDatabase>).value] as const;
      },
    );
    const env = {
      DATABASE_URL: db.url,
      SIGNING_ADDRESS: signing.address,
      ...nats.deviceEnv(),
      ...options.env,
    };
    const device = await startTestService(deviceService, env);
    started.push(() => device.stop());
    const clients = deviceClients(device.address);
    started.push(() => clients.close());
    const platform = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(fs.readFileSync(nats.serviceCredsFile)) });
    started.push(() => platform.close());
    return { signing, nats, db, device, clients, platform, env, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Creates a device type (`fields`, a name at least) as the caller `authorization` names, through a client of its own at `address`. */
export async function createDeviceType(address: string, authorization: string, fields: Partial<DeviceType>): Promise<DeviceType> {
  const types = insecureClient(DeviceTypeServiceClient, address);
  try {
    return (await unary(types, types.createDeviceType, { deviceType: DeviceType.fromPartial(fields) }, { authorization })).deviceType!;
  } finally {
    types.close();
  }
}

/** What a failed call told the client: its code and the fields of its violations; throws when the call succeeded. */
export async function failure(promise: Promise<unknown>): Promise<{ code: number; fields: string[] }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code: number; metadata?: Metadata };
    return { code: e.code, fields: rpcStatusDetails(e.metadata).fieldViolations.map((v) => v.field) };
  }
  throw new Error('the call succeeded but was expected to fail');
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
