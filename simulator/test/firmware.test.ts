import crypto from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { FirmwareAgent, parseFirmwarePlan, ReportedFirmware } from '../src/firmware';
import { Random } from '../src/random';

const IMAGE = crypto.randomBytes(10_000);
const SHA = crypto.createHash('sha256').update(IMAGE).digest('hex');
let server: http.Server;
let url: string;

beforeAll(async () => {
  server = http.createServer((req, res) => (req.url === '/fw.bin' ? res.end(IMAGE) : res.writeHead(404).end()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fw.bin`;
});
afterAll(() => new Promise((r) => server.close(r)));

/** An agent with `plan` overrides and the reports it made. */
function agent(plan: string): { agent: FirmwareAgent; reports: ReportedFirmware[] } {
  const reports: ReportedFirmware[] = [];
  const a: FirmwareAgent = new FirmwareAgent(parseFirmwarePlan(`version=1.0,install-ms=10,${plan}`), new Random(1), async () => void reports.push(a.reported()));
  return { agent: a, reports };
}

test('downloads, verifies, installs and reports the new version; a repeated desired firmware is answered with the report again', async () => {
  const { agent: a, reports } = agent('install-fail=0');
  await a.desired({ firmware: { version: '2.0', url, sha256: SHA } });
  expect(reports.map((r) => r.status)).toEqual(['downloading', 'installing', 'succeeded']);
  expect(a.reported()).toEqual({ version: '2.0', status: 'succeeded' });
  await a.desired({ firmware: { version: '2.0', url, sha256: SHA } }, true);
  expect(reports).toHaveLength(4);
});

test('failures: a checksum mismatch, a corrupted download, an install failure and an unreachable URL are reported with the target and reason', async () => {
  const wrongSha = agent('');
  await wrongSha.agent.desired({ firmware: { version: '2.0', url, sha256: '0'.repeat(64) } });
  expect(wrongSha.agent.reported()).toEqual({ version: '1.0', status: 'failed', target_version: '2.0', reason: `checksum mismatch: expected ${'0'.repeat(64)}, got ${SHA}` });
  const corrupted = agent('bad-checksum=1');
  await corrupted.agent.desired({ firmware: { version: '2.0', url, sha256: SHA } });
  expect(corrupted.agent.reported().reason).toMatch(/^checksum mismatch/);
  const install = agent('install-fail=1');
  await install.agent.desired({ firmware: { version: '2.0', url, sha256: SHA } });
  expect(install.agent.reported()).toEqual({ version: '1.0', status: 'failed', target_version: '2.0', reason: 'install failed: flash write error' });
  // Re-sent: the failure is reported again; a new desired version (a new campaign) tries the install again.
  await install.agent.desired({ firmware: { version: '2.0', url, sha256: SHA } }, true);
  expect(install.reports.map((r) => r.status)).toEqual(['downloading', 'installing', 'failed', 'failed']);
  await install.agent.desired({ firmware: { version: '2.0', url, sha256: SHA } });
  expect(install.reports.map((r) => r.status).slice(4)).toEqual(['downloading', 'installing', 'failed']);
  const missing = agent('');
  await missing.agent.desired({ firmware: { version: '2.0', url: url.replace('fw.bin', 'nope'), sha256: SHA } });
  expect(missing.agent.reported().reason).toBe('download failed: HTTP 404');
  expect(() => parseFirmwarePlan('install-fail=2')).toThrow('a share between 0 and 1');
  expect(() => parseFirmwarePlan('colour=red')).toThrow('keys are version, install-ms, install-fail, bad-checksum');
});
