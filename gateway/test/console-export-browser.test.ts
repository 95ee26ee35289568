import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { eventually, jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { ConsoleWorld, rest, startConsoleWorld } from './gateway-harness';

jest.setTimeout(180_000);

/* The console's Export page in Chromium: a device's points downloaded through /v1/export, and retention policies set and listed. */
describe('console export page in Chromium', () => {
  let world: ConsoleWorld;

  beforeAll(async () => {
    world = await startConsoleWorld();
  }, 120_000);

  afterAll(async () => {
    await world?.close();
  });

  it('admin: downloads a device’s points as CSV and sets a device type’s retention', async () => {
    const { mesh, tenant, gateway } = world;
    await mesh.monitoring.registerDevice(tenant.tenantId, 'flow-1', { type: 'meter' });
    const start = Date.now() - 30 * 60_000;
    const points = Array.from({ length: 6 }, (_, i) => ({ metric: 'flow', time: new Date(start + i * 60_000).toISOString(), numberValue: 10 + i }));
    await mesh.monitoring.publish(tenant.tenantId, 'flow-1', jsonPayload({ messageId: 'console-export', points }));
    await eventually(async () => (await mesh.monitoring.rowCount(tenant.tenantId)) >= points.length, 'stored points');

    const page = await world.logIn(tenant.admin);
    try {
      await page.click('header a[href="#/export"]');
      await page.getByLabel('device ids').fill('flow-1');
      await page.getByLabel('format').selectOption('csv');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download' }).click()]);
      expect(download.suggestedFilename()).toMatch(/\.csv$/);
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iot-export-')), 'download.csv');
      await download.saveAs(file);
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
      await page.context().close();
    }
  });
});
