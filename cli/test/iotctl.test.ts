import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { eventually, jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { startMeshForTest, TestMesh } from '../../testing/mesh';
import { TestTenant } from '../../testing/signing';
import { IotctlRun, runIotctl } from './iotctl-process';

jest.setTimeout(60_000);

/*
 * The real iotctl process (node + tsx, as `npx iotctl` runs it) against
 * signing, device and monitoring running in this process on real
 * PostgreSQL, Redis and NATS.
 */
describe('iotctl', () => {
  let mesh: TestMesh;
  let tenant: TestTenant;
  let configHome: string;

  /** Runs iotctl with the stored session, `env` laid over its environment. */
  function iotctl(args: string[], options: { stdin?: string; env?: Record<string, string> } = {}): Promise<IotctlRun> {
    return runIotctl(mesh, configHome, args, options.stdin, options.env);
  }

  /** Runs iotctl expecting success and returns its stdout. */
  async function ok(args: string[], options: Parameters<typeof iotctl>[1] = {}): Promise<string> {
    const run = await iotctl(args, options);
    if (run.code !== 0) throw new Error(`iotctl ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
    return run.stdout;
  }

  const credentialsFile = () => path.join(configHome, 'iotctl', 'credentials.json');
  const storedSession = () => JSON.parse(fs.readFileSync(credentialsFile(), 'utf8')).sessions[mesh.addresses.signing];

  beforeAll(async () => {
    configHome = fs.mkdtempSync(path.join(os.tmpdir(), 'iotctl-test-'));
    mesh = await startMeshForTest();
    tenant = await mesh.signing.createTenant();
  }, 60_000);

  afterAll(async () => {
    await mesh?.stop();
    if (configHome) fs.rmSync(configHome, { recursive: true, force: true });
  });

  it('logs in with --password-stdin, keeps the tokens private and tells who the caller is', async () => {
    const login = await ok(['login', '--tenant', tenant.tenantName, '--email', tenant.admin.email, '--password-stdin'], { stdin: `${tenant.admin.password}\n` });
    expect(login).toContain(`logged in to ${tenant.tenantName} as ${tenant.admin.email} (admin)`);
    expect(fs.statSync(credentialsFile()).mode & 0o777).toBe(0o600);
    expect(storedSession()).toMatchObject({ tenant: tenant.tenantName, email: tenant.admin.email, userId: tenant.admin.userId });

    const [json, table] = await Promise.all([ok(['whoami', '-o', 'json']), ok(['whoami'])]);
    expect(JSON.parse(json)).toMatchObject({ kind: 'PRINCIPAL_KIND_USER', id: tenant.admin.userId, tenantId: tenant.tenantId, role: 'ROLE_ADMIN' });
    expect(table).toMatch(/^ROLE +admin$/m);
  });

  it('creates, lists, gets and updates devices; JSON and CSV parse back', async () => {
    const created = JSON.parse(await ok(['devices', 'create', '--id', 'pump-1', '--name', 'Pump 1', '--type', 'pump', '--label', 'site=north', '--label', 'zone=a=b', '-o', 'json']));
    expect(created).toMatchObject({ id: 'pump-1', name: 'Pump 1', type: 'pump', labels: { site: 'north', zone: 'a=b' }, tenantId: tenant.tenantId });
    await ok(['devices', 'create', '--id', 'fan-1', '--name', 'Fan, "big"', '--label', 'site=south']);

    const [csv, filtered, got, table] = await Promise.all([
      ok(['devices', 'list', '-o', 'csv']),
      ok(['devices', 'list', '--label', 'site=north', '-o', 'json']),
      ok(['devices', 'get', 'pump-1', '-o', 'json']),
      ok(['devices', 'list']),
    ]);
    const rows = parseCsv(csv, { columns: true }) as Record<string, string>[];
    expect(rows.map((r) => r.ID).sort()).toEqual(['fan-1', 'pump-1']);
    expect(rows.find((r) => r.ID === 'fan-1')).toMatchObject({ NAME: 'Fan, "big"', LABELS: 'site=south', CREDENTIAL: 'none' });
    expect(rows.find((r) => r.ID === 'pump-1')).toMatchObject({ TYPE: 'pump', LABELS: 'site=north,zone=a=b' });
    expect(JSON.parse(filtered).map((d: { id: string }) => d.id)).toEqual(['pump-1']);
    expect(JSON.parse(got)).toEqual(created);
    expect(table.split('\n')[0]).toMatch(/^ID +NAME +TYPE +STATUS +CREDENTIAL +LABELS +LAST SEEN$/);

    const updated = JSON.parse(await ok(['devices', 'update', 'fan-1', '--name', 'Fan 1', '-o', 'json']));
    expect(updated).toMatchObject({ id: 'fan-1', name: 'Fan 1', labels: { site: 'south' } });
  });

  it('issues a device credential limited to its own subjects', async () => {
    const creds = path.join(configHome, 'pump-1.creds');
    const credential = JSON.parse(await ok(['credentials', 'issue', 'pump-1', '--expires', '30d', '--kind', 'nats', '--creds', creds, '-o', 'json']));
    expect(credential.token).toMatch(/^eyJ/);
    // A NATS credential: the server refuses it over MQTT, and the JWT is not bearer: it logs in only with the seed.
    const claims = JSON.parse(Buffer.from(credential.token.split('.')[1], 'base64url').toString()).nats;
    expect(claims.allowed_connection_types).toEqual(['STANDARD']);
    expect(claims.bearer_token).toBe(false);
    expect(credential.seed).toMatch(/^SU[A-Z2-7]{56}$/);
    // The creds file nats.js and the nats CLI read: the JWT and the seed, private.
    const file = fs.readFileSync(creds, 'utf8');
    expect(file).toContain(`-----BEGIN NATS USER JWT-----\n${credential.token}\n`);
    expect(file).toContain(`-----BEGIN USER NKEY SEED-----\n${credential.seed}\n`);
    expect(fs.statSync(creds).mode & 0o777).toBe(0o600);
    expect(credential.publishSubjects).toContain(`iot.${tenant.tenantId}.dev.pump-1.tel`);
    expect(Date.parse(credential.expireTime) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(JSON.parse(await ok(['devices', 'get', 'pump-1', '-o', 'json'])).credentialState).toBe('CREDENTIAL_STATE_ACTIVE');
  });

  it('reads the latest value, tails live points and exports history to CSV and NDJSON', async () => {
    const world = mesh.monitoring;
    await world.registerDevice(tenant.tenantId, 'pump-1');
    // Whole minutes, so each point starts its own 1-minute history bucket.
    const start = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    const points = Array.from({ length: 5 }, (_, i) => ({ metric: 'pressure', time: new Date(start + i * 60_000).toISOString(), numberValue: 1000 + i }));
    await world.publish(tenant.tenantId, 'pump-1', jsonPayload({ messageId: 'cli-seed', points }));
    await eventually(async () => (await world.rowCount(tenant.tenantId)) >= 5, 'stored points');

    const file = path.join(configHome, 'pressure.csv');
    const [latest, history, exported, ndjson] = await Promise.all([
      ok(['telemetry', 'latest', 'pump-1', '-o', 'json']),
      ok(['telemetry', 'history', 'pump-1', '--metric', 'pressure', '--from', '1h', '--bucket', '1m', '--aggregation', 'max,count', '-o', 'csv']),
      iotctl(['export', 'pump-1', '--from', '1h', '--file', file]),
      ok(['export', 'pump-1', '--from', '1h', '--format', 'ndjson', '--quiet']),
    ]);
    expect(JSON.parse(latest)).toEqual([{ deviceId: 'pump-1', metric: 'pressure', time: points[4].time, value: { numberValue: 1004 } }]);

    const buckets = parseCsv(history, { columns: true }) as Record<string, string>[];
    expect(buckets.filter((b) => b.AGGREGATION === 'max').map((b) => [b.START, b.VALUE])).toEqual(points.map((p) => [p.time, String(p.numberValue)]));
    expect(buckets.filter((b) => b.AGGREGATION === 'count').map((b) => b.VALUE)).toEqual(['1', '1', '1', '1', '1']);

    expect(exported.code).toBe(0);
    expect(exported.stdout).toBe('');
    expect(exported.stderr).toMatch(new RegExp(`exported \\d+ B to ${file}`));
    expect(fs.existsSync(`${file}.partial`)).toBe(false);
    // The server's file (ExportPoints), written chunk by chunk.
    const rows = parseCsv(fs.readFileSync(file, 'utf8'), { columns: true }) as Record<string, string>[];
    expect(rows.map((r) => [r.time, r.device_id, r.metric, r.number_value])).toEqual(points.map((p) => [p.time, 'pump-1', 'pressure', String(p.numberValue)]));
    expect(ndjson.trim().split('\n').map((line) => JSON.parse(line).number_value)).toEqual([1000, 1001, 1002, 1003, 1004]);

    // tail: published until the stream (once subscribed) shows one, then it stops by itself with --count.
    const tail = iotctl(['telemetry', 'tail', 'pump-1', '--count', '1', '-o', 'json']);
    let done = false;
    void tail.finally(() => (done = true));
    for (let i = 0; !done && i < 100; i++) {
      await world.publish(tenant.tenantId, 'pump-1', jsonPayload({ points: [{ metric: 'pressure', numberValue: 2000 + i }] }));
      await new Promise((r) => setTimeout(r, 200));
    }
    const tailed = await tail;
    expect(tailed.code).toBe(0);
    expect(JSON.parse(tailed.stdout.trim())).toMatchObject({ deviceId: 'pump-1', metric: 'pressure', value: { numberValue: expect.any(Number) } });
  });

  it('manages alert rules, lists and acknowledges the alert a rule raised, and manages users', async () => {
    const [rule, user] = await Promise.all([
      ok(['alerts', 'rules', 'create', '--name', 'overpressure', '--metric', 'pressure', '--device-id', 'pump-1', '--above', '5000', '--severity', 'critical', '-o', 'json']).then(JSON.parse),
      ok(['users', 'create', '--email', `new@${tenant.tenantName}.example.test`, '--display-name', 'New', '--role', 'viewer', '--password-stdin', '-o', 'json'], { stdin: 'a-long-enough-password-1\n' }).then(JSON.parse),
    ]);
    expect(rule).toMatchObject({ name: 'overpressure', metric: 'pressure', deviceIds: ['pump-1'], threshold: { comparison: 'COMPARISON_GREATER_THAN', threshold: 5000 }, severity: 'SEVERITY_CRITICAL', enabled: true });
    expect(user).toMatchObject({ email: `new@${tenant.tenantName}.example.test`, role: 'ROLE_VIEWER' });

    const [rules, users, twoConditions] = await Promise.all([
      ok(['alerts', 'rules', 'list']),
      ok(['users', 'list', '-o', 'csv']),
      iotctl(['alerts', 'rules', 'create', '--name', 'x', '--metric', 'm', '--above', '1', '--absent-for', '5m']),
    ]);
    expect(rules).toMatch(new RegExp(`^${rule.id} +overpressure +pressure +> 5000 +critical +yes +pump-1`, 'm'));
    expect((parseCsv(users, { columns: true }) as Record<string, string>[]).map((u) => u.EMAIL)).toContain(user.email);
    expect(twoConditions.code).toBe(1);
    expect(twoConditions.stderr).toContain('give exactly one condition');

    await mesh.monitoring.publish(tenant.tenantId, 'pump-1', jsonPayload({ points: [{ metric: 'pressure', numberValue: 9000 }] }));
    const alert = await eventually(async () => {
      const alerts = JSON.parse(await ok(['alerts', 'list', '--unacknowledged', '-o', 'json']));
      return alerts.find((a: { ruleId: string }) => a.ruleId === rule.id);
    }, 'the raised alert', 30_000);
    expect(alert).toMatchObject({ deviceId: 'pump-1', state: 'ALERT_STATE_RAISED', value: 9000 });
    const acked = JSON.parse(await ok(['alerts', 'ack', alert.id, '-o', 'json']));
    expect(acked.acknowledgedBy).toBeTruthy();

    await Promise.all([ok(['alerts', 'rules', 'delete', rule.id]), ok(['users', 'delete', user.id])]);
    const [rulesAfter, usersAfter] = await Promise.all([ok(['alerts', 'rules', 'list', '-o', 'json']), ok(['users', 'list', '-o', 'json'])]);
    expect(JSON.parse(rulesAfter)).toEqual([]);
    expect(JSON.parse(usersAfter).map((u: { id: string }) => u.id)).not.toContain(user.id);
  });

  it('exits with the documented codes and prints the server\'s message and field violations', async () => {
    const [unknown, badLabel, invalid, noSession] = await Promise.all([
      iotctl(['devices', 'get', 'no-such-device']),
      iotctl(['devices', 'create', '--name', 'x', '--label', 'novalue']),
      iotctl(['devices', 'create', '--id', 'Not A Valid Id!', '--name', 'x']),
      iotctl(['whoami'], { env: { XDG_CONFIG_HOME: path.join(configHome, 'nobody') } }),
    ]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^error: .*no-such-device.*not found \(NOT_FOUND\)$/m);
    expect(badLabel.code).toBe(1);
    expect(badLabel.stderr).toContain('expected key=value, got "novalue"');
    expect(invalid.code).toBe(3);
    expect(invalid.stderr).toMatch(/\(INVALID_ARGUMENT\)\n {2}device\.id: /);
    expect(noSession.code).toBe(5);
    expect(noSession.stderr).toContain('not logged in');
  });

  it('works with an API key from --api-key or IOTCTL_API_KEY, and not once it is revoked', async () => {
    const created = JSON.parse(await ok(['api-keys', 'create', '--name', 'ci', '--role', 'viewer', '-o', 'json']));
    expect(created.secret).toBeTruthy();
    const keyEnv = { XDG_CONFIG_HOME: path.join(configHome, 'script'), IOTCTL_API_KEY: created.secret };
    const [whoami, list, denied, keys] = await Promise.all([
      ok(['whoami', '-o', 'json'], { env: keyEnv }),
      ok(['--api-key', created.secret, 'devices', 'list', '-o', 'json'], { env: { XDG_CONFIG_HOME: keyEnv.XDG_CONFIG_HOME } }),
      iotctl(['devices', 'delete', 'pump-1'], { env: keyEnv }),
      ok(['api-keys', 'list', '-o', 'csv']),
    ]);
    expect(JSON.parse(whoami)).toMatchObject({ kind: 'PRINCIPAL_KIND_API_KEY', id: created.apiKey.id, role: 'ROLE_VIEWER' });
    expect(JSON.parse(list).map((d: { id: string }) => d.id).sort()).toEqual(['fan-1', 'pump-1']);
    expect(denied.code).toBe(6);
    expect((parseCsv(keys, { columns: true }) as Record<string, string>[]).map((k) => k.ID)).toContain(created.apiKey.id);

    await ok(['api-keys', 'revoke', created.apiKey.id]);
    const revoked = await iotctl(['whoami'], { env: keyEnv });
    expect(revoked.code).toBe(5);
  });

  it('refreshes an expired access token with the refresh token, and logs out', async () => {
    const before = storedSession();
    fs.writeFileSync(credentialsFile(), JSON.stringify({ version: 1, sessions: { [mesh.addresses.signing]: { ...before, accessTokenExpireTime: new Date(Date.now() - 1000).toISOString() } } }), { mode: 0o600 });
    expect(JSON.parse(await ok(['whoami', '-o', 'json'])).id).toBe(tenant.admin.userId);
    const after = storedSession();
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect(Date.parse(after.accessTokenExpireTime)).toBeGreaterThan(Date.now());

    expect(await ok(['logout'])).toContain(`logged out of ${tenant.tenantName}`);
    expect(storedSession()).toBeUndefined();
    expect((await iotctl(['whoami'])).code).toBe(5);
  });
});
