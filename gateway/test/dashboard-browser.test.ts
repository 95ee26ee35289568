import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { MqttClient } from 'mqtt';
import { Browser, Page } from 'playwright-core';
import { repoPath, repoRoot } from '@iot-mesh/runtime';
import { deviceService } from '@iot-mesh/device';
import { createMonitoringService } from '@iot-mesh/monitoring';
import { OperatorNats, startOperatorNats } from '../../testing/nats-operator';
import { createTestDatabase, TestDatabase } from '../../testing/postgres';
import { startTestService, TestService } from '../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { TEST_REDIS_URL } from '../../testing/test-services';
import { rest, startTestGateway, launchChromium, logInOnPage } from './gateway-harness';

/** The flags node-svc machines need for headless Debian chromium (closed network, root). */
const ARTIFACTS = repoPath('test-results');
const execFileAsync = promisify(execFile);

jest.setTimeout(120_000);

/*
 * The dashboard in a real browser against the real platform: signing,
 * device and monitoring services, an operator-mode nats-server with MQTT, the
 * Node gateway serving a fresh Vite build. A device publishes over MQTT with
 * the credential the dashboard showed.
 */
describe('dashboard in Chromium', () => {
  let staticDir: string;
  let signing: TestSigning;
  let nats: OperatorNats;
  let databases: TestDatabase[] = [];
  let services: TestService<never>[] = [];
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  let browser: Browser;
  let page: Page;
  let device: MqttClient | undefined;

  beforeAll(async () => {
    staticDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-dashboard-'));
    // The dashboard is built from the current sources while the platform starts.
    const built = execFileAsync(process.execPath, [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web', '--outDir', staticDir, '--emptyOutDir', '--logLevel', 'warn'], { cwd: repoRoot() });
    const [deviceDb, monitoringDb] = await Promise.all([createTestDatabase('iot_gw_device'), createTestDatabase('iot_gw_monitoring')]);
    databases = [deviceDb, monitoringDb];
    [signing, nats] = await Promise.all([startSigningForTest(), startOperatorNats({ mqtt: true, jetstream: true })]);
    const [deviceSvc, monitoringSvc] = await Promise.all([
      startTestService(deviceService, { DATABASE_URL: deviceDb.url, REDIS_URL: TEST_REDIS_URL, SIGNING_ADDRESS: signing.address, ...nats.deviceEnv() }),
      startTestService(createMonitoringService(), {
        DATABASE_URL: monitoringDb.url,
        REDIS_URL: TEST_REDIS_URL,
        SIGNING_ADDRESS: signing.address,
        WRITER_BATCH_WAIT_MS: '20',
        ALERT_CHECK_INTERVAL_MS: '100',
        ...nats.serviceEnv(),
      }),
    ]);
    services = [deviceSvc as TestService<never>, monitoringSvc as TestService<never>];
    tenant = await signing.createTenant();
    await built;
    gateway = await startTestGateway({ signing: signing.address, device: deviceSvc.address, monitoring: monitoringSvc.address }, ['*'], staticDir);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await device?.endAsync().catch(() => undefined);
    await browser?.close();
    await gateway?.close();
    for (const s of services.reverse()) await s.stop().catch(() => undefined);
    await signing?.stop();
    await nats?.stop();
    for (const db of databases) await db.drop().catch(() => undefined);
    if (staticDir) fs.rmSync(staticDir, { recursive: true, force: true });
  });

  it('logs in, creates a device, shows it online, charts its MQTT telemetry live and in history, round-trips a command and acknowledges an alert', async () => {
    const rule = await rest(gateway.base, 'POST', '/v1/alert-rules', {
      authorization: tenant.admin.authorization,
      body: { name: 'too hot', metric: 'temperature', threshold: { comparison: 'COMPARISON_GREATER_THAN', threshold: 100 }, severity: 'SEVERITY_CRITICAL', enabled: true },
    });
    expect(rule.status).toBe(200);

    // Log in.
    await logInOnPage(page, gateway.base, tenant.tenantName, tenant.admin);
    await page.getByTestId('device-list').waitFor();

    // Create a device; its credential is shown once, with a mosquitto_pub line.
    await page.fill('[data-testid=create-device] input[name=name]', 'greenhouse-1');
    await page.fill('[data-testid=create-device] input[name=type]', 'weather');
    await page.click('[data-testid=create-device] button[type=submit]');
    const credential = page.getByTestId('credential');
    await credential.waitFor();
    const deviceId = (await credential.getAttribute('data-device-id'))!;
    const mqttUrl = (await credential.getAttribute('data-mqtt-url'))!;
    const token = await page.getByTestId('credential-token').inputValue();
    const pubLine = await page.getByTestId('mosquitto-pub').inputValue();
    expect(pubLine).toContain(`-t 'iot/${tenant.tenantId}/dev/${deviceId}/tel'`);
    expect(pubLine).toContain(token);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-credential.png'), fullPage: true });
    await page.getByRole('button', { name: 'Done' }).click();
    await expectText(page, `device-status-${deviceId}`, 'offline', 'unknown');

    // The device connects over MQTT with that credential: the list turns it online, live.
    const topic = `iot/${tenant.tenantId}/dev/${deviceId}`;
    device = await mqtt.connectAsync(mqttUrl, { clientId: deviceId, username: deviceId, password: token, protocolVersion: 4, reconnectPeriod: 0 });
    await device.subscribeAsync(`${topic}/cmd`, { qos: 1 });
    device.on('message', (_topic, payload) => {
      const request = JSON.parse(payload.toString()) as { commandId: string; name: string };
      void device!.publishAsync(`${topic}/cmd/reply`, JSON.stringify({ commandId: request.commandId, ok: true, result: { did: request.name } }), { qos: 1 });
    });
    await expectText(page, `device-status-${deviceId}`, 'online');

    // Device page: the live chart shows published values.
    await page.click(`[data-testid=device-row-${deviceId}] a`);
    await page.getByTestId('live-latest').waitFor();
    // The connection history shows the open MQTT session.
    await page.getByTestId('session-list').getByText('connected', { exact: true }).waitFor();
    const publish = (value: number) => device!.publishAsync(`${topic}/tel`, JSON.stringify({ points: [{ metric: 'temperature', numberValue: value }] }), { qos: 1 });
    // Until the live stream is subscribed a value may pass unseen; once one shows, the next must show within 2 s.
    await publishUntilShown(page, publish, 20.5);
    const published = Date.now();
    await publish(21.5);
    await page.getByTestId('live-value-temperature').filter({ hasText: '21.5' }).waitFor({ timeout: 2000 });
    const latencyMs = Date.now() - published;
    const chart = page.getByTestId('metric-chart-temperature');
    await waitFor(async () => Number(await chart.getAttribute('data-live-points')) >= 2, 'two live points on the temperature chart');

    // History shows the stored points (the writer batches into PostgreSQL).
    await waitFor(async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.waitForTimeout(300);
      return Number(await chart.getAttribute('data-history-points')) > 0;
    }, 'history points');

    // A command round-trips through the device.
    await page.fill('[data-testid=command-form] input[name=command-name]', 'reboot');
    await page.click('[data-testid=command-form] button[type=submit]');
    await expectText(page, 'command-status', 'SUCCEEDED');
    expect(await page.getByTestId('command-result').textContent()).toContain('"did": "reboot"');

    // Desired state is saved with a new version.
    await page.getByTestId('desired-editor').fill('{"interval": 30}');
    await page.getByRole('button', { name: 'Save desired' }).click();
    await page.getByText('saved as version 1').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-device.png'), fullPage: true });

    // A hot reading raises an alert; it is acknowledged from the alerts page.
    await publish(150);
    await page.click('header a[href="#/alerts"]');
    const ack = page.locator('[data-testid^=alert-ack-]').first();
    await ack.waitFor();
    await ack.click();
    await page.locator('[data-testid^=alert-acked-]').first().waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-alerts.png'), fullPage: true });
    const alerts = await rest(gateway.base, 'GET', '/v1/alerts', { authorization: tenant.viewer.authorization });
    expect(alerts.json.alerts[0]).toMatchObject({ deviceId, acknowledgedBy: expect.any(String) });
    console.log(`live chart showed an MQTT publish after ${latencyMs} ms`);
  });
});

async function waitFor(probe: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
  }
}

async function expectText(page: Page, testId: string, ...accepted: string[]): Promise<void> {
  const locator = page.getByTestId(testId);
  await waitFor(async () => accepted.includes(((await locator.textContent({ timeout: 5000 }).catch(() => '')) ?? '').trim()) || (await page.waitForTimeout(100), false), `${testId} to read ${accepted.join(' or ')}`);
}

async function publishUntilShown(page: Page, publish: (value: number) => Promise<unknown>, value: number): Promise<void> {
  const shown = page.getByTestId('live-value-temperature').filter({ hasText: String(value) });
  await waitFor(async () => {
    await publish(value);
    return shown.waitFor({ timeout: 300 }).then(
      () => true,
      () => false,
    );
  }, 'the live stream to carry a first value');
}
