import { connect, NatsConnection, Msg } from 'nats';
import { CommandReply, CommandRequest, DesiredState, StateReport, Telemetry } from '../../gen/ts/iot/telemetry/v1/telemetry';
import { TestNatsServer } from '../../testing/nats-server';
import { DEFAULT_BEHAVIOUR, DeviceBehaviour, DeviceIdentity } from '../src/device';
import { decodeTelemetry, isTraceparent } from '../src/encoding';
import { parseFaultPlan } from '../src/faults';
import { Fleet } from '../src/fleet';

/** A fleet of virtual devices against a real nats-server with its MQTT listener (no auth: development mode). */
let server: TestNatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await TestNatsServer.start({ jetstream: true, mqtt: true });
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

function identities(tenantId: string, n: number): DeviceIdentity[] {
  return Array.from({ length: n }, (_, i) => ({ tenantId, deviceId: `d-${i + 1}` }));
}

/** Subscribes first, then runs `act`, and returns what arrived once `until` holds (or the timeout passes). */
async function receive(subject: string, act: () => Promise<void>, until: (msgs: Msg[]) => boolean, timeoutMs = 15_000): Promise<Msg[]> {
  const msgs: Msg[] = [];
  const sub = nc.subscribe(subject);
  await nc.flush();
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  const reading = (async () => {
    for await (const m of sub) {
      msgs.push(m);
      if (until(msgs)) break;
    }
  })();
  await act();
  await reading;
  clearTimeout(timer);
  sub.unsubscribe();
  return msgs;
}

function decodeState(data: Uint8Array): StateReport {
  return data[0] === 0x7b ? StateReport.fromJSON(JSON.parse(Buffer.from(data).toString())) : StateReport.decode(data);
}

function behaviour(overrides: Partial<DeviceBehaviour>): DeviceBehaviour {
  return { ...DEFAULT_BEHAVIOUR, jitter: 0.2, ...overrides };
}

describe.each([
  ['nats', 'protobuf'],
  ['mqtt', 'json'],
] as const)('over %s with %s payloads', (transport, encoding) => {
  const tenant = `t-${transport}`;
  let fleet: Fleet;

  beforeAll(async () => {
    const url = transport === 'mqtt' ? server.mqttUrl : server.url;
    fleet = new Fleet(identities(tenant, 4), { behaviour: behaviour({ transport, url, encoding, rate: 20, points: 3, profile: 'weather' }) });
    const states = await receive(`iot.${tenant}.dev.*.state`, () => fleet.connect(), (m) => m.length >= 4);
    expect(states.map((m) => m.subject).sort()).toEqual([1, 2, 3, 4].map((i) => `iot.${tenant}.dev.d-${i}.state`));
    const reported = decodeState(states[0].data).reported;
    expect(reported).toMatchObject({ profile: 'weather', transport, encoding, points_per_message: 3 });
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it('publishes decodable telemetry from every device on its own subject', async () => {
    const msgs = await receive(`iot.${tenant}.dev.*.tel`, async () => fleet.start(), (m) => m.length >= 80);
    expect(msgs.length).toBeGreaterThanOrEqual(80);
    const bySubject = new Map<string, number>();
    for (const m of msgs) {
      const t = decodeTelemetry(m.data, encoding);
      expect(m.subject).toBe(`iot.${tenant}.dev.${t.deviceId}.tel`);
      expect(t.points).toHaveLength(3);
      expect(t.messageId.startsWith(`${t.deviceId}-`)).toBe(true);
      bySubject.set(m.subject, (bySubject.get(m.subject) ?? 0) + 1);
      if (transport === 'nats') {
        expect(m.headers?.get('Nats-Msg-Id')).toBe(t.messageId);
        expect(isTraceparent(m.headers?.get('traceparent') ?? '')).toBe(true);
      }
    }
    expect(bySubject.size).toBe(4);
    expect(fleet.stats.sent).toBeGreaterThanOrEqual(80);
    expect(fleet.stats.errorCount).toBe(0);
  });

  it('counts server acknowledgements', async () => {
    await new Promise((r) => setTimeout(r, 300));
    expect(fleet.stats.acked).toBeGreaterThan(0);
    expect(fleet.stats.acked).toBeLessThanOrEqual(fleet.stats.sent);
  });

  it('applies desired state and reports it', async () => {
    const desired = DesiredState.toJSON({ desired: { interval_ms: 40, points_per_message: 7 }, version: 3n });
    const payload = transport === 'nats' ? DesiredState.encode(DesiredState.fromJSON(desired)).finish() : Buffer.from(JSON.stringify(desired));
    const states = await receive(
      `iot.${tenant}.dev.d-2.state`,
      async () => nc.publish(`iot.${tenant}.dev.d-2.desired`, payload),
      (m) => m.length >= 1,
    );
    const report = decodeState(states[0].data);
    expect(report.reported).toMatchObject({ interval_ms: 40, points_per_message: 7, desired_version: 3 });
    const tel = await receive(`iot.${tenant}.dev.d-2.tel`, async () => undefined, (m) => decodeTelemetry(m[m.length - 1].data).points.length === 7);
    expect(decodeTelemetry(tel[tel.length - 1].data).points).toHaveLength(7);
  });

  it('bursts: extra messages back to back', async () => {
    const before = fleet.stats.sent;
    expect(fleet.burst(50, 1)).toBe(4);
    await new Promise((r) => setTimeout(r, 500));
    expect(fleet.stats.sent - before).toBeGreaterThanOrEqual(200);
  });

  it('reconnect storms: dropped devices come back and go on publishing', async () => {
    const before = fleet.stats.reconnects;
    expect(fleet.storm(0.5)).toBe(2);
    const deadline = Date.now() + 15_000;
    while (fleet.stats.reconnects < before + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(fleet.stats.reconnects - before).toBeGreaterThanOrEqual(2);
    const msgs = await receive(`iot.${tenant}.dev.*.tel`, async () => undefined, (m) => new Set(m.map((x) => x.subject)).size === 4);
    expect(new Set(msgs.map((m) => m.subject)).size).toBe(4);
  });
});

describe('commands over NATS', () => {
  const tenant = 't-cmd';
  let fleet: Fleet;

  beforeAll(async () => {
    fleet = new Fleet(identities(tenant, 1), { behaviour: behaviour({ transport: 'nats', url: server.url, rate: 5 }) });
    await fleet.connect();
    fleet.start();
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it('answers with a CommandReply in the request’s encoding', async () => {
    const request = CommandRequest.encode({ commandId: 'c-1', name: 'ping' }).finish();
    const reply = CommandReply.decode((await nc.request(`iot.${tenant}.dev.d-1.cmd`, request, { timeout: 5000 })).data);
    expect(reply).toMatchObject({ commandId: 'c-1', ok: true });
    expect(reply.result?.pong).toBe(true);

    const jsonRequest = Buffer.from(JSON.stringify(CommandRequest.toJSON({ commandId: 'c-2', name: 'set_interval', payload: { interval_ms: 100 } })));
    const jsonReply = CommandReply.fromJSON(JSON.parse(Buffer.from((await nc.request(`iot.${tenant}.dev.d-1.cmd`, jsonRequest, { timeout: 5000 })).data).toString()));
    expect(jsonReply).toMatchObject({ commandId: 'c-2', ok: true, result: { interval_ms: 100 } });
    expect(fleet.devices[0].interval).toBe(100);
  });

  it('refuses unknown commands and bad arguments with a reason', async () => {
    const unknown = CommandReply.decode((await nc.request(`iot.${tenant}.dev.d-1.cmd`, CommandRequest.encode({ commandId: 'c-3', name: 'self_destruct' }).finish(), { timeout: 5000 })).data);
    expect(unknown).toMatchObject({ commandId: 'c-3', ok: false });
    expect(unknown.error).toMatch(/unknown command/);
    const bad = CommandReply.decode(
      (await nc.request(`iot.${tenant}.dev.d-1.cmd`, CommandRequest.encode({ commandId: 'c-4', name: 'set_interval', payload: { interval_ms: -5 } }).finish(), { timeout: 5000 })).data,
    );
    expect(bad.ok).toBe(false);
    expect(fleet.stats.commands).toBe(4);
  });
});

describe('faults on the wire', () => {
  it('sends the planned share of bad messages among good ones', async () => {
    const tenant = 't-faults';
    const fleet = new Fleet(identities(tenant, 2), {
      behaviour: behaviour({ transport: 'nats', url: server.url, encoding: 'json', rate: 100, interactive: false, faults: parseFaultPlan('malformed=0.2,wrong-subject=0.2,oversize-bytes=2000,oversized=0.1') }),
    });
    await fleet.connect();
    const msgs = await receive(`iot.${tenant}.dev.*.tel`, async () => fleet.start(), (m) => m.length >= 200);
    await fleet.stop();
    let malformed = 0;
    let foreign = 0;
    let big = 0;
    for (const m of msgs) {
      let t: Telemetry;
      try {
        t = decodeTelemetry(m.data, 'json');
      } catch {
        malformed++;
        continue;
      }
      if (m.subject !== `iot.${tenant}.dev.${t.deviceId}.tel`) foreign++;
      if (m.data.length >= 2000) big++;
    }
    expect(malformed / msgs.length).toBeGreaterThan(0.08);
    expect(malformed / msgs.length).toBeLessThan(0.35);
    expect(foreign / msgs.length).toBeGreaterThan(0.08);
    expect(big).toBeGreaterThan(0);
    expect(fleet.stats.faults.malformed).toBeGreaterThan(0);
  });
});

describe('commands over MQTT', () => {
  it('publishes the CommandReply on the command reply subject, since MQTT has no reply subjects', async () => {
    const tenant = 't-mqtt-cmd';
    const fleet = new Fleet(identities(tenant, 1), { behaviour: behaviour({ transport: 'mqtt', url: server.mqttUrl, rate: 1 }) });
    await fleet.connect();
    try {
      const request = Buffer.from(JSON.stringify(CommandRequest.toJSON({ commandId: 'm-1', name: 'ping' })));
      const replies = await receive(`iot.${tenant}.dev.d-1.cmd.reply`, async () => nc.publish(`iot.${tenant}.dev.d-1.cmd`, request), (m) => m.length >= 1);
      const reply = CommandReply.fromJSON(JSON.parse(Buffer.from(replies[0].data).toString()));
      expect(reply).toMatchObject({ commandId: 'm-1', ok: true });
    } finally {
      await fleet.stop();
    }
  });
});
