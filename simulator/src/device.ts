import { commandReplySubject, deviceSubject, payloadEncoding, withPublishSpan } from '@iot-mesh/runtime';
import { CommandReply, Telemetry } from '../../gen/ts/iot/telemetry/v1/telemetry';
import {
  decodeCommandRequest,
  decodeDesiredState,
  Encoding,
  encodeCommandReply,
  encodeStateReport,
  MessageIds,
  newTraceparent,
} from './encoding';
import { buildMessage, DEFAULT_FAULT_PLAN, FaultContext, FaultPlan, hasFaults, OutgoingMessage, pickFault } from './faults';
import { DEFAULT_FIRMWARE_PLAN, FirmwareAgent, FirmwarePlan } from './firmware';
import { createLink, DeviceLink, Transport } from './links';
import { createSensor, PointSource, ProfileName } from './profiles';
import { Random, seedOf } from './random';
import { FleetStats } from './stats';

/** Who a virtual device is and how it may connect (from provisioning or a credentials file). */
export interface DeviceIdentity {
  tenantId: string;
  deviceId: string;
  /** The device's NATS user JWT: the MQTT password (bearer) of an MQTT credential; absent on an open development server. */
  token?: string;
  /** A NATS credential's user seed, which signs the server's nonce (the JWT alone does not log in). */
  seed?: string;
  natsUrl?: string;
  mqttUrl?: string;
}

/** How a virtual device behaves. */
export interface DeviceBehaviour {
  profile: ProfileName;
  transport: Transport;
  /** Server URL; when absent the identity's URL for the transport is used. */
  url?: string;
  encoding: Encoding;
  /** Telemetry messages per second, per device. */
  rate: number;
  /** Each interval varies uniformly by ± this share (0–1). */
  jitter: number;
  /** Points per message. */
  points: number;
  qos: 0 | 1;
  faults: FaultPlan;
  /** Send a `traceparent` with every message (NATS headers; MQTT 3.1.1 cannot carry it). */
  trace: boolean;
  /** Report state on connect and answer commands / desired state. */
  interactive: boolean;
  /** Most unacknowledged messages per device before it waits. */
  maxInFlight: number;
  /** Base seed; each device derives its own from it and its id. */
  seed: number;
  /** Desired firmware: download, verify, install, report (interactive devices only). */
  firmware: FirmwarePlan;
}

export const DEFAULT_BEHAVIOUR: DeviceBehaviour = {
  profile: 'weather',
  transport: 'nats',
  encoding: 'json',
  rate: 1,
  jitter: 0.1,
  points: 5,
  qos: 1,
  faults: DEFAULT_FAULT_PLAN,
  trace: true,
  interactive: true,
  maxInFlight: 256,
  seed: 1,
  firmware: DEFAULT_FIRMWARE_PLAN,
};

/** The URL a device connects to: the override, or the one its credential names. */
export function linkUrl(identity: DeviceIdentity, behaviour: DeviceBehaviour): string {
  const url = behaviour.url ?? (behaviour.transport === 'mqtt' ? identity.mqttUrl : identity.natsUrl);
  if (!url) throw new Error(`device ${identity.deviceId}: no ${behaviour.transport} URL given or in its credential`);
  return url;
}

/**
 * One virtual device: connects with its own credential, reports its state,
 * publishes telemetry on a jittered schedule (catching up after stalls, so the
 * fleet's rate holds), injects the planned faults, and answers commands and
 * desired-state updates.
 */
export class VirtualDevice {
  readonly link: DeviceLink;
  readonly telemetrySubject: string;
  private readonly random: Random;
  private readonly source: PointSource;
  private readonly ids: MessageIds;
  private readonly faultContext: FaultContext;
  private running = false;
  private wake?: () => void;
  private timer?: NodeJS.Timeout;
  private loop?: Promise<void>;
  private burst = 0;
  private intervalMs: number;
  private pointsPerMessage: number;
  private desiredVersion = 0n;
  private online = false;
  private backToBack = 0;
  private readonly firmware: FirmwareAgent;

  constructor(
    readonly identity: DeviceIdentity,
    readonly behaviour: DeviceBehaviour,
    private readonly stats: FleetStats,
    /** Another device's id, for wrong-subject faults. */
    foreignDeviceId: string,
  ) {
    const seed = seedOf(`${behaviour.seed}:${identity.deviceId}`);
    this.random = new Random(seed);
    this.source = new PointSource(createSensor(behaviour.profile, seed ^ 0x5bd1e995));
    this.ids = new MessageIds(identity.deviceId);
    this.intervalMs = 1000 / behaviour.rate;
    this.pointsPerMessage = behaviour.points;
    this.telemetrySubject = deviceSubject(identity.tenantId, identity.deviceId, 'tel');
    this.faultContext = {
      subject: this.telemetrySubject,
      foreignSubject: deviceSubject(identity.tenantId, foreignDeviceId, 'tel'),
      encoding: behaviour.encoding,
      random: this.random,
      plan: behaviour.faults,
      skewCount: 0,
    };
    this.firmware = new FirmwareAgent(behaviour.firmware ?? DEFAULT_FIRMWARE_PLAN, new Random(seed ^ 0x2545f491), () => this.reportState(), identity.token ? { tenantId: identity.tenantId, token: identity.token } : undefined);
    this.link = createLink({
      transport: behaviour.transport,
      url: linkUrl(identity, behaviour),
      clientId: identity.deviceId,
      token: identity.token,
      seed: identity.seed,
      qos: behaviour.qos,
      maxInFlight: behaviour.maxInFlight,
      events: {
        onConnect: (first) => {
          this.setOnline(true);
          stats.connects++;
          if (!first) stats.reconnects++;
          if (!first && this.running && behaviour.interactive) void this.reportState();
        },
        onDisconnect: () => {
          this.setOnline(false);
          stats.disconnects++;
        },
        onError: (kind) => stats.error(kind),
        onAck: (count) => (stats.acked += count),
        onUnacknowledged: (count) => (stats.unacknowledged += count),
      },
    });
  }

  /** Current telemetry interval (ms); commands and desired state can change it. */
  get interval(): number {
    return this.intervalMs;
  }

  /** Connects, subscribes to commands and desired state, reports state; throws when the server refuses. */
  async connect(): Promise<void> {
    try {
      await this.link.connect();
    } catch (err) {
      this.stats.connectFailures++;
      throw err;
    }
    if (this.behaviour.interactive) {
      const { tenantId, deviceId } = this.identity;
      await this.link.subscribe(deviceSubject(tenantId, deviceId, 'cmd'), (payload, reply) => this.onCommand(payload, reply));
      await this.link.subscribe(deviceSubject(tenantId, deviceId, 'desired'), (payload) => this.onDesired(payload));
      await this.reportState();
    }
  }

  /** Starts publishing telemetry. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Sends `count` extra messages back to back, as soon as possible. */
  triggerBurst(count: number): void {
    this.burst += count;
    this.wake?.();
  }

  /** Stops publishing and closes the connection after flushing. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop?.catch(() => undefined);
    await this.link.close();
    this.setOnline(false);
  }

  private setOnline(online: boolean): void {
    if (online !== this.online) this.stats.online += online ? 1 : -1;
    this.online = online;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        clearTimeout(this.timer);
        this.wake = undefined;
        resolve();
      };
      this.timer = setTimeout(this.wake, ms);
    });
  }

  private nextGap(): number {
    const j = this.behaviour.jitter;
    return this.intervalMs * (1 + j * (2 * this.random.next() - 1));
  }

  private async run(): Promise<void> {
    // Devices start at a random phase so a fleet does not publish in lock-step.
    let due = Date.now() + this.random.next() * this.intervalMs;
    while (this.running) {
      if (this.burst > 0) {
        const count = this.burst;
        this.burst = 0;
        for (let i = 0; i < count && this.running; i++) {
          await this.publishTelemetry();
          if (i % 32 === 31) await new Promise((resolve) => setImmediate(resolve));
        }
        continue;
      }
      const wait = due - Date.now();
      if (wait > 0) {
        this.backToBack = 0;
        await this.sleep(wait);
        continue;
      }
      await this.publishTelemetry();
      // Catching up runs on resolved promises only; let timers and sockets of the process have a turn.
      if (++this.backToBack % 32 === 0) await new Promise((resolve) => setImmediate(resolve));
      due += this.nextGap();
      // After a long stall (reconnect, overload) resume the schedule instead of flooding to catch up.
      if (Date.now() - due > 5000) due = Date.now();
    }
  }

  /** Builds the next telemetry message (and its fault, if one is drawn). */
  nextMessage(now = new Date()): { message: Telemetry; outgoing: OutgoingMessage } {
    const message: Telemetry = {
      deviceId: this.identity.deviceId,
      messageId: this.ids.next(),
      points: this.source.next(this.pointsPerMessage, now, this.intervalMs),
    };
    const fault = hasFaults(this.behaviour.faults) ? pickFault(this.behaviour.faults, this.random) : undefined;
    return { message, outgoing: buildMessage(message, fault, this.faultContext, now) };
  }

  private async publishTelemetry(): Promise<void> {
    const { message, outgoing } = this.nextMessage();
    const stats = this.stats;
    stats.sent++;
    stats.sentPoints += outgoing.points;
    stats.sentBytes += outgoing.payload.length;
    if (outgoing.fault) stats.faults[outgoing.fault] = (stats.faults[outgoing.fault] ?? 0) + 1;
    const publish = (traceparent?: string) => this.link.publish(outgoing.subject, outgoing.payload, { msgId: message.messageId, traceparent });
    if (!this.behaviour.trace) return publish();
    // A producer span when the process is traced (tracing entry with an exporter); otherwise a fresh random context.
    await withPublishSpan(outgoing.subject, (headers) => publish(headers.get('traceparent') || newTraceparent()), {
      messageId: message.messageId,
      bodySize: outgoing.payload.length,
    });
  }

  /** The device's reported state: what it runs and how it is configured. */
  reportedState(): Record<string, unknown> {
    return {
      firmware: this.firmware.reported(),
      profile: this.behaviour.profile,
      transport: this.behaviour.transport,
      encoding: this.behaviour.encoding,
      interval_ms: Math.round(this.intervalMs),
      points_per_message: this.pointsPerMessage,
      desired_version: Number(this.desiredVersion),
    };
  }

  private async reportState(): Promise<void> {
    const { tenantId, deviceId } = this.identity;
    try {
      await this.link.publish(deviceSubject(tenantId, deviceId, 'state'), encodeStateReport(this.reportedState(), this.behaviour.encoding), { untracked: true });
      this.stats.stateReports++;
    } catch {
      this.stats.error('publish');
    }
  }

  /**
   * Carries out a command and answers on the request's reply subject with a
   * CommandReply in the request's encoding. Known commands: `ping`,
   * `set_interval` ({interval_ms}), `report_state`, `reboot` (reconnects).
   */
  handleCommand(payload: Uint8Array): { reply: CommandReply; encoding: Encoding; after?: () => void } {
    const encoding = payloadEncoding(payload);
    let request;
    try {
      request = decodeCommandRequest(payload);
    } catch (err) {
      return { reply: { commandId: '', ok: false, error: `undecodable command: ${(err as Error).message}` }, encoding };
    }
    const reply = (ok: boolean, result?: Record<string, unknown>, error = ''): CommandReply => ({ commandId: request.commandId, ok, result, error });
    switch (request.name) {
      case 'ping':
        return { reply: reply(true, { pong: true, time: new Date().toISOString() }), encoding };
      case 'set_interval': {
        const ms = Number(request.payload?.interval_ms);
        if (!Number.isFinite(ms) || ms < 1) return { reply: reply(false, undefined, 'interval_ms must be a number ≥ 1'), encoding };
        this.intervalMs = ms;
        return { reply: reply(true, { interval_ms: ms }), encoding, after: () => void this.reportState() };
      }
      case 'report_state':
        return { reply: reply(true, this.reportedState()), encoding, after: () => void this.reportState() };
      case 'reboot':
        return { reply: reply(true, { rebooting: true }), encoding, after: () => setTimeout(() => this.link.drop(), 50) };
      default:
        return { reply: reply(false, undefined, `unknown command "${request.name}"`), encoding };
    }
  }

  private onCommand(payload: Uint8Array, reply: string | undefined): void {
    const { reply: answer, encoding, after } = this.handleCommand(payload);
    this.stats.commands++;
    // A NATS device answers the request itself; an MQTT device cannot see reply subjects and
    // publishes its answer on `<cmd subject>.reply`, where the device service matches it by command id.
    this.link.respond(reply ?? commandReplySubject(this.identity.tenantId, this.identity.deviceId), encodeCommandReply(answer, encoding));
    after?.();
  }

  /** Applies a desired-state document (interval_ms, points_per_message) and reports the result. */
  applyDesired(payload: Uint8Array): boolean {
    let desired;
    try {
      desired = decodeDesiredState(payload);
    } catch {
      this.stats.error('other');
      return false;
    }
    // The same version comes again when the device reconnects; apply each version once.
    if (this.desiredVersion !== 0n && desired.version <= this.desiredVersion) {
      // The firmware agent answers a repeated firmware with its report (the platform may have missed it).
      if (desired.version === this.desiredVersion) void this.firmware.desired(desired.desired ?? {}, true).catch(() => this.stats.error('other'));
      return false;
    }
    this.desiredVersion = desired.version;
    const doc = desired.desired ?? {};
    const ms = Number(doc.interval_ms);
    if (Number.isFinite(ms) && ms >= 1) this.intervalMs = ms;
    const points = Number(doc.points_per_message);
    if (Number.isInteger(points) && points >= 1 && points <= 10_000) this.pointsPerMessage = points;
    void this.firmware.desired(doc).catch(() => this.stats.error('other'));
    return true;
  }

  private onDesired(payload: Uint8Array): void {
    this.stats.desiredUpdates++;
    if (this.applyDesired(payload)) void this.reportState();
  }
}
