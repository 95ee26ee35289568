import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { connect, credsAuthenticator } from 'nats';
import { encodeAppAccount, encodeTenantAccount, mintDeviceUser, nkeyFromSeed, tenantAccountKeys, updateAccountClaims } from '@iot-mesh/nats-auth';
import { TestNatsServer } from '../../testing/nats-server';
import { deviceServiceEnvBeside, ensureNatsSetup, natsConfigLines, natsOperatorAuth } from '../nats-setup';

jest.setTimeout(30_000);

test('the setup folder runs a nats-server in operator mode where services and devices connect; re-runs keep the keys', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-nats-setup-'));
  try {
    const first = ensureNatsSetup(dir);
    expect(first.created).toBe(true);
    const again = ensureNatsSetup(dir);
    expect(again.created).toBe(false);
    expect(again.setup).toEqual(first.setup);
    // The device service gets an operator signing key, never the operator's identity.
    expect(first.setup.operatorSigningSeed).not.toBe(first.setup.operatorSeed);
    for (const secret of [first.files.setupFile, first.files.serviceCredsFile, first.files.systemCredsFile, first.files.envFile]) {
      expect(fs.statSync(secret).mode & 0o077).toBe(0);
    }
    const hook = await natsOperatorAuth(undefined, path.join(dir, 'up'));
    // Every process gets the service creds; only the device service gets the seeds, read beside them.
    expect(Object.keys(hook.env)).toEqual(['NATS_CREDS']);
    expect(hook.notes.join(' ')).not.toContain(first.setup.operatorSeed);
    const deviceEnv = deviceServiceEnvBeside(hook.env.NATS_CREDS);
    expect(Object.keys(deviceEnv).sort()).toEqual(['DEVICE_NATS_OPERATOR_SIGNING_SEED', 'DEVICE_NATS_PLATFORM_ACCOUNT', 'DEVICE_NATS_SYSTEM_CREDS', 'DEVICE_NATS_TENANT_KEY_SECRET', 'NATS_CREDS']);
    expect(Object.values(deviceEnv)).not.toContain(first.setup.operatorSeed);
    expect(deviceServiceEnvBeside(hook.env.NATS_CREDS)).toEqual(deviceEnv);
    expect(deviceServiceEnvBeside(undefined)).toEqual({});

    const server = await TestNatsServer.start({ mqtt: true, extraConfig: natsConfigLines(first.setup, first.files).join('\n') });
    try {
      const service = await connect({ servers: server.url, authenticator: credsAuthenticator(fs.readFileSync(first.files.serviceCredsFile)), reconnect: false });
      const system = await connect({ servers: server.url, authenticator: credsAuthenticator(fs.readFileSync(first.files.systemCredsFile)), reconnect: false });
      const got: string[] = [];
      service.subscribe('iot.>', { callback: (_e, m) => got.push(m.subject) });
      await service.flush();
      // What the device service does for a tenant's first credential: its account, then the platform's imports of it.
      const signer = nkeyFromSeed(first.setup.operatorSigningSeed, 'O');
      const tenant = tenantAccountKeys(first.setup.tenantKeySecret, 't1');
      await updateAccountClaims(system, tenant.account.publicKey, encodeTenantAccount(signer, tenant, first.setup.appAccount, { connections: 10, mqttStorageBytes: 1 << 24 }));
      await updateAccountClaims(system, first.setup.appAccount, encodeAppAccount(signer, first.setup.appAccount, [{ tenantId: 't1', account: tenant.account.publicKey }]));
      const device = mintDeviceUser(tenant, { deviceId: 'd1', kind: 'mqtt', expireTime: new Date(Date.now() + 3_600_000) });
      const client = await mqtt.connectAsync(server.mqttUrl, { username: 'd1', password: device.token, clientId: 'd1', protocolVersion: 4, reconnectPeriod: 0 });
      await client.publishAsync('iot/t1/dev/d1/tel', '{}', { qos: 1 });
      await client.endAsync();
      await service.flush();
      while (got.length === 0) await new Promise((r) => setTimeout(r, 20));
      expect(got).toEqual(['iot.t1.dev.d1.tel']);
      await service.close();
      await system.close();
    } finally {
      await server.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
