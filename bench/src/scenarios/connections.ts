import { DEFAULT_BEHAVIOUR, DeviceBehaviour, DeviceIdentity } from '../../../simulator/src/device';
import { Fleet } from '../../../simulator/src/fleet';
import { TestNatsServer } from '../../../testing/nats-server';
import { nowMs, processCpuSeconds, processMemory, sleep } from '../measure';
import { emptyResult, Scenario } from '../scenario';

const passive: DeviceBehaviour = { ...DEFAULT_BEHAVIOUR, transport: 'mqtt', interactive: false, qos: 1 };

function mb(bytes: number | undefined): number {
  return Math.round((bytes ?? 0) / 1e6);
}

/** Connects every identity over MQTT (`concurrency` handshakes at a time); returns the fleet and seconds taken. */
async function connectAll(identities: DeviceIdentity[], url: string | undefined, concurrency: number): Promise<{ fleet: Fleet; seconds: number; connected: number }> {
  const fleet = new Fleet(identities, { behaviour: { ...passive, url }, connectConcurrency: concurrency });
  const started = nowMs();
  await fleet.connect();
  return { fleet, seconds: (nowMs() - started) / 1000, connected: fleet.stats.online };
}

/**
 * Scenario 5: many authenticated MQTT device connections, each with its own
 * credential minted by the device service (bearer user JWT as the MQTT
 * password, checked by nats-server against the account). Time to connect
 * them all and the memory of every process once they are connected.
 * Baseline: as many connections to an open nats-server (no auth), same run.
 */
export const connectionsScenario: Scenario = {
  name: 'connections',
  title: 'connections: authenticated MQTT device connections, time and memory',
  async run(ctx) {
    const platform = await ctx.platform();
    const count = ctx.smoke ? 20 : 10_000;
    const concurrency = ctx.smoke ? 10 : 100;
    const result = emptyResult(this, { connections: count, concurrency, qos: 1, cleanSession: true });
    const { figures, notes } = result;

    ctx.log(`  provisioning ${count} devices with credentials…`);
    const provisionStarted = nowMs();
    const identities = await platform.devices('conn', count, 'mqtt');
    const provisionS = (nowMs() - provisionStarted) / 1000;
    notes.push(`${count.toLocaleString('en-US')} devices created with credentials through BatchCreateDevices in ${provisionS.toFixed(1)} s`);

    // Baseline: the same number of MQTT connections to an open server of the same build.
    ctx.log(`  baseline: ${count} MQTT connections without auth…`);
    const open = await TestNatsServer.start({ jetstream: true, mqtt: true });
    let baselineS: number;
    let baselineNatsMb: number;
    try {
      const openIds = identities.map((d) => ({ tenantId: d.tenantId, deviceId: d.deviceId }));
      const base = await connectAll(openIds, open.mqttUrl, concurrency);
      baselineS = base.seconds;
      baselineNatsMb = mb(open.pid === undefined ? undefined : processMemory(open.pid)?.rss);
      await base.fleet.stop();
    } finally {
      await open.stop();
    }

    ctx.log(`  ${count} authenticated MQTT connections…`);
    const pids = platform.pids();
    const cpuBefore = Object.fromEntries(Object.entries(pids).map(([n, pid]) => [n, processCpuSeconds(pid) ?? 0]));
    const before = Object.fromEntries(Object.entries(pids).map(([n, pid]) => [n, processMemory(pid)?.rss]));
    const authed = await connectAll(identities, undefined, concurrency);
    try {
      // Let the device service take in the connect events before reading memory.
      await sleep(ctx.smoke ? 500 : 5000);
      const after = Object.fromEntries(Object.entries(pids).map(([n, pid]) => [n, processMemory(pid)?.rss]));
      const cpu = Object.fromEntries(Object.entries(pids).map(([n, pid]) => [n, (processCpuSeconds(pid) ?? 0) - cpuBefore[n]]));
      figures.push(
        { measure: `time to connect ${count.toLocaleString('en-US')}`, value: authed.seconds, unit: 's', baseline: 'no auth', baselineValue: baselineS },
        { measure: 'connections/s', value: authed.connected / authed.seconds, unit: 'conn/s', baseline: 'no auth', baselineValue: count / baselineS },
        { measure: 'nats-server RSS, all connected', value: mb(after['nats-server']), unit: 'MB', baseline: 'no auth', baselineValue: baselineNatsMb },
      );
      for (const name of Object.keys(pids)) {
        if (name === 'nats-server') continue;
        figures.push({ measure: `${name} RSS, all connected`, value: mb(after[name]), unit: 'MB', baseline: 'before connecting', baselineValue: mb(before[name]) });
      }
      notes.push(`${authed.connected.toLocaleString('en-US')} of ${count.toLocaleString('en-US')} connected (${authed.fleet.stats.connectFailures} refused); ${concurrency} handshakes at a time from this process (mqtt.js)`);
      notes.push(`CPU seconds used while connecting: ${Object.entries(cpu).map(([n, s]) => `${n} ${s.toFixed(1)}`).join(', ')}`);
    } finally {
      await authed.fleet.stop();
    }
    return result;
  },
};
