import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { Page } from 'playwright-core';
import { eventually, jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { ConsoleWorld, rest, screenshot, startConsoleWorld } from './gateway-harness';

/** The live view's bound on lines per chart (MAX_LIVE_SERIES in gateway/web/src/live.tsx). */
const MAX_LIVE_SERIES = 8;

jest.setTimeout(150_000);

/*
 * A device group picked by name in the console, in Chromium against the
 * whole mesh: the Export page downloads exactly the group's devices, the
 * Alerts page stores a rule with the group's id, and the Live page charts the
 * group's telemetry as it arrives (a line per device, bounded; the server's
 * refusals shown), and the Groups page charts a metric's history across the
 * group's members. Every page's form controls have a label.
 */
describe('console group pickers in Chromium', () => {
  let world: ConsoleWorld;
  /** The group of NORTH's devices, made through the API. */
  let group: { id: string; name: string };
  const NORTH = Array.from({ length: MAX_LIVE_SERIES + 2 }, (_, i) => ({ id: `north-${i + 1}`, name: `North ${i + 1}`, labels: { site: 'north' } }));
  const SOUTH = { id: 'south-1', name: 'South 1', labels: { site: 'south' } };

  const api = (method: string, url: string, body?: unknown) => rest(world.gateway.base, method, url, { authorization: world.tenant.admin.authorization, body });
  const publish = (deviceId: string, points: unknown[]) => world.mesh.monitoring.publish(world.tenant.tenantId, deviceId, jsonPayload({ points }));

  beforeAll(async () => {
    world = await startConsoleWorld();
    const { mesh, tenant } = world;
    expect((await api('POST', '/v1/devices:batchCreate', { devices: [...NORTH, SOUTH] })).status).toBe(200);
    group = (await api('POST', '/v1/groups', { name: 'northern', selector: { matchLabels: { site: 'north' } } })).json.group;
    // Monitoring runs on its own NATS here: the group and devices enter its directories as the device service would put them.
    await mesh.monitoring.putGroup(tenant.tenantId, group.id, { site: 'north' });
    for (const d of [...NORTH, SOUTH]) await mesh.monitoring.registerDevice(tenant.tenantId, d.id, { labels: d.labels });
  }, 120_000);

  afterAll(async () => {
    await world?.close();
  });

  it('admin: Export downloads the picked group’s devices, Alerts stores the picked group, as the API says', async () => {
    const members = ((await api('GET', `/v1/groups/${group.id}/devices`)).json.devices as { id: string }[]).map((d) => d.id).sort();
    expect(members).toEqual(NORTH.map((d) => d.id).sort());
    const at = new Date(Date.now() - 10 * 60_000).toISOString();
    for (const [i, d] of [...NORTH, SOUTH].entries()) await publish(d.id, [{ metric: 'flow', time: at, numberValue: i }]);
    await eventually(async () => (await world.mesh.monitoring.rowCount(world.tenant.tenantId)) >= NORTH.length + 1, 'stored points');

    const page = await world.logIn(world.tenant.admin);
    try {
      await page.click('header a[href="#/export"]');
      await page.getByLabel('selection').selectOption({ label: 'a group' });
      await page.getByLabel('group', { exact: true }).selectOption({ label: 'northern' });
      await page.getByLabel('format').selectOption('csv');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download' }).click()]);
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iot-group-export-')), 'download.csv');
      await download.saveAs(file);
      const rows = parseCsv(fs.readFileSync(file, 'utf8'), { columns: true }) as Record<string, string>[];
      expect(rows.map((r) => r.device_id).sort()).toEqual(members);
      await screenshot(page, 'export-group');

      await page.click('header a[href="#/alerts"]');
      const form = page.locator('[data-testid=rule-form]').first();
      await form.locator('input[name=rule-name]').fill('north hot');
      await form.locator('input[name=rule-metric]').fill('temperature');
      await form.locator('input[name=rule-threshold]').fill('80');
      await form.locator('select[name=rule-group]').selectOption({ label: 'northern' });
      await form.getByRole('button', { name: 'Create rule' }).click();
      await page.getByTestId('rule-row-north hot').waitFor();
      expect((await api('GET', '/v1/alert-rules')).json.rules).toEqual([expect.objectContaining({ name: 'north hot', groupIds: [group.id] })]);
      // Its edit form starts from the stored group.
      await page.getByTestId('rule-row-north hot').getByRole('button', { name: 'Edit' }).click();
      const editedGroup = page.locator('[data-testid=rule-form]').nth(1).locator('select[name=rule-group]');
      await editedGroup.locator('option:checked', { hasText: 'northern' }).waitFor({ state: 'attached' });
      expect(await editedGroup.inputValue()).toBe(group.id);
      await screenshot(page, 'alert-rule-group');
    } finally {
      await page.context().close();
    }
  });

  it('admin: Live charts the picked group’s devices, a line each up to the bound, and shows the server’s refusals', async () => {
    const page = await world.logIn(world.tenant.admin);
    try {
      await page.click('header a[href="#/live"]');
      await page.getByLabel('group', { exact: true }).selectOption({ label: 'northern' });
      await page.getByRole('button', { name: 'Show' }).click();
      await page.locator('[data-testid=live-view][data-subscribed=true]').waitFor();
      expect(new URL(page.url()).hash).toBe(`#/live?group=${group.id}`);

      // South first, north-1's string and boolean last: a non-member's point would show before them.
      await publish(SOUTH.id, [{ metric: 'temperature', numberValue: 99 }]);
      for (const [i, d] of NORTH.entries()) await publish(d.id, [{ metric: 'temperature', numberValue: 20 + i }]);
      await publish(NORTH[0].id, [{ metric: 'state', stringValue: 'pumping' }, { metric: 'door_open', boolValue: true }]);
      await page.getByTestId(`live-value-door_open-${NORTH[0].id}`).getByText('true', { exact: true }).waitFor();
      const card = page.getByTestId('live-metric-temperature');
      await card.and(page.locator(`[data-devices="${NORTH.length}"]`)).waitFor();
      expect(await card.getAttribute('data-drawn')).toBe(String(MAX_LIVE_SERIES));
      await page.getByTestId('live-count-temperature').filter({ hasText: `${MAX_LIVE_SERIES} of ${NORTH.length} devices shown` }).waitFor();
      const chart = page.getByTestId('live-chart-temperature');
      const drawn = await eventually(async () => {
        const ids = ((await chart.getAttribute('data-series-ids')) ?? '').split(',').filter(Boolean);
        return ids.length === MAX_LIVE_SERIES && ids;
      }, 'the drawn lines');
      expect(drawn.every((id) => NORTH.some((d) => d.id === id))).toBe(true);
      // Lines are labelled with the devices' names; strings and booleans are shown as they are.
      const legend = chart.locator('.u-legend');
      const firstName = NORTH.find((d) => d.id === drawn[0])!.name;
      await legend.getByText(firstName, { exact: true }).waitFor({ timeout: 10_000 }).catch(async (err: Error) => {
        await screenshot(page, 'live-group-legend-failed');
        throw new Error(`${err.message}; the legend reads ${JSON.stringify(await legend.allTextContents())}`);
      });
      await page.getByTestId(`live-value-state-${NORTH[0].id}`).getByText('pumping').waitFor();
      await screenshot(page, 'live-group');

      // Another source by URL starts from nothing.
      await page.goto(`${world.gateway.base}/#/live?devices=${SOUTH.id}`);
      await page.locator('[data-testid=live-view][data-subscribed=true]').waitFor();
      expect(await page.getByTestId('live-metric-temperature').count()).toBe(0);
      // The server's refusals, as it words them.
      await page.goto(`${world.gateway.base}/#/live?group=00000000-0000-4000-8000-000000000000`);
      await page.getByTestId('live-error').filter({ hasText: /^NotFound: .*00000000-0000-4000-8000-000000000000/ }).waitFor();
      await page.goto(`${world.gateway.base}/#/live?group=not-a-group`);
      await page.getByTestId('live-error').filter({ hasText: 'group_ids[0]: is not a group id' }).waitFor();
      await screenshot(page, 'live-refused');
    } finally {
      await page.context().close();
    }
  });

  it('admin: the Groups page charts a metric across the group’s members, a line per member on request, and says when there is none or the server refuses', async () => {
    // Two members and a non-member send `level` 40, 30 and 20 minutes ago: three buckets at any width the chart asks for over an hour.
    const senders = [NORTH[0], NORTH[1], SOUTH];
    const minutesAgo = [40, 30, 20];
    for (const [i, d] of senders.entries()) await publish(d.id, minutesAgo.map((m) => ({ metric: 'level', time: new Date(Date.now() - m * 60_000).toISOString(), numberValue: 10 * (i + 1) + m })));
    const stored = await eventually(async () => {
      const res = await api('GET', `/v1/groups/${group.id}/history?metric=level&perDevice=true`);
      const count = (res.json.buckets as { count: string }[] | undefined)?.reduce((n, b) => n + Number(b.count), 0);
      return count === 2 * minutesAgo.length && res.json;
    }, 'the members’ level points in the group history');
    expect((stored.devices as { deviceId: string }[]).map((d) => d.deviceId)).toEqual([NORTH[0].id, NORTH[1].id]);

    const page = await world.logIn(world.tenant.admin);
    try {
      await page.click('header a[href="#/groups"]');
      await page.getByTestId('group-northern').getByRole('button', { name: 'Devices' }).click();
      const card = page.getByTestId('group-history');
      const chart = card.getByTestId('group-history-chart');
      const loaded = card.locator('[data-testid=group-history-chart][data-loaded=true]');
      const ask = async (metric: string, perDevice: boolean) => {
        await card.getByLabel('Metric').fill(metric);
        await card.getByLabel('Range').selectOption({ label: '1 h' });
        await card.getByLabel('per device').setChecked(perDevice);
        await card.getByRole('button', { name: 'Show' }).click();
      };
      const legend = async () => (await chart.locator('.u-legend .u-series .u-label').allTextContents()).filter((label) => label !== 'Time');

      await ask('level', false);
      await loaded.waitFor();
      expect(await chart.getAttribute('data-series-ids')).toBe('a:avg,b:min,c:max');
      expect(await chart.getAttribute('data-points')).toBe(String(minutesAgo.length));
      expect(await legend()).toEqual(['average', 'min', 'max']);
      await card.getByTestId('group-history-summary').filter({ hasText: `${NORTH.length} member devices` }).waitFor();
      await screenshot(page, 'group-history');

      // Per device: the group's average and one line per member that sent it, named; the non-member has none.
      await ask('level', true);
      await card.locator(`[data-testid=group-history-chart][data-loaded=true][data-series-ids="a:avg,device:${NORTH[0].id},device:${NORTH[1].id}"]`).waitFor();
      expect(await legend()).toEqual(['average', NORTH[0].name, NORTH[1].name]);
      await card.getByTestId('group-history-summary').filter({ hasText: '2 reporting' }).waitFor();
      await screenshot(page, 'group-history-per-device');

      // A metric no member sends: the chart says so instead of drawing nothing.
      await ask('no_such_metric', false);
      await card.getByTestId('group-history-empty').filter({ hasText: 'No data for no_such_metric' }).waitFor();
      expect(await chart.getAttribute('data-series-ids')).toBe('');

      // The server's refusal, as it words it, and no chart of the previous answer beside it.
      await ask('not a metric', false);
      await card.getByTestId('group-history-error').filter({ hasText: 'metric: is not a valid metric name' }).waitFor();
      expect(await chart.count()).toBe(0);
      expect(await card.getByTestId('group-history-empty').count()).toBe(0);
      await screenshot(page, 'group-history-refused');
    } finally {
      await page.context().close();
    }
  });

  it('viewer: watches a group live; Live and Export offer nothing that changes anything', async () => {
    const page = await world.logIn(world.tenant.viewer);
    try {
      await page.goto(`${world.gateway.base}/#/live?group=${group.id}`);
      await page.locator('[data-testid=live-view][data-subscribed=true]').waitFor();
      await publish(NORTH[1].id, [{ metric: 'humidity', numberValue: 40 }]);
      await page.getByTestId('live-chart-humidity').waitFor();
      expect(await page.locator('main').getByRole('button', { name: /^(Create|Delete|Set|Edit|Save)/ }).count()).toBe(0);
      await page.click('header a[href="#/export"]');
      await page.getByRole('table', { name: 'retention policies' }).waitFor();
      expect(await page.locator('main').getByRole('button', { name: /^(Create|Delete|Set|Edit|Save)/ }).count()).toBe(0);
      await screenshot(page, 'live-viewer');
    } finally {
      await page.context().close();
    }
  });

  it('admin: every form control of every page has a label', async () => {
    const page = await world.logIn(world.tenant.admin);
    try {
      const routes = await page.locator('header nav a[href^="#/"]').evaluateAll((links) => links.map((a) => a.getAttribute('href') ?? ''));
      expect(routes).toContain('#/live');
      const unlabelled: Record<string, string[]> = {};
      for (const route of routes) {
        await page.click(`header a[href="${route}"]`);
        await page.locator('main h1').waitFor();
        // The page's own forms (lists still loading add rows, not controls).
        const found = await page.evaluate<string[]>(`[...document.querySelectorAll('main input, main select, main textarea')]
          .filter((el) => el.type !== 'hidden' && !el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
          .map((el) => el.outerHTML.slice(0, 160))`);
        if (found.length > 0) unlabelled[route] = found;
      }
      expect(unlabelled).toEqual({});
    } finally {
      await page.context().close();
    }
  });
});
