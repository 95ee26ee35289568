import http from 'node:http';
import { Latencies, nowMs } from '../measure';
import { emptyResult, Scenario } from '../scenario';
import { removeSeededDevices, seedDevices } from '../../../testing/fleet-seed';

/** The first page the console's device table asks for. */
const PAGE_SIZE = 200;
/** The target for the first page through the gateway at 100,000 devices. */
const FIRST_PAGE_TARGET_MS = 300;

/** GET over keep-alive HTTP/1.1; rejects on any status but 200. */
function get(agent: http.Agent, url: string, authorization: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { authorization, accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`))));
    });
    req.on('error', reject);
  });
}

/**
 * The console's device table at fleet scale: a tenant of 100,000 devices
 * (seedDevices of testing/fleet-seed.ts writes the rows straight into the
 * registry's table in one statement, as the console's fleet test does: this
 * measures reading them, not creating them), then the first page of
 * ListDevices through the Node gateway's REST route, as the table asks for
 * it: creation order, each sortable column, a label and a status filter, a
 * name prefix, and CountDevices for the total. One request at a time (a
 * user opening the page), a few warm-ups, then `samples` each.
 * Target: every first page p95 ≤ 300 ms.
 */
export const deviceListScenario: Scenario = {
  name: 'device-list',
  title: 'device table at 100,000 devices: first page of ListDevices (sorted, filtered) and CountDevices through the gateway',
  async run(ctx) {
    const platform = await ctx.platform();
    const count = ctx.smoke ? 2_000 : 100_000;
    const samples = ctx.smoke ? 5 : 30;
    const result = emptyResult(this, { devices: count, pageSize: PAGE_SIZE, samples });
    const { figures, notes } = result;
    const authorization = platform.authorization!;
    const tenantId = platform.tenantId;
    if (!platform.gateway || !authorization) throw new Error('the device-list scenario needs the gateway and a signed-in tenant');

    ctx.log(`  writing ${count.toLocaleString('en-US')} devices…`);
    const seconds = await seedDevices(platform.db.url, tenantId, count);
    notes.push(`${count.toLocaleString('en-US')} device rows written in ${seconds.toFixed(1)} s (one INSERT … generate_series; VACUUM ANALYZE after)`);

    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const base = `${platform.gateway.url}/v1/devices`;
    const cases: Array<[name: string, query: string]> = [
      ['creation order', ''],
      ['order_by name', '&orderBy=name'],
      ['order_by last_seen_time desc', `&orderBy=${encodeURIComponent('last_seen_time desc')}`],
      ['order_by status desc', `&orderBy=${encodeURIComponent('status desc')}`],
      ['label site=site-3, order_by name', `&labels[site]=site-3&orderBy=name`],
      ['status online, order_by last_seen_time desc', `&status=DEVICE_STATUS_ONLINE&orderBy=${encodeURIComponent('last_seen_time desc')}`],
      ['name prefix "device 0123"', `&namePrefix=${encodeURIComponent('device 0123')}`],
    ];
    try {
      const measure = async (url: string, check: (body: string) => void) => {
        for (let i = 0; i < 3; i++) check(await get(agent, url, authorization));
        const latencies = new Latencies();
        for (let i = 0; i < samples; i++) {
          const started = nowMs();
          const body = await get(agent, url, authorization);
          latencies.add(nowMs() - started);
          check(body);
        }
        return latencies.summary();
      };
      for (const [name, query] of cases) {
        ctx.log(`  first page: ${name}…`);
        let rows = 0;
        const s = await measure(`${base}?page.pageSize=${PAGE_SIZE}${query}`, (body) => {
          rows = (JSON.parse(body) as { devices?: unknown[] }).devices?.length ?? 0;
        });
        figures.push(
          { measure: `${name}: p50`, value: s.p50, unit: 'ms' },
          { measure: `${name}: p95`, value: s.p95, unit: 'ms', target: `≤ ${FIRST_PAGE_TARGET_MS} ms`, met: ctx.smoke ? undefined : s.p95 <= FIRST_PAGE_TARGET_MS },
        );
        notes.push(`${name}: ${rows} rows on the first page, max ${s.max.toFixed(1)} ms`);
      }
      for (const [name, query] of [
        ['CountDevices (all)', ''],
        ['CountDevices (label site=site-3)', '?labels[site]=site-3'],
      ] as const) {
        ctx.log(`  ${name}…`);
        let counted = 0;
        const s = await measure(`${base}:count${query}`, (body) => {
          counted = Number((JSON.parse(body) as { count?: string }).count ?? 0);
        });
        figures.push({ measure: `${name}: p50`, value: s.p50, unit: 'ms' }, { measure: `${name}: p95`, value: s.p95, unit: 'ms', target: `≤ ${FIRST_PAGE_TARGET_MS} ms`, met: ctx.smoke ? undefined : s.p95 <= FIRST_PAGE_TARGET_MS });
        notes.push(`${name}: ${counted.toLocaleString('en-US')}`);
      }
      notes.push('one request at a time over one keep-alive connection, as one user opening the devices page; the console asks the same over gRPC-Web');
    } finally {
      agent.destroy();
      // The rows go again: later scenarios create devices in the same tenant (and under its device quota).
      await removeSeededDevices(platform.db.url, tenantId);
    }
    return result;
  },
};
