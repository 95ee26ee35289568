import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/* `iotctl devices list --sort` and `devices count` as a real process against the mesh. */
describe('iotctl devices list --sort and devices count', () => {
  const { ok, iotctl } = iotctlSession('devices-order', 'operator');

  beforeAll(async () => {
    for (const [id, name, site] of [
      ['d-1', 'charlie', 'north'],
      ['d-2', 'alpha', 'south'],
      ['d-3', 'bravo', 'north'],
    ])
      await ok(['devices', 'create', '--id', id, '--name', name, '--label', `site=${site}`, '-o', 'json']);
  });

  it('sorts on the server and counts with the same filters', async () => {
    const names = async (args: string[]) => (JSON.parse(await ok(['devices', 'list', ...args, '-o', 'json'])) as Array<{ name: string }>).map((d) => d.name);
    expect(await names([])).toEqual(['charlie', 'alpha', 'bravo']);
    expect(await names(['--sort', 'name'])).toEqual(['alpha', 'bravo', 'charlie']);
    expect(await names(['--sort', 'name desc', '--label', 'site=north'])).toEqual(['charlie', 'bravo']);
    // Paged one at a time: the page tokens keep the order.
    expect(await names(['--sort', 'name desc', '--page-size', '1', '--all'])).toEqual(['charlie', 'bravo', 'alpha']);
    expect(JSON.parse(await ok(['devices', 'count', '-o', 'json']))).toEqual({ count: 3 });
    expect(JSON.parse(await ok(['devices', 'count', '--label', 'site=north', '-o', 'json']))).toEqual({ count: 2 });
    expect((await ok(['devices', 'count', '--status', 'online'])).trim()).toBe('COUNT  0');
  });

  it('an unknown sort field fails with the server’s field violation and a non-zero exit', async () => {
    const run = await iotctl(['devices', 'list', '--sort', 'password']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/order_by/);
  });
});
