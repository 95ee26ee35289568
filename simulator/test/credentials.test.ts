import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCredentials, readCredentialsFile, writeCredentialsFile } from '../src/provision';

describe('credentials files', () => {
  test('what the simulator saves it reads back, secrets in a file only its owner can read', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-credentials-'));
    try {
      const file = path.join(dir, 'fleet.json');
      const identities = [
        { tenantId: 't1', deviceId: 'd-1', token: 'jwt-1', natsUrl: 'nats://127.0.0.1:4222', mqttUrl: 'mqtt://127.0.0.1:1883' },
        { tenantId: 't1', deviceId: 'd-2' },
        // A NATS credential: its seed signs the server's nonce, so it is kept with the token.
        { tenantId: 't1', deviceId: 'd-3', token: 'jwt-3', seed: 'SUAEXAMPLESEED', natsUrl: 'nats://127.0.0.1:4222' },
      ];
      writeCredentialsFile(file, identities);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(readCredentialsFile(file)).toEqual([
        identities[0],
        { tenantId: 't1', deviceId: 'd-2', token: undefined, natsUrl: undefined, mqttUrl: undefined },
        identities[2],
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('reads DeviceCredential JSON in either spelling, one per line, nested or under older names', () => {
    const lines = [
      JSON.stringify({ tenant_id: 't2', device_id: 'snake', token: 'a', nats_url: 'nats://n:4222' }),
      JSON.stringify({ device: { name: 'x' }, credential: { tenantId: 't2', deviceId: 'nested', mqttUrl: 'mqtt://m:1883' } }),
      JSON.stringify({ tenantId: 't2', id: 'old', jwt: 'b' }),
    ].join('\n');
    expect(parseCredentials(lines)).toEqual([
      { tenantId: 't2', deviceId: 'snake', token: 'a', natsUrl: 'nats://n:4222', mqttUrl: undefined },
      { tenantId: 't2', deviceId: 'nested', token: undefined, natsUrl: undefined, mqttUrl: 'mqtt://m:1883' },
      { tenantId: 't2', deviceId: 'old', token: 'b', natsUrl: undefined, mqttUrl: undefined },
    ]);
  });

  test('refuses an entry without a usable tenant and device id', () => {
    expect(() => parseCredentials(JSON.stringify([{ tenantId: 't', deviceId: 'a.b' }]))).toThrow(/entry 1 lacks a valid tenant id and device id/);
    expect(() => parseCredentials(JSON.stringify({ credentials: [{ deviceId: 'd' }] }))).toThrow(/entry 1/);
  });
});
