import { Locator, Page } from 'playwright-core';
import { jsonPayload } from '@iot-mesh/monitoring/test-harness';
import type { TestMesh } from '../../testing/mesh';
import { TestTenant, TestUser } from '../../testing/signing';
import { ConsoleWorld, rest, screenshot, startConsoleWorld } from './gateway-harness';


jest.setTimeout(90_000);

/*
 * The fleet pages in Chromium against signing, device and monitoring: device
 * types, groups, provisioning keys, rules, jobs, dead letters and the device
 * table's sort and bulk actions, each created, changed and deleted through
 * the UI and checked through the REST API; a viewer is offered none of it.
 */
describe('fleet pages in Chromium', () => {
  let world: ConsoleWorld;
  let mesh: TestMesh;
  let tenant: TestTenant;
  let gateway: ConsoleWorld['gateway'];
  /** Uncaught errors of the console's pages: a page that throws while rendering fails the test with its message. */
  const pageErrors: string[] = [];

  beforeAll(async () => {
    world = await startConsoleWorld();
    ({ mesh, tenant, gateway } = world);
  }, 120_000);

  afterAll(async () => {
    await world?.close();
  });

  async function logIn(user: TestUser): Promise<Page> {
    const page = await world.logIn(user);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    return page;
  }
  const api = (method: string, url: string, body?: unknown) => rest(gateway.base, method, url, { authorization: tenant.admin.authorization, body });
  const open = async (page: Page, route: string) => {
    await page.click(`header a[href="#/${route}"]`);
    await page.locator('main h1').waitFor({ timeout: 10_000 }).catch((err: Error) => {
      throw new Error(`${route}: ${err.message}; page errors: ${pageErrors.join(' | ') || 'none'}`);
    });
  };
  /** Waits for what a form creates; fails at once with the page's error message should it show one instead. */
  const created = (page: Page, what: Locator) =>
    Promise.race([
      what.waitFor(),
      page
        .locator('main [role=alert]')
        .first()
        .waitFor()
        .then(async () => {
          throw new Error(`the page says: ${await page.locator('main [role=alert]').first().textContent()}`);
        }),
    ]);
  /** Presses a ConfirmButton inside `scope` and then its Confirm. */
  const confirm = async (scope: Locator, label: string) => {
    await scope.getByRole('button', { name: label }).click();
    await scope.getByRole('alertdialog').getByRole('button', { name: 'Confirm' }).click();
  };

  it('admin: device types, groups, provisioning keys, rules, jobs and dead letters through the UI', async () => {
    const page = await logIn(tenant.admin);

    // Device types: created from the JSON form, deleted after a confirmation.
    await open(page, 'device-types');
    await page.getByLabel('device type JSON').fill(JSON.stringify({ name: 'meter', metrics: [{ name: 'power', unit: 'W', kind: 'METRIC_KIND_GAUGE' }] }));
    await page.getByTestId('create-device-type').getByRole('button', { name: 'Create' }).click();
    await created(page, page.getByTestId('device-type-meter'));
    const types = (await api('GET', '/v1/deviceTypes')).json.deviceTypes;
    expect(types).toEqual([expect.objectContaining({ name: 'meter', metrics: [expect.objectContaining({ name: 'power', unit: 'W' })] })]);
    await screenshot(page, 'device-types');
    // Cancel keeps it; Confirm deletes it.
    await page.getByTestId('device-type-meter').getByRole('button', { name: 'Delete' }).click();
    await page.getByTestId('device-type-meter').getByRole('button', { name: 'Cancel' }).click();
    expect((await api('GET', '/v1/deviceTypes')).json.deviceTypes).toHaveLength(1);
    await confirm(page.getByTestId('device-type-meter'), 'Delete');
    await page.getByText('No device types yet.').waitFor();
    expect((await api('GET', '/v1/deviceTypes')).json.deviceTypes ?? []).toEqual([]);

    // Groups: a label selector; its members listed; deleted.
    await api('POST', '/v1/devices:batchCreate', { devices: [{ id: 'north-1', name: 'North 1', labels: { site: 'north' } }, { id: 'north-2', name: 'North 2', labels: { site: 'north' } }, { id: 'south-1', name: 'South 1', labels: { site: 'south' } }] });
    await open(page, 'groups');
    const groupForm = page.getByTestId('create-group');
    await groupForm.getByLabel('Name').fill('northern');
    await groupForm.getByLabel('Labels').fill('site=north');
    await groupForm.getByRole('button', { name: 'Create group' }).click();
    await created(page, page.getByTestId('group-northern'));
    const groups = (await api('GET', '/v1/groups')).json.groups;
    expect(groups).toEqual([expect.objectContaining({ name: 'northern', selector: expect.objectContaining({ matchLabels: { site: 'north' } }) })]);
    await page.getByTestId('group-northern').getByRole('button', { name: 'Devices' }).click();
    await page.getByTestId('group-members').getByText('North 2').waitFor();
    expect(await page.getByTestId('group-members').getByText('South 1').count()).toBe(0);
    await screenshot(page, 'groups');
    await confirm(page.getByTestId('group-northern'), 'Delete');
    await page.getByTestId('group-northern').waitFor({ state: 'detached' });
    expect((await api('GET', '/v1/groups')).json.groups ?? []).toEqual([]);

    // Provisioning keys: the secret is shown once; revoking asks first.
    await open(page, 'provisioning');
    const keyForm = page.getByTestId('create-provisioning-key');
    await keyForm.getByLabel('Name').fill('line 1');
    await keyForm.getByLabel('Labels').fill('line=1');
    await keyForm.getByRole('button', { name: 'Create key' }).click();
    await created(page, page.getByTestId('provisioning-secret'));
    const secret = await page.getByTestId('provisioning-secret').getByRole('textbox', { name: 'Provisioning key' }).inputValue();
    expect(secret.length).toBeGreaterThan(20);
    const [key] = (await api('GET', '/v1/provisioningKeys')).json.provisioningKeys;
    expect(key).toMatchObject({ name: 'line 1', labels: { line: '1' }, state: 'PROVISIONING_KEY_STATE_ACTIVE' });
    await screenshot(page, 'provisioning');
    await page.getByTestId('provisioning-secret').getByRole('button', { name: 'Done' }).click();
    await page.getByTestId('provisioning-secret').waitFor({ state: 'detached' });
    await confirm(page.getByTestId(`provisioning-key-${key.id}`), 'Revoke');
    await waitFor(async () => (await api('GET', '/v1/provisioningKeys')).json.provisioningKeys[0].state === 'PROVISIONING_KEY_STATE_REVOKED', 'the key revoked');
    await page.getByTestId(`provisioning-key-${key.id}`).getByRole('button', { name: 'Revoke' }).waitFor({ state: 'detached' });

    // Rules: a CEL rule with a derived metric, for a device group chosen by name; deleted after a confirmation.
    // (Monitoring runs on its own NATS here: the group enters its group directory as the device service would put it.)
    const southern = (await api('POST', '/v1/groups', { name: 'southern', selector: { matchLabels: { site: 'south' } } })).json.group;
    await mesh.monitoring.putGroup(tenant.tenantId, southern.id, { site: 'south' });
    await open(page, 'rules');
    const ruleForm = page.getByTestId('cel-rule-form');
    await ruleForm.getByLabel('rule name').fill('hot-meter');
    await ruleForm.getByLabel('condition').fill('m.power > 100.0');
    await ruleForm.getByLabel('metrics').fill('power');
    await ruleForm.getByLabel('action', { exact: true }).selectOption('derivedMetric');
    await ruleForm.getByLabel('action target').fill('power_kw');
    await ruleForm.getByLabel('expression').fill('m.power / 1000.0');
    await ruleForm.getByLabel('device group').selectOption({ label: 'southern' });
    await ruleForm.getByRole('button', { name: 'Create rule' }).click();
    await created(page, page.getByTestId('cel-rule-row-hot-meter'));
    const rules = (await api('GET', '/v1/rules')).json.rules;
    expect(rules).toEqual([expect.objectContaining({ name: 'hot-meter', condition: 'm.power > 100.0', enabled: true, source: expect.objectContaining({ groupIds: [southern.id] }) })]);
    await screenshot(page, 'rules');
    await confirm(page.getByTestId('cel-rule-row-hot-meter'), 'Delete');
    await page.getByTestId('cel-rule-row-hot-meter').waitFor({ state: 'detached' });
    expect((await api('GET', '/v1/rules')).json.rules ?? []).toEqual([]);

    // Devices: sorted by the server, counted, bulk-labelled, then a job started on the selection.
    await open(page, 'devices');
    await page.getByTestId('device-count').filter({ hasText: '3 shown of 3' }).waitFor();
    await page.getByTestId('sort-name').click();
    await page.getByTestId('sort-name').click();
    await page.getByTestId('sort-name').filter({ hasText: '▼' }).waitFor();
    await waitFor(async () => (await page.locator('[data-testid^=device-row-] a').first().textContent()) === 'South 1', 'name desc order');
    await page.getByTestId('select-north-1').check();
    await page.getByTestId('select-north-2').check();
    const bulk = page.getByTestId('bulk-actions');
    await bulk.getByText('2 selected').waitFor();
    await bulk.getByLabel('label to add').fill('tier=gold');
    await bulk.getByRole('button', { name: 'Add label' }).click();
    await waitFor(async () => ((await api('GET', '/v1/devices?labels[tier]=gold')).json.devices ?? []).length === 2, 'the label on both');
    expect((await api('GET', '/v1/devices/north-1')).json.device.labels).toEqual({ site: 'north', tier: 'gold' });
    expect((await api('GET', '/v1/devices/south-1')).json.device.labels).toEqual({ site: 'south' });
    await page.getByTestId('select-north-1').check();
    await page.getByTestId('select-north-2').check();
    await screenshot(page, 'devices-bulk');
    await bulk.getByRole('button', { name: 'Start a job…' }).click();
    const jobForm = page.getByTestId('create-job');
    expect(await jobForm.getByLabel('Devices').inputValue()).toBe('north-1,north-2');
    await jobForm.getByLabel('Command').fill('reboot');
    await jobForm.getByRole('button', { name: 'Create job' }).click();
    await created(page, page.getByTestId('job-list').locator('[data-testid^=job-]').first());
    const jobs = (await api('GET', '/v1/jobs')).json.jobs;
    expect(jobs).toEqual([expect.objectContaining({ command: expect.objectContaining({ name: 'reboot' }) })]);
    expect((await api('GET', `/v1/jobs/${jobs[0].id}/devices`)).json.devices.map((d: { deviceId: string }) => d.deviceId).sort()).toEqual(['north-1', 'north-2']);
    await screenshot(page, 'jobs');

    // Bulk delete asks first, then removes exactly the selection.
    await open(page, 'devices');
    await page.getByTestId('select-south-1').check();
    await confirm(page.getByTestId('bulk-actions'), 'Delete selected');
    await page.getByTestId('device-row-south-1').waitFor({ state: 'detached' });
    expect((await api('GET', '/v1/devices')).json.devices.map((d: { id: string }) => d.id).sort()).toEqual(['north-1', 'north-2']);
    // The same over REST: CountDevices and a sorted ListDevices.
    expect((await api('GET', '/v1/devices:count?labels[site]=north')).json).toEqual({ count: '2' });
    expect((await api('GET', `/v1/devices?orderBy=${encodeURIComponent('name desc')}`)).json.devices.map((d: { id: string }) => d.id)).toEqual(['north-2', 'north-1']);
    expect((await api('GET', '/v1/devices?orderBy=labels')).status).toBe(400);

    // Dead letters: refused telemetry listed with its reason, counted per reason on the overview with the ingest rate.
    // (Monitoring runs on its own NATS here: the devices enter its directory as the device service would put them.)
    await mesh.monitoring.registerDevice(tenant.tenantId, 'north-1');
    await mesh.monitoring.registerDevice(tenant.tenantId, 'north-2');
    await mesh.monitoring.publish(tenant.tenantId, 'north-1', new TextEncoder().encode('{"points": "not a list"}'));
    await waitFor(async () => ((await api('GET', '/v1/dead-letters')).json.deadLetters ?? []).length === 1, 'the dead letter');
    const [letter] = (await api('GET', '/v1/dead-letters')).json.deadLetters;
    await open(page, 'dead-letters');
    await page.getByTestId('dead-letter-list').locator(`tr[data-reason="${letter.reason}"]`).waitFor();
    await screenshot(page, 'dead-letters');
    // Counted by the server (REST too), each reason a link to the list filtered by it.
    expect((await api('GET', '/v1/dead-letters:count')).json).toEqual({ counts: [{ reason: letter.reason, count: '1' }], total: '1' });
    await open(page, 'overview');
    await page.getByTestId('overview-dead-letters').getByRole('link', { name: letter.reason }).click();
    await page.getByTestId('dead-letter-list').locator(`tr[data-reason="${letter.reason}"]`).waitFor();
    expect(await page.getByLabel('reason').inputValue()).toBe(letter.reason);
    await open(page, 'overview');
    await page.getByTestId('overview-online').filter({ hasText: '0' }).waitFor();
    await page.getByTestId('overview-offline').filter({ hasText: '2' }).waitFor();
    // The rate counts what StreamLive delivers: readings published while the page watches show up in it.
    let rate = '';
    await waitFor(async () => {
      await mesh.monitoring.publish(tenant.tenantId, 'north-2', jsonPayload({ points: [{ metric: 'power', numberValue: 5 }] }));
      rate = (await page.getByTestId('overview-ingest-rate').textContent()) ?? '';
      return rate !== '…' && Number(rate) > 0;
    }, 'a non-zero ingest rate').catch(async (err: Error) => {
      await screenshot(page, 'overview-rate-failed');
      const letters = (await api('GET', '/v1/dead-letters')).json.deadLetters ?? [];
      throw new Error(`${err.message}: the page shows ${JSON.stringify(rate)}; dead letters ${JSON.stringify(letters.map((d: { reason: string }) => d.reason))}; page errors: ${pageErrors.join(' | ') || 'none'}`);
    });
    await screenshot(page, 'overview-rate');
  });

  it('viewer: every fleet page readable, no action that changes anything offered', async () => {
    const page = await logIn(tenant.viewer);
    const mutating = /^(Create|Delete|Revoke|Cancel|Replay|Add label|Start a job|Create key|Create rule|Create group|Create job|Create channel)/;
    for (const route of ['devices', 'device-types', 'groups', 'provisioning', 'rules', 'jobs', 'dead-letters']) {
      await open(page, route);
      await page.locator('main h1').waitFor();
      expect({ route, buttons: await page.locator('main').getByRole('button', { name: mutating }).count(), checkboxes: await page.locator('main input[type=checkbox]').count() }).toEqual({ route, buttons: 0, checkboxes: 0 });
      await screenshot(page, `${route}-viewer`);
    }
  });
});

async function waitFor(probe: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
