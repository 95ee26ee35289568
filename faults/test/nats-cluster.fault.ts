/**
 * The fault suite's clustered fault (issue 12 item 7, README "Clustered
 * mode"): the platform on a three-node nats-server cluster (operator mode,
 * the device service pushing tenant accounts to every node's resolver,
 * TELEMETRY with three replicas, two monitoring writer replicas), known sets
 * from MQTT QoS 1 devices (persistent sessions, every node's MQTT listener as
 * their server list) and NATS devices (every node's URL), all first on one
 * node that does not lead the TELEMETRY stream. That node is killed with -9
 * while they publish and started again on its ports and store.
 *
 * The promise checked: every PUBACKed MQTT point is stored once in
 * PostgreSQL. NATS devices are at-most-once: nothing stored twice, and what
 * they publish after the node returned and the stream's replicas are current
 * is all stored. As testing/test/nats-cluster.test.ts found, nats-server 2.9
 * PUBACKs MQTT QoS 1 before JetStream stores, so a leaderless TELEMETRY
 * stream loses PUBACKed messages: the killed node is never the leader, and
 * the test asserts the leader did not move, before and after.
 *
 * Size: FAULTS_DEVICES × FAULTS_POINTS as the other faults, at FAULTS_RATE
 * messages/s per device for FAULTS_CLUSTER_SECONDS (90) so publishing spans
 * the kill, the devices' reconnection (up to ~30 s on a loaded machine), the
 * node's return and some more: by default 50 MQTT devices × 360 messages ×
 * 20 points = 360,000 points, with 10 NATS devices (72,000) alongside.
 */
import crypto from 'node:crypto';
import { waitUntil } from '../../scripts/up-wait';
import { DeviceIdentity } from '../../simulator/src/device';
import { KnownSetSize } from '../src/known-set';
import { clearResults, FaultRig } from '../src/rig';

const FAULT = 'nats-node-kill';
const DEVICES = Number(process.env.FAULTS_DEVICES ?? 50);
const NATS_DEVICES = Number(process.env.FAULTS_NATS_DEVICES ?? 10);
const RATE = Number(process.env.FAULTS_RATE ?? 4);
const SECONDS = Number(process.env.FAULTS_CLUSTER_SECONDS ?? 90);
const SIZE: KnownSetSize = {
  messagesPerDevice: Math.round(RATE * SECONDS),
  pointsPerMessage: Number(process.env.FAULTS_POINTS ?? 20),
  ratePerDevice: RATE,
};
const STREAM = 'TELEMETRY';

let rig: FaultRig;
let devices: DeviceIdentity[];

beforeAll(async () => {
  clearResults([FAULT]);
  rig = await FaultRig.start({ natsCluster: true });
  devices = await rig.devices(`fltc${crypto.randomBytes(2).toString('hex')}`, DEVICES);
  rig.natsDevices = await rig.platform.devices(`fltcn${crypto.randomBytes(2).toString('hex')}`, NATS_DEVICES, 'nats');
}, 240_000);

afterAll(async () => {
  await rig?.stop();
}, 120_000);

/** The TELEMETRY stream's leader (a server name, `node_<i>`) once it has one and both followers are current. */
async function streamLeader(timeoutMs = 30_000): Promise<string> {
  const jsm = await rig.platform.nc.jetstreamManager();
  let leader = '';
  await waitUntil(
    'TELEMETRY with a leader and both followers current',
    async () => {
      const info = await jsm.streams.info(STREAM).catch(() => undefined);
      const replicas = info?.cluster?.replicas ?? [];
      leader = info?.cluster?.leader ?? '';
      return !!leader && replicas.length === 2 && replicas.every((r) => r.current && !r.offline);
    },
    { timeoutMs, intervalMs: 100 },
  );
  return leader;
}

test('one NATS node of three (not the TELEMETRY leader) killed with -9 while publishing, then back: no PUBACKed MQTT point lost or stored twice', async () => {
  const cluster = rig.platform.natsCluster!;
  const leader = await streamLeader();
  // The devices' node: any that does not lead TELEMETRY (the cluster test's lesson: a leaderless stream loses PUBACKed QoS 1 messages).
  const victim = [1, 2, 0].find((i) => `node_${i}` !== leader)!;
  rig.nodeOrder = [victim, ...[0, 1, 2].filter((i) => i !== victim)];
  const victimPorts = { mqtt: cluster.node(victim).mqttPort!, nats: cluster.node(victim).port };
  let leaderAtKill = '';
  let leaderAfter = '';
  let onVictimAtKill: { mqtt: Array<number | undefined>; nats: Array<number | undefined> } = { mqtt: [], nats: [] };
  let stillToCome = 0;
  const result = await rig.run(
    FAULT,
    `a three-node NATS cluster (TELEMETRY with three replicas): the node every device was on (not the stream's leader) killed with SIGKILL while they publish, started again on its ports and store once they reconnected elsewhere`,
    devices,
    SIZE,
    async (set, natsSet) => {
      await waitUntil('a few PUBACKs per device', async () => set.acked.size >= devices.length * 5, { timeoutMs: 60_000, intervalMs: 50 });
      onVictimAtKill = { mqtt: set.connectedPorts(), nats: natsSet!.connectedPorts() };
      leaderAtKill = await streamLeader();
      const mqttBefore = [...set.reconnects];
      const natsBefore = [...natsSet!.reconnects];
      const killedAt = Date.now();
      await cluster.kill(victim);
      // Every device on another node: MQTT reconnection can take up to ~30 s on a loaded machine (README "Clustered mode").
      const elsewhere = (ports: Array<number | undefined>, before: number[], now: number[], victimPort: number) => ports.every((p, i) => p !== undefined && p !== victimPort && now[i] > before[i]);
      await waitUntil(
        'every device reconnected to another node',
        async () => elsewhere(set.connectedPorts(), mqttBefore, set.reconnects, victimPorts.mqtt) && elsewhere(natsSet!.connectedPorts(), natsBefore, natsSet!.reconnects, victimPorts.nats),
        { timeoutMs: 90_000, intervalMs: 100 },
      );
      const reconnectMs = Date.now() - killedAt;
      await cluster.restart(victim);
      const downMs = Date.now() - killedAt;
      leaderAfter = await streamLeader(60_000);
      const since = Date.now();
      stillToCome = natsSet!.markRecovered();
      const recoverMs = await rig.recovered(set, since);
      return {
        recoverMs,
        notes: [
          `node_${victim} killed (TELEMETRY leader ${leaderAtKill}); every MQTT and NATS device on another node ${(reconnectMs / 1000).toFixed(1)} s after the kill; the node down ${(downMs / 1000).toFixed(1)} s, back and its replica current before "recovered" starts`,
          `TELEMETRY leader after the return: ${leaderAfter}`,
        ],
      };
    },
  );
  // Every device was on the killed node, which did not lead the stream, and leadership never moved.
  expect(onVictimAtKill).toEqual({ mqtt: devices.map(() => victimPorts.mqtt), nats: rig.natsDevices.map(() => victimPorts.nats) });
  expect({ leaderAtKill, leaderAfter }).toEqual({ leaderAtKill: leader, leaderAfter: leader });
  expect(rig.exited()).toEqual([]);
  await rig.serving();
  // MQTT QoS 1: every PUBACKed point stored, none twice.
  expect({ lost: result.lostPoints, duplicated: result.duplicatedPoints }).toEqual({ lost: 0, duplicated: 0 });
  expect(result.publishedPoints).toBeGreaterThan(0);
  // NATS devices (at-most-once): nothing twice; everything published after the node's return is stored.
  expect(stillToCome).toBeGreaterThan(0);
  expect(result.nats?.duplicatedPoints).toBe(0);
  expect(result.nats?.afterRecovery?.sentPoints).toBeGreaterThan(0);
  expect(result.nats?.afterRecovery?.storedPoints).toBe(result.nats?.afterRecovery?.sentPoints);
}, 600_000);
