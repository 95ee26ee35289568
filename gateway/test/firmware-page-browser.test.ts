import crypto from 'node:crypto';
import { Page } from 'playwright-core';
import { TestTenant, TestUser } from '../../testing/signing';
import { ConsoleWorld, rest, screenshot, startConsoleWorld } from './gateway-harness';


jest.setTimeout(90_000);

/*
 * The Firmware page in Chromium against the real services: an image uploaded
 * through the page (chunked, with progress) is stored with the SHA-256 the
 * platform computed, shown on the page and equal to the file's; a campaign
 * started from the page shows its devices in the shared progress table; a
 * viewer is offered neither form.
 */
describe('Firmware page in Chromium', () => {
  let world: ConsoleWorld;
  let tenant: TestTenant;
  let base: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    world = await startConsoleWorld();
    ({ tenant } = world);
    base = world.gateway.base;
  }, 120_000);

  afterAll(async () => {
    await world?.close();
  });

  const api = (method: string, url: string, body?: unknown) => rest(base, method, url, { authorization: tenant.admin.authorization, body });
  async function openFirmware(user: TestUser): Promise<Page> {
    const page = await world.logIn(user);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.click('header a[href="#/firmware"]');
    await page.locator('main h1', { hasText: 'Firmware' }).waitFor({ timeout: 10_000 });
    return page;
  }

  it('operator: uploads an image with progress, sees the platform’s SHA-256 and follows a campaign’s devices', async () => {
    const type = (await api('POST', '/v1/deviceTypes', { name: 'pump' })).json.deviceType;
    await api('POST', '/v1/devices:batchCreate', { devices: [{ id: 'pump-1', name: 'Pump 1', deviceTypeId: type.id }] });
    const image = crypto.randomBytes(1024 * 1024 + 4321);
    const sha256 = crypto.createHash('sha256').update(image).digest('hex');

    const page = await openFirmware(tenant.operator);
    const form = page.getByTestId('upload-firmware');
    await form.getByLabel('Upload version').fill('4.2');
    await form.getByLabel('Upload device type').fill(type.id);
    await form.getByLabel('Image file').setInputFiles({ name: 'pump-4.2.bin', mimeType: 'application/octet-stream', buffer: image });
    await form.getByRole('button', { name: 'Upload image' }).click();
    await Promise.race([
      page.getByTestId('upload-sha256').waitFor(),
      page.locator('main [role=alert]').waitFor().then(async () => {
        throw new Error(`the page says: ${await page.locator('main [role=alert]').textContent()}`);
      }),
    ]);
    expect(await page.getByTestId('upload-sha256').textContent()).toBe(sha256);
    expect(await page.getByTestId('upload-progress').textContent()).toContain(`${image.length} of ${image.length} bytes`);
    const [fw] = (await api('GET', `/v1/firmware?device_type_id=${type.id}`)).json.firmware;
    expect(fw).toMatchObject({ version: '4.2', stored: true, uploadComplete: true, sha256, sizeBytes: String(image.length) });
    const downloaded = await fetch(`${base}/v1/firmware/${fw.id}/image`, { headers: { authorization: tenant.viewer.authorization } });
    expect(Buffer.from(await downloaded.arrayBuffer()).equals(image)).toBe(true);
    await page.getByTestId(`firmware-${fw.id}`).getByText('stored by the platform').waitFor();

    // A campaign from the page: its device in the shared per-device progress table.
    const campaignForm = page.getByTestId('create-campaign');
    await campaignForm.getByLabel('Firmware').selectOption(fw.id);
    await campaignForm.getByLabel('Devices').fill('pump-1');
    await campaignForm.getByLabel('Canary percent').fill('0');
    await campaignForm.getByRole('button', { name: 'Start campaign' }).click();
    const [campaign] = await waitForCampaigns();
    await page.getByTestId(`campaign-${campaign.id}`).getByRole('button', { name: 'Devices' }).click();
    const row = page.getByTestId('campaign-devices').getByTestId('device-progress').getByRole('row', { name: /pump-1/ });
    await row.waitFor();
    expect(await row.textContent()).toMatch(/pump-1.*rollout.*(queued|sent)/);
    await screenshot(page, 'firmware');
    expect(pageErrors).toEqual([]);
  });

  async function waitForCampaigns(): Promise<{ id: string }[]> {
    for (;;) {
      const campaigns = (await api('GET', '/v1/campaigns')).json.campaigns ?? [];
      if (campaigns.length > 0) return campaigns;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('viewer: the firmware and its digest readable, no upload or campaign form', async () => {
    const page = await openFirmware(tenant.viewer);
    await page.getByTestId('firmware-list').getByText('4.2').waitFor();
    expect(await page.getByTestId('upload-firmware').count()).toBe(0);
    expect(await page.getByTestId('create-campaign').count()).toBe(0);
  });
});
