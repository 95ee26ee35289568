import fs from 'node:fs';
import { startDeviceHarness } from './harness';

jest.setTimeout(60_000);

/** Live nats-server processes started by this test process. */
function natsServerChildren(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces, so parse after the last ')'.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (comm === 'nats-server' && state !== 'Z' && Number(ppid) === process.pid) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

test('a harness whose device service fails to start stops the servers it had started', async () => {
  expect(natsServerChildren()).toEqual([]);
  // An invalid variable: signing, NATS and the database start, then the device service refuses.
  await expect(startDeviceHarness({ env: { DEVICE_CACHE_TTL_MS: 'soon' } })).rejects.toThrow(/DEVICE_CACHE_TTL_MS/);
  expect(natsServerChildren()).toEqual([]);
});
