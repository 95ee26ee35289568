import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, credsAuthenticator } from 'nats';
import { encodeTenantAccount, generateOperatorSetup, NatsOperatorSetup, nkeyFromSeed, tenantAccountKeys, TenantAccountKeys, updateAccountClaims } from '@iot-mesh/nats-auth';
import { NatsServerOptions, TestNatsServer } from './nats-server';

/** A private nats-server in operator mode with the platform's accounts, and the files to use it. */
export interface OperatorNats {
  server: TestNatsServer;
  setup: NatsOperatorSetup;
  /** Path of the platform services' creds file (NATS_CREDS). */
  serviceCredsFile: string;
  /** Path of the system-account user's creds file. */
  systemCredsFile: string;
  /** Environment for the device service pointing at this server (NATS_URL, NATS_CREDS, DEVICE_NATS_*). */
  deviceEnv(): Record<string, string>;
  /** Environment for any other service (NATS_URL, NATS_CREDS). */
  serviceEnv(): Record<string, string>;
  /**
   * Pushes the account of `tenantId`, as the device service would when it
   * mints the tenant's first credential, and returns its keys (which sign
   * the tenant's device users): for tests without a device service.
   */
  pushTenantAccount(tenantId: string): Promise<TenantAccountKeys>;
  stop(): Promise<void>;
}

/**
 * Generates a fresh operator (with a signing key), system account and
 * platform account, writes the service and system creds to a temp folder and
 * starts a TestNatsServer in operator mode (JetStream; MQTT when asked) with a
 * full resolver preloaded with both accounts; tenant accounts are pushed by
 * the device service.
 */
export async function startOperatorNats(options: Omit<NatsServerOptions, 'operator'> = {}): Promise<OperatorNats> {
  const setup = generateOperatorSetup('iot-test');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-creds-'));
  const serviceCredsFile = path.join(dir, 'service.creds');
  const systemCredsFile = path.join(dir, 'system.creds');
  fs.writeFileSync(serviceCredsFile, setup.serviceCreds, { mode: 0o600 });
  fs.writeFileSync(systemCredsFile, setup.systemCreds, { mode: 0o600 });
  const server = await TestNatsServer.start({
    ...options,
    operator: {
      operatorJwt: setup.operatorJwt,
      systemAccount: setup.systemAccount,
      accounts: { [setup.systemAccount]: setup.systemAccountJwt, [setup.appAccount]: setup.appAccountJwt },
    },
  });
  return {
    server,
    setup,
    serviceCredsFile,
    systemCredsFile,
    serviceEnv: () => ({ NATS_URL: server.url, NATS_CREDS: serviceCredsFile }),
    async pushTenantAccount(tenantId) {
      const keys = tenantAccountKeys(setup.tenantKeySecret, tenantId);
      const account = encodeTenantAccount(nkeyFromSeed(setup.operatorSigningSeed, 'O'), keys, setup.appAccount, { connections: 100, mqttStorageBytes: 64 * 1024 * 1024 });
      const system = await connect({ servers: server.url, authenticator: credsAuthenticator(new TextEncoder().encode(setup.systemCreds)) });
      try {
        await updateAccountClaims(system, keys.account.publicKey, account);
      } finally {
        await system.close();
      }
      return keys;
    },
    deviceEnv: () => ({
      NATS_URL: server.url,
      NATS_CREDS: serviceCredsFile,
      DEVICE_NATS_OPERATOR_SIGNING_SEED: setup.operatorSigningSeed,
      DEVICE_NATS_PLATFORM_ACCOUNT: setup.appAccount,
      DEVICE_NATS_TENANT_KEY_SECRET: setup.tenantKeySecret,
      DEVICE_NATS_SYSTEM_CREDS: systemCredsFile,
      DEVICE_NATS_PUBLIC_URL: server.url,
      ...(server.mqttPort ? { DEVICE_MQTT_PUBLIC_URL: server.mqttUrl } : {}),
    }),
    async stop() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
