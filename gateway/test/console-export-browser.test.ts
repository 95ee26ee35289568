import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { Browser } from 'playwright-core';
import { repoPath, repoRoot } from '@iot-mesh/runtime';
import { eventually, jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { startMeshForTest, TestMesh } from '../../testing/mesh';
import { TestTenant } from '../../testing/signing';
import { launchChromium, rest, startTestGateway } from './gateway-harness';

const execFileAsync = promisify(execFile);
jest.setTimeout(180_000);

/* The console's Export page in Chromium: a device's points downloaded through /v1/export, and retention policies set and listed. */
describe('console export page in Chromium', () => {
  let staticDir: string;
  let mesh: TestMesh;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  let browser: Browser;

  beforeAll(async () => {
    staticDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-console-export-'));
    const built = execFileAsync(process.execPath, [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web', '--outDir', staticDir, '--emptyOutDir', '--logLevel', 'warn'], { cwd: repoRoot() });
    mesh = await startMeshForTest();
    tenant = await mesh.signing.createTenant();
    await built;
    gateway = await startTestGateway(mesh.addresses, ['*'], staticDir);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await mesh?.stop();
    if (staticDir) fs.rmSync(staticDir, { recursive: true, force: true });
  });

  it('admin: downloads a device’s points as CSV and sets a device type’s retention', async () => {
    await mesh.monitoring.registerDevice(tenant.tenantId, 'flow-1', { type: 'meter' });
    const start = Date.now() - 30 * 60_000;
    const points = Array.from({ length: 6 }, (_, i) => ({ metric: 'flow', time: new Date(start + i * 60_000).toISOString(), numberValue: 10 + i }));
    await mesh.monitoring.publish(tenant.tenantId, 'flow-1', jsonPayload({ messageId: 'console-export', points }));
    await eventually(async () => (await mesh.monitoring.rowCount(tenant.tenantId)) >= points.length, 'stored points');

    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
    try {
      const page = await context.newPage();
      await page.goto(gateway.base);
      await page.fill('input[name=tenant]', tenant.tenantName);
      await page.fill('input[name=email]', tenant.admin.email);
      await page.fill('input[name=password]', tenant.admin.password);
      await page.click('button[type=submit]');
      await page.getByTestId('whoami').waitFor();
      await page.click('header a[href="#/export"]');

      await page.getByLabel('device ids').fill('flow-1');
      await page.getByLabel('format').selectOption('csv');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download' }).click()]);
      const file = path.join(staticDir, 'download.csv');
      await download.saveAs(file);
      expect(download.suggestedFilename()).toMatch(/\.csv$/);
      const rows = parseCsv(fs.readFileSync(file, 'utf8'), { columns: true }) as Record<string, string>[];
      expect(rows.map((r) => [r.device_id, r.metric, r.number_value])).toEqual(points.map((p) => ['flow-1', 'flow', String(p.numberValue)]));

      const table = page.getByRole('table', { name: 'retention policies' });
      await table.getByText('(tenant default)').waitFor();
      await page.getByLabel('retention device type').fill('meter');
      await page.getByLabel('raw days', { exact: true }).fill('5');
      await page.getByRole('button', { name: 'Set' }).click();
      await table.getByRole('row', { name: /meter\s+5\s+400 \(inherited\)/ }).waitFor();
      const listed = await rest(gateway.base, 'GET', '/v1/retention-policies', { authorization: tenant.viewer.authorization });
      expect(listed.json.policies).toEqual([expect.objectContaining({ effectiveRawDays: 30 }), expect.objectContaining({ deviceType: 'meter', rawDays: 5, effectiveRawDays: 5 })]);
    } finally {
      await context.close();
    }
  });
});
