import fs from 'node:fs';
import path from 'node:path';
import { Page } from 'playwright-core';
import { repoPath } from '@iot-mesh/runtime';
import { fleetDeviceName, seedDevices } from '../../testing/fleet-seed';
import { ConsoleWorld, rest, startConsoleWorld } from './gateway-harness';

/** Screenshots of every page, kept as CI artefacts (test-results/ is gitignored), as the other browser tests keep theirs. */
const SCREENSHOTS = repoPath('test-results', 'screenshots');
/** The fleet of issue 17: the console must stay usable at this size. */
const FLEET = 100_000;
/** The page size the console's device table asks for. */
const PAGE_SIZE = 200;
/** The seeded rows' height in the table (ROW_HEIGHT in gateway/web/src/devices.tsx). */
const ROW_HEIGHT = 36;

jest.setTimeout(180_000);

/** A row as the table renders it: its place in the whole list (0-based), id, name and labels text. */
interface ShownRow {
  index: number;
  id: string;
  name: string;
  labels: string;
}

/*
 * The Devices page in Chromium with a tenant of 100,000 devices (written
 * straight into the registry's table by testing/fleet-seed.ts, the bench's
 * device-list scenario's fleet), as that tenant's viewer: the server's total,
 * the first page of virtualised rows, the next page through its page token,
 * sorting, a name prefix and a label filter narrowing rows and count, one
 * device opened from the table and the same list back from it (filters and
 * order in the URL); the overview's counts and devices seen last at that
 * size. Behaviour only: the bench measures speed.
 */
describe('console with a fleet of 100,000 devices in Chromium', () => {
  let world: ConsoleWorld;
  /** Uncaught errors of the console's pages: a page that throws while rendering fails the test with its message. */
  const pageErrors: string[] = [];

  beforeAll(async () => {
    world = await startConsoleWorld();
    await seedDevices(world.mesh.device.ctx.pool, world.tenant.tenantId, FLEET);
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    await world?.close();
  });

  const api = (url: string) => rest(world.gateway.base, 'GET', url, { authorization: world.tenant.viewer.authorization });
  const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
  const count = (page: Page) => page.getByTestId('device-count');
  const list = (page: Page) => page.getByTestId('device-list');

  /** The rows in the DOM (the virtualiser renders only those near the viewport), in list order. */
  async function shownRows(page: Page): Promise<ShownRow[]> {
    const rows = await list(page)
      .locator('[data-testid^=device-row-]')
      .evaluateAll((elements) =>
        elements.map((row) => {
          const cells = row.querySelectorAll('[role=cell]');
          return {
            index: Number(row.getAttribute('aria-rowindex')) - 2,
            id: (row.getAttribute('data-testid') ?? '').replace(/^device-row-/, ''),
            name: cells[0]?.textContent ?? '',
            labels: cells[cells.length - 1]?.textContent ?? '',
          };
        }),
      );
    return rows.sort((a, b) => a.index - b.index);
  }

  /** Waits until the count line reads `text` exactly (the total arrives from CountDevices, the rows from ListDevices). */
  async function countReads(page: Page, text: string): Promise<void> {
    await count(page).filter({ hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }).waitFor();
  }

  /** Scrolls the table so the row at `index` is at the top. */
  const scrollTo = (page: Page, index: number) => page.locator('.device-scroll').evaluate((el, top) => el.scrollTo({ top }), index * ROW_HEIGHT);

  /** Submits the filter form with these values (the others emptied). */
  async function filter(page: Page, values: { namePrefix?: string; labels?: string }): Promise<void> {
    await page.fill('[data-testid=device-filters] input[name=namePrefix]', values.namePrefix ?? '');
    await page.fill('[data-testid=device-filters] input[name=filterLabels]', values.labels ?? '');
    await page.click('[data-testid=device-filters] button[type=submit]');
  }

  it('viewer: the total, virtualised first page, next page by token, sort, name prefix and label filter, one device opened and the same list back', async () => {
    const page = await world.logIn(world.tenant.viewer);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    expect(await page.getByTestId('whoami').getAttribute('data-role')).toBe('viewer');
    await page.click('header a[href="#/devices"]');

    // The total from CountDevices, one page of rows loaded, and only a screenful of them in the DOM.
    await countReads(page, `${PAGE_SIZE} shown of 100,000, more as you scroll`);
    expect(await list(page).getAttribute('data-rows')).toBe(String(PAGE_SIZE));
    expect(await list(page).getAttribute('aria-rowcount')).toBe(String(FLEET + 1));
    const firstPage = (await api(`/v1/devices?page.pageSize=${PAGE_SIZE}`)).json;
    const firstIds: string[] = firstPage.devices.map((d: { id: string }) => d.id);
    const top = await shownRows(page);
    expect(top.length).toBeGreaterThan(5);
    expect(top.length).toBeLessThan(60);
    expect(top.map((r) => r.id)).toEqual(firstIds.slice(0, top.length));
    // A viewer is offered no create form and no row selection.
    expect(await page.getByTestId('create-device').count()).toBe(0);
    expect(await page.locator('[data-testid^=select-]').count()).toBe(0);
    await shot(page, 'devices-fleet-100k');

    // Scrolling to the end of what is loaded fetches the next page with the page token: different rows, the API's second page.
    await scrollTo(page, PAGE_SIZE);
    await countReads(page, `${2 * PAGE_SIZE} shown of 100,000, more as you scroll`);
    const secondIds: string[] = (await api(`/v1/devices?page.pageSize=${PAGE_SIZE}&page.pageToken=${encodeURIComponent(firstPage.page.nextPageToken)}`)).json.devices.map((d: { id: string }) => d.id);
    expect(secondIds.filter((id) => firstIds.includes(id))).toEqual([]);
    await scrollTo(page, PAGE_SIZE + 50);
    await page.locator(`[aria-rowindex="${PAGE_SIZE + 52}"]`).waitFor();
    const further = (await shownRows(page)).filter((r) => r.index >= PAGE_SIZE);
    expect(further.length).toBeGreaterThan(5);
    for (const row of further) expect(row.id).toBe(secondIds[row.index - PAGE_SIZE]);

    // Sorting by last seen: never-seen devices first ascending, the newest first descending, rows as the API orders them.
    for (const [order, neverSeenFirst] of [['last_seen_time', true], ['last_seen_time desc', false]] as const) {
      const expectedIds: string[] = (await api(`/v1/devices?page.pageSize=10&orderBy=${encodeURIComponent(order)}`)).json.devices.map((d: { id: string }) => d.id);
      await page.click('[data-testid=sort-last_seen_time]');
      await page.getByTestId(`device-row-${expectedIds[0]}`).and(page.locator('[aria-rowindex="2"]')).waitFor();
      const sorted = await shownRows(page);
      expect(sorted.slice(0, 10).map((r) => r.id)).toEqual(expectedIds);
      const firstSeen = await page.locator('[aria-rowindex="2"] [role=cell]').nth(3).textContent();
      expect(firstSeen === '—').toBe(neverSeenFirst);
    }

    // Sorting by name: the server's order from the first row (names are a permutation of 000000 … 099999), again to reverse.
    await page.click('[data-testid=sort-name]');
    await countReads(page, `${PAGE_SIZE} shown of 100,000, more as you scroll`);
    await page.locator('[aria-rowindex="2"]').filter({ hasText: 'device 000000' }).waitFor();
    expect(await page.locator('[role=columnheader][aria-sort=ascending]').textContent()).toContain('Name');
    const ascending = await shownRows(page);
    expect(ascending.slice(0, 10).map((r) => r.name)).toEqual(Array.from({ length: 10 }, (_, i) => `device ${String(i).padStart(6, '0')}`));
    await page.click('[data-testid=sort-name]');
    await page.locator('[aria-rowindex="2"]').filter({ hasText: 'device 099999' }).waitFor();
    expect(await page.locator('[role=columnheader][aria-sort=descending]').textContent()).toContain('Name');
    const descending = await shownRows(page);
    expect(descending.slice(0, 10).map((r) => r.name)).toEqual(Array.from({ length: 10 }, (_, i) => `device ${String(99_999 - i).padStart(6, '0')}`));

    // A name prefix: 100 names start with "device 0123"; all of them on one page, still in descending name order, no more to load.
    await filter(page, { namePrefix: 'device 0123' });
    await countReads(page, '100 shown of 100');
    const prefixed = await shownRows(page);
    expect(prefixed[0].name).toBe('device 012399');
    for (const row of prefixed) expect(row.name.startsWith('device 0123')).toBe(true);

    // A label filter: a tenth of the fleet is at site-3; every row shown is.
    await filter(page, { labels: 'site=site-3' });
    await countReads(page, `${PAGE_SIZE} shown of 10,000, more as you scroll`);
    const atSite = await shownRows(page);
    expect(atSite.length).toBeGreaterThan(5);
    for (const row of atSite) expect(row.labels.split(', ')).toContain('site=site-3');

    // Both: the prefix within the site, as many as the fleet's names say.
    const expected = Array.from({ length: FLEET }, (_, i) => i + 1).filter((n) => n % 10 === 3 && fleetDeviceName(n, FLEET).startsWith('device 0123')).length;
    expect(expected).toBeGreaterThan(0);
    await filter(page, { namePrefix: 'device 0123', labels: 'site=site-3' });
    await countReads(page, `${expected} shown of ${expected}`);
    await shot(page, 'devices-fleet-100k-filtered');

    // Opening a device from the table shows that device.
    const chosenList = await shownRows(page);
    const [chosen] = chosenList;
    await page.getByTestId(`device-row-${chosen.id}`).getByRole('link').click();
    await page.getByTestId('device-name').filter({ hasText: chosen.name }).waitFor();
    expect(page.url()).toContain(`#/devices/${encodeURIComponent(chosen.id)}`);
    expect(await page.getByTestId('device-error').count()).toBe(0);
    await shot(page, 'devices-fleet-100k-device');

    // Back to the list: the same filters and order (they live in the list's URL), the same rows.
    await page.getByRole('link', { name: '← Devices' }).click();
    await countReads(page, `${expected} shown of ${expected}`);
    expect(await page.inputValue('[data-testid=device-filters] input[name=namePrefix]')).toBe('device 0123');
    expect(await page.inputValue('[data-testid=device-filters] input[name=filterLabels]')).toBe('site=site-3');
    expect(await page.locator('[role=columnheader][aria-sort=descending]').textContent()).toContain('Name');
    expect((await shownRows(page)).map((r) => r.id)).toEqual(chosenList.map((r) => r.id));
    // Reloading that URL shows the same list too.
    await page.reload();
    await countReads(page, `${expected} shown of ${expected}`);
    expect((await shownRows(page)).map((r) => r.id)).toEqual(chosenList.map((r) => r.id));
    expect(pageErrors).toEqual([]);
  });

  it('viewer: the overview counts the whole fleet, lists the devices seen last, and its online figure opens the online devices', async () => {
    const page = await world.logIn(world.tenant.viewer);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.click('header a[href="#/overview"]');
    // A tenth of the seeded fleet is online.
    await page.getByTestId('overview-online').filter({ hasText: /^10,000$/ }).waitFor();
    await page.getByTestId('overview-offline').filter({ hasText: /^90,000$/ }).waitFor();
    const seenLast: string[] = (await api('/v1/devices?page.pageSize=10&orderBy=last_seen_time%20desc')).json.devices.map((d: { name: string }) => d.name);
    await page.getByTestId('overview-recent').locator('li').nth(9).waitFor();
    expect(await page.getByTestId('overview-recent').locator('li a').allTextContents()).toEqual(seenLast);
    await shot(page, 'overview-fleet-100k');

    await page.getByRole('link', { name: 'devices online' }).click();
    await countReads(page, `${PAGE_SIZE} shown of 10,000, more as you scroll`);
    expect(await page.inputValue('[data-testid=device-filters] select[name=status]')).toBe('1');
    for (const row of await shownRows(page)) expect(await page.getByTestId(`device-status-${row.id}`).textContent()).toBe('online');
    expect(pageErrors).toEqual([]);
  });
});
