import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fromBinary } from '@bufbuild/protobuf';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { connect, credsAuthenticator } from 'nats';
import { repoPath, repoRoot } from '@iot-mesh/runtime';
import { jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { QueryHistoryRequestSchema } from '../../gen/es/iot/monitoring/v1/telemetry_pb';
import { startMeshForTest, TestMesh } from '../../testing/mesh';
import { TestTenant, TestUser } from '../../testing/signing';
import { rest, startTestGateway, launchChromium, logInOnPage, screenshot } from './gateway-harness';

const execFileAsync = promisify(execFile);

jest.setTimeout(120_000);

/*
 * The console's pages in Chromium against signing, device and monitoring
 * (telemetry published straight to monitoring's stream): what admin, viewer
 * and platform admin each see and may do, changes made in the UI checked
 * through the REST API, drag-to-zoom checked by the request it sends.
 */
describe('console in Chromium', () => {
  let staticDir: string;
  let mesh: TestMesh;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    staticDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-console-'));
    const built = execFileAsync(process.execPath, [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web', '--outDir', staticDir, '--emptyOutDir', '--logLevel', 'warn'], { cwd: repoRoot() });
    mesh = await startMeshForTest();
    tenant = await mesh.signing.createTenant();
    await built;
    gateway = await startTestGateway(mesh.addresses, ['*'], staticDir);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await gateway?.close();
    await mesh?.stop();
    if (staticDir) fs.rmSync(staticDir, { recursive: true, force: true });
  });

  async function logIn(tenantName: string, user: TestUser): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    contexts.push(context);
    const page = await context.newPage();
    // Keeps the body of every QueryHistory call the page makes (this Chromium reports no network events to Playwright).
    await page.addInitScript(() => {
      // Runs in the page; the test's tsconfig has no DOM types, so the page's globals are described here.
      const page = globalThis as unknown as { fetch: typeof fetch; historyRequests: number[][] };
      const sent: number[][] = [];
      page.historyRequests = sent;
      const original = page.fetch.bind(globalThis);
      page.fetch = (input, init) => {
        const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
        if (url.endsWith('/iot.monitoring.v1.TelemetryService/QueryHistory') && init?.body instanceof Uint8Array) sent.push([...init.body]);
        return original(input, init);
      };
    });
    await logInOnPage(page, gateway.base, tenantName, user);
    return page;
  }
  const api = (method: string, url: string, body?: unknown) => rest(gateway.base, method, url, { authorization: tenant.admin.authorization, body });
  const publish = (deviceId: string, points: unknown[]) => mesh.monitoring.publish(tenant.tenantId, deviceId, jsonPayload({ points }));

  it('admin: devices (labels checked, server-side filter, credential for a REST device), device pages per URL, small multiples with zoom, empty ranges', async () => {
    const page = await logIn(tenant.tenantName, tenant.admin);
    expect(await page.getByTestId('whoami').getAttribute('data-role')).toBe('admin');
    await page.getByTestId('device-list').waitFor();

    // A label without '=' is refused, not stored as "undefined".
    await page.fill('[data-testid=create-device] input[name=name]', 'bad-labels');
    await page.fill('[data-testid=create-device] input[name=labels]', 'site');
    await page.click('[data-testid=create-device] button[type=submit]');
    await page.getByText('label "site" needs the form key=value').waitFor();
    expect((await api('GET', '/v1/devices?namePrefix=bad-labels')).json.devices ?? []).toEqual([]);
    await page.fill('[data-testid=create-device] input[name=labels]', 'site=north, floor=2');
    // A NATS credential (the server then refuses it over MQTT).
    await page.selectOption('[data-testid=create-device] select[name=kind]', { label: 'NATS' });
    await page.click('[data-testid=create-device] button[type=submit]');
    await page.getByTestId('credential').waitFor();
    const token = await page.getByTestId('credential-token').inputValue();
    expect(JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).nats.allowed_connection_types).toEqual(['STANDARD']);
    // It is not bearer: the panel gives a creds file (token and seed), no mosquitto_pub line, and the file connects.
    expect(await page.getByTestId('mosquitto-pub').count()).toBe(0);
    const creds = await page.getByTestId('credential-creds').inputValue();
    expect(creds).toContain(token);
    expect(creds).toMatch(/-----BEGIN USER NKEY SEED-----\nSU[A-Z0-9]+\n/);
    const deviceNats = await connect({ servers: (await page.getByTestId('credential').getAttribute('data-nats-url'))!, authenticator: credsAuthenticator(new TextEncoder().encode(creds)), reconnect: false });
    await deviceNats.close();
    await page.getByRole('button', { name: 'Done' }).click();
    const created = (await api('GET', '/v1/devices?namePrefix=bad-labels')).json.devices;
    expect(created).toEqual([expect.objectContaining({ labels: { site: 'north', floor: '2' }, credentialState: 'CREDENTIAL_STATE_ACTIVE' })]);

    // Filters go to the server.
    const pumpType = await api('POST', '/v1/deviceTypes', {
      name: 'pump',
      metrics: [{ name: 'temperature', unit: '°C', kind: 'METRIC_KIND_GAUGE' }],
      desiredSchema: { type: 'object', properties: { setpoint: { type: 'number' }, mode: { enum: ['eco', 'boost'] } } },
      commands: [{ name: 'flush', parametersSchema: { type: 'object', properties: { seconds: { type: 'integer' } } } }],
    });
    expect(pumpType.status).toBe(200);
    const batch = await api('POST', '/v1/devices:batchCreate', { devices: [{ name: 'pump-a', labels: { site: 'south' }, deviceTypeId: pumpType.json.deviceType.id }, { name: 'pump-b', labels: { site: 'south' } }, { name: 'fan-c', labels: { site: 'west' } }] });
    const [pumpA, pumpB] = batch.json.devices as Array<{ id: string }>;
    await page.fill('[data-testid=device-filters] input[name=filterLabels]', 'site=south');
    await page.click('[data-testid=device-filters] button[type=submit]');
    await waitFor(async () => (await page.getByTestId('device-list').getAttribute('data-rows')) === '2', 'two filtered rows');
    await page.getByTestId(`device-row-${pumpA.id}`).waitFor();
    await screenshot(page, 'devices');

    // Telemetry: numbers over the last 50 minutes, a string and a boolean.
    await mesh.monitoring.registerDevice(tenant.tenantId, pumpA.id);
    await mesh.monitoring.registerDevice(tenant.tenantId, pumpB.id);
    const now = Date.now();
    const history = Array.from({ length: 50 }, (_, i) => ({ metric: 'temperature', numberValue: 20 + (i % 5), time: new Date(now - (50 - i) * 60_000).toISOString() }));
    await publish(pumpA.id, [...history, { metric: 'pressure', numberValue: 1013, time: new Date(now - 30 * 60_000).toISOString() }, { metric: 'state', stringValue: 'pumping' }, { metric: 'door_open', boolValue: true }]);
    // pump-b's only reading is two hours old: the default hour is empty.
    await publish(pumpB.id, [{ metric: 'pressure', numberValue: 990, time: new Date(now - 2 * 3_600_000).toISOString() }]);
    await waitFor(async () => ((await api('GET', `/v1/telemetry/latest?deviceIds=${pumpA.id}&deviceIds=${pumpB.id}`)).json.points ?? []).length === 5, 'stored telemetry');

    // The device created over REST gets its credential from the console.
    await page.click(`[data-testid=device-row-${pumpA.id}] a`);
    await expectText(page, 'credential-state', 'none');
    await page.getByRole('button', { name: 'Issue credential' }).click();
    await page.getByTestId('credential-token').waitFor();
    expect((await api('GET', `/v1/devices/${pumpA.id}`)).json.device.credentialState).toBe('CREDENTIAL_STATE_ACTIVE');
    await page.getByRole('button', { name: 'Done' }).click();

    // Values as they are; one chart per numeric metric.
    await expectText(page, 'live-value-state', 'pumping');
    await expectText(page, 'live-value-door_open', 'true');
    const chart = page.getByTestId('metric-chart-temperature');
    await page.getByTestId('metric-chart-pressure').waitFor();
    await waitFor(async () => Number(await chart.getAttribute('data-history-points')) > 10, 'temperature history');
    expect(await page.getByTestId('metric-chart-state').count()).toBe(0);
    // The unit comes from the device's type, and so do the forms for desired state and commands.
    await page.getByTestId('metric-temperature').getByText('(°C)').waitFor();
    await page.fill('[data-testid=desired-fields] input[name=field-setpoint]', '21.5');
    await page.selectOption('[data-testid=desired-fields] select[name=field-mode]', { label: 'eco' });
    await page.getByRole('button', { name: 'Save desired' }).click();
    await page.getByText('saved as version 1').waitFor();
    expect((await api('GET', `/v1/devices/${pumpA.id}/twin`)).json.twin.desired).toEqual({ setpoint: 21.5, mode: 'eco' });
    await page.fill('[data-testid=command-form] input[name=command-name]', 'flush');
    await page.fill('[data-testid=command-fields] input[name=field-seconds]', '5');
    expect(JSON.parse(await page.inputValue('[data-testid=command-form] input[name=command-payload]'))).toEqual({ seconds: 5 });
    await screenshot(page, 'device');

    // Drag across the middle 40 % of the chart: the page asks for that stretch, at a resolution fitting the width.
    const askedStart = Number(await chart.getAttribute('data-asked-start'));
    const askedEnd = Number(await chart.getAttribute('data-asked-end'));
    const askedPoints = Number(await chart.getAttribute('data-asked-max-points'));
    await chart.scrollIntoViewIfNeeded();
    const over = (await chart.locator('.u-over').boundingBox())!;
    expect(askedPoints).toBe(Math.floor(over.width / 3));
    await page.mouse.move(over.x + over.width * 0.3, over.y + over.height / 2);
    await page.mouse.down();
    await page.mouse.move(over.x + over.width * 0.5, over.y + over.height / 2, { steps: 4 });
    await page.mouse.move(over.x + over.width * 0.7, over.y + over.height / 2, { steps: 4 });
    await page.mouse.up();
    // The request leaves after the click's render: wait for a temperature request other than the first window's.
    const temperatureRequests = async () =>
      (await page.evaluate(() => (globalThis as unknown as { historyRequests: number[][] }).historyRequests))
        .map((body) => decodeHistoryRequest(Buffer.from(body)))
        .filter((r) => r.metrics[0] === 'temperature' && Math.abs(Number(r.timeRange!.start!.seconds) - askedStart) > 5);
    await waitFor(async () => (await temperatureRequests()).length > 0, 'the zoomed request');
    const [zoomed] = await temperatureRequests();
    const span = askedEnd - askedStart;
    const start = Number(zoomed.timeRange!.start!.seconds);
    const end = Number(zoomed.timeRange!.end!.seconds);
    expect(Math.abs(start - (askedStart + 0.3 * span))).toBeLessThan(span * 0.02);
    expect(Math.abs(end - (askedStart + 0.7 * span))).toBeLessThan(span * 0.02);
    expect(zoomed.maxPoints).toBe(askedPoints);
    await page.getByTestId('zoom-reset').waitFor();
    await screenshot(page, 'device-zoomed');

    // Device to device by URL: nothing of pump-a stays; pump-b's empty hour says so.
    await page.goto(`${gateway.base}/#/devices/${pumpB.id}`);
    await expectText(page, 'device-name', 'pump-b online', 'pump-b offline', 'pump-b unknown', 'pump-b');
    await page.getByTestId('metric-empty-pressure').waitFor();
    expect(await page.getByTestId('live-value-state').count()).toBe(0);
    expect(await page.getByTestId('metric-chart-temperature').count()).toBe(0);
    // An unknown id: only the error, no name or twin of the previous device.
    await page.goto(`${gateway.base}/#/devices/no-such-device`);
    await page.getByTestId('device-error').filter({ hasText: 'NotFound' }).waitFor();
    expect(await page.getByText('pump-b').count()).toBe(0);
    expect(await page.getByTestId('desired-editor').count()).toBe(0);
    await screenshot(page, 'device-not-found');

    // A payload that is not telemetry becomes a dead letter, counted by reason on the overview.
    await mesh.monitoring.publish(tenant.tenantId, pumpA.id, new TextEncoder().encode('{"points": "not a list"}'));
    await waitFor(async () => ((await api('GET', '/v1/dead-letters')).json.deadLetters ?? []).length === 1, 'the dead letter');

    // A second tab of the same browser is signed in already.
    const second = await page.context().newPage();
    await second.goto(`${gateway.base}/#/overview`);
    await second.getByTestId('whoami').waitFor();
    await waitFor(async () => (await second.getByTestId('overview-offline').textContent()) !== '…', 'overview counts');
    expect(await second.getByTestId('overview-offline').textContent()).toBe('4');
    expect(await second.getByTestId('overview-dead-letters').locator('li strong').first().textContent()).toBe('1');
    await screenshot(second, 'overview');
    await second.close();
  });

  it('admin: alert rules created, edited, disabled and deleted in the UI, as the API sees them', async () => {
    const page = await logIn(tenant.tenantName, tenant.admin);
    await page.click('header a[href="#/alerts"]');
    const form = page.locator('[data-testid=rule-form]').first();
    await form.locator('input[name=rule-name]').fill('hot pump');
    await form.locator('input[name=rule-metric]').fill('temperature');
    await form.locator('input[name=rule-threshold]').fill('80');
    await form.locator('select[name=rule-severity]').selectOption({ label: 'critical' });
    await form.getByRole('button', { name: 'Create rule' }).click();
    await page.getByTestId('rule-row-hot pump').waitFor();
    const rules = async () => ((await api('GET', '/v1/alert-rules')).json.rules ?? []) as Array<{ name: string; enabled: boolean; severity: string; threshold?: { threshold: number } }>;
    expect(await rules()).toEqual([expect.objectContaining({ name: 'hot pump', severity: 'SEVERITY_CRITICAL', enabled: true, threshold: expect.objectContaining({ threshold: 80 }) })]);

    const row = page.getByTestId('rule-row-hot pump');
    await row.getByRole('button', { name: 'Edit' }).click();
    await page.locator('[data-testid=rule-form]').nth(1).locator('input[name=rule-threshold]').fill('90');
    await page.getByRole('button', { name: 'Save rule' }).click();
    await page.getByTestId('rule-row-hot pump').getByText('temperature > 90').waitFor();
    expect((await rules())[0].threshold?.threshold).toBe(90);

    await page.getByTestId('rule-row-hot pump').getByRole('button', { name: 'Disable' }).click();
    await page.getByTestId('rule-row-hot pump').getByRole('button', { name: 'Enable' }).waitFor();
    expect((await rules())[0].enabled ?? false).toBe(false);
    await screenshot(page, 'alerts');

    await page.getByTestId('rule-row-hot pump').getByRole('button', { name: 'Delete' }).click();
    // Deleting asks first (ConfirmButton).
    await page.getByTestId('rule-row-hot pump').getByRole('alertdialog').getByRole('button', { name: 'Confirm' }).click();
    await page.getByText('No rules.').waitFor();
    expect(await rules()).toEqual([]);
  });

  it('admin: users and roles, API keys with the secret shown once, the audit log; tenants only for platform admins', async () => {
    const page = await logIn(tenant.tenantName, tenant.admin);
    await page.click('header a[href="#/admin"]');
    await page.fill('[data-testid=create-user] input[name=user-email]', 'new.operator@example.test');
    await page.fill('[data-testid=create-user] input[name=user-password]', 'a long enough password 1');
    await page.locator('[data-testid=create-user] select').selectOption({ label: 'operator' });
    await page.click('[data-testid=create-user] button[type=submit]');
    await page.getByTestId('user-row-new.operator@example.test').waitFor();
    const users = async () => ((await api('GET', '/v1/users')).json.users ?? []) as Array<{ email: string; role: string }>;
    expect((await users()).find((u) => u.email === 'new.operator@example.test')?.role).toBe('ROLE_OPERATOR');
    await page.getByTestId('user-row-new.operator@example.test').locator('select').selectOption({ label: 'viewer' });
    await waitFor(async () => (await users()).find((u) => u.email === 'new.operator@example.test')?.role === 'ROLE_VIEWER', 'the role change');

    await page.fill('[data-testid=create-api-key] input[name=key-name]', 'ci-reader');
    await page.click('[data-testid=create-api-key] button[type=submit]');
    const secret = await page.getByTestId('api-key-secret').locator('textarea').inputValue();
    const me = await rest(gateway.base, 'GET', '/v1/auth/me', { authorization: `ApiKey ${secret}` });
    expect(me).toMatchObject({ status: 200, json: { principal: { name: 'ci-reader', role: 'ROLE_VIEWER' } } });
    await page.getByTestId('api-key-secret').getByRole('button', { name: 'Done' }).click();
    expect(await page.getByTestId('api-key-secret').count()).toBe(0);
    await page.getByTestId('api-key-row-ci-reader').getByRole('button', { name: 'Revoke' }).click();
    await page.getByTestId('api-key-row-ci-reader').getByText('revoked').waitFor();
    expect((await rest(gateway.base, 'GET', '/v1/auth/me', { authorization: `ApiKey ${secret}` })).status).toBe(401);

    await page.getByTestId('audit-card').getByRole('button', { name: 'Filter' }).click();
    await waitFor(async () => (await page.getByTestId('audit-list').locator('tbody tr').count()) > 0, 'audit events');
    expect(await page.getByTestId('tenants-card').count()).toBe(0);
    await screenshot(page, 'admin');

    const platform = await logIn('platform', mesh.signing.platformAdmin);
    await platform.click('header a[href="#/admin"]');
    await platform.fill('[data-testid=create-tenant] input[name=tenant-name]', 'console-made');
    await platform.fill('[data-testid=create-tenant] input[name=tenant-admin-email]', 'boss@example.test');
    await platform.fill('[data-testid=create-tenant] input[name=tenant-admin-password]', 'a long enough password 2');
    await platform.click('[data-testid=create-tenant] button[type=submit]');
    await platform.getByTestId('tenant-row-console-made').waitFor();
    const tenants = await rest(gateway.base, 'GET', '/v1/tenants', { authorization: mesh.signing.platformAdmin.authorization });
    expect(tenants.json.tenants.map((t: { name: string }) => t.name)).toContain('console-made');
    await screenshot(platform, 'admin-platform');
  });

  it('viewer: sees devices, telemetry, rules and alerts, and is offered nothing it may not do', async () => {
    await api('POST', '/v1/alert-rules', { name: 'viewer sees me', metric: 'temperature', threshold: { comparison: 'COMPARISON_GREATER_THAN', threshold: 1 }, severity: 'SEVERITY_WARNING', enabled: true });
    const page = await logIn(tenant.tenantName, tenant.viewer);
    expect(await page.getByTestId('whoami').getAttribute('data-role')).toBe('viewer');
    await page.getByTestId('device-list').waitFor();
    expect(await page.locator('header a[href="#/admin"]').count()).toBe(0);
    expect(await page.getByTestId('create-device').count()).toBe(0);
    const someDevice = (await api('GET', '/v1/devices?namePrefix=pump-a')).json.devices[0].id as string;
    await page.click(`[data-testid=device-row-${someDevice}] a`);
    await page.getByTestId('metric-chart-temperature').waitFor();
    expect(await page.getByRole('button', { name: /credential/i }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Save desired' }).count()).toBe(0);
    expect(await page.getByTestId('command-form').count()).toBe(0);
    await page.click('header a[href="#/alerts"]');
    await page.getByTestId('rule-row-viewer sees me').waitFor();
    expect(await page.getByTestId('rule-form').count()).toBe(0);
    expect(await page.getByRole('button', { name: /Edit|Delete|Disable|Acknowledge/ }).count()).toBe(0);
    await screenshot(page, 'alerts-viewer');
    // The admin page itself refuses, should the viewer type its URL.
    await page.goto(`${gateway.base}/#/admin`);
    await page.getByTestId('device-list').waitFor();
  });
});

function decodeHistoryRequest(body: Buffer | null) {
  // One gRPC-Web frame: a flag byte, a 4-byte length, the message.
  return fromBinary(QueryHistoryRequestSchema, new Uint8Array(body!.subarray(5)));
}

async function waitFor(probe: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function expectText(page: Page, testId: string, ...accepted: string[]): Promise<void> {
  const locator = page.getByTestId(testId);
  await waitFor(async () => accepted.includes(((await locator.textContent({ timeout: 5000 }).catch(() => '')) ?? '').trim().replace(/\s+/g, ' ')), `${testId} to read ${accepted.join(' or ')}`);
}
