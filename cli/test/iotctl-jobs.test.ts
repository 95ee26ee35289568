import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/*
 * iotctl's jobs commands as a real process against the mesh on real servers:
 * a job over devices that are offline stays queued until cancelled.
 */
describe('iotctl jobs commands', () => {
  const { ok } = iotctlSession('jobs', 'operator');

  it('creates a job, lists it and its devices, cancels it and watches it end', async () => {
    for (const id of ['job-a', 'job-b']) await ok(['devices', 'create', '--id', id, '--name', id]);
    const job = JSON.parse(await ok(['jobs', 'create', '--command', 'reboot', '--params', '{"delay": 5}', '--devices', 'job-a,job-b', '--max-in-flight', '1', '--abort-percent', '50', '-o', 'json']));
    expect(job).toMatchObject({ state: 'JOB_STATE_RUNNING', command: { name: 'reboot', params: { delay: 5 } }, rollout: { maxInFlight: 1, abortThresholdPercent: 50 }, counts: { total: 2, queued: 2 } });
    expect(await ok(['jobs', 'list'])).toMatch(new RegExp(`${job.id} +command reboot +device list +running +0/2 done`));
    const queued = JSON.parse(await ok(['jobs', 'devices', '--job', job.id, '--state', 'queued', '-o', 'json']));
    expect(queued.map((d: { deviceId: string }) => d.deviceId)).toEqual(['job-a', 'job-b']);
    expect(await ok(['jobs', 'cancel', job.id])).toMatch(/STATE +cancelled\nPROGRESS +2\/2 done \(0 ok, 0 failed, 0 timed out, 2 cancelled\)/);
    expect(await ok(['jobs', 'watch', job.id])).toMatch(/^cancelled 2\/2 done .* cancelled by /);
  });
});
