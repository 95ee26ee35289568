import { DeviceBehaviour, DeviceIdentity, VirtualDevice } from './device';
import { Random } from './random';
import { FleetStats } from './stats';

/** Periodic disruptions of a fleet. */
export interface Disruptions {
  /** Every `everyS` seconds, a `share` of devices loses its connection at once (and reconnects). */
  storm?: { everyS: number; share: number };
  /** Every `everyS` seconds, a `share` of devices sends `messages` extra messages back to back. */
  burst?: { everyS: number; messages: number; share: number };
}

/** Parses `every=30,share=0.5` style options (`key=value` pairs) into numbers, checking the keys. */
export function parseKeyValues(text: string, keys: string[], what: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [key, raw] = part.split('=');
    const value = Number(raw);
    if (!keys.includes(key) || raw === undefined || !Number.isFinite(value) || value < 0) {
      throw new Error(`${what} "${part}": expected ${keys.map((k) => `${k}=<number>`).join(',')}`);
    }
    out[key] = value;
  }
  return out;
}

/** `--storm every=30,share=0.5` */
export function parseStorm(text: string): NonNullable<Disruptions['storm']> {
  const v = parseKeyValues(text, ['every', 'share'], 'storm');
  if (!(v.every > 0)) throw new Error('storm: every=<seconds> is required and must be > 0');
  return { everyS: v.every, share: Math.min(1, v.share ?? 1) };
}

/** `--burst every=10,messages=50,share=1` */
export function parseBurst(text: string): NonNullable<Disruptions['burst']> {
  const v = parseKeyValues(text, ['every', 'messages', 'share'], 'burst');
  if (!(v.every > 0)) throw new Error('burst: every=<seconds> is required and must be > 0');
  return { everyS: v.every, messages: Math.max(1, Math.floor(v.messages ?? 100)), share: Math.min(1, v.share ?? 1) };
}

/** Picks `round(share × n)` distinct items. */
export function pickShare<T>(items: T[], share: number, random: Random): T[] {
  const count = Math.round(items.length * share);
  const copy = [...items];
  for (let i = 0; i < count; i++) {
    const j = i + random.int(copy.length - i);
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy.slice(0, count);
}

/** Options of a fleet besides its devices. */
export interface FleetOptions {
  behaviour: DeviceBehaviour;
  disruptions?: Disruptions;
  /** Connections opened at the same time while the fleet comes up. */
  connectConcurrency?: number;
}

/** A set of virtual devices run together, with shared statistics and disruptions. */
export class Fleet {
  readonly stats = new FleetStats();
  readonly devices: VirtualDevice[];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly random: Random;

  constructor(
    identities: DeviceIdentity[],
    readonly options: FleetOptions,
    behaviourOf: (identity: DeviceIdentity, index: number) => DeviceBehaviour = () => options.behaviour,
  ) {
    if (identities.length === 0) throw new Error('a fleet needs at least one device');
    this.random = new Random(options.behaviour.seed ^ 0x2545f491);
    this.devices = identities.map((identity, i) => {
      const neighbour = identities[(i + 1) % identities.length];
      const foreign = neighbour.deviceId !== identity.deviceId ? neighbour.deviceId : `${identity.deviceId}-other`;
      return new VirtualDevice(identity, behaviourOf(identity, i), this.stats, foreign);
    });
    this.stats.devices = this.devices.length;
  }

  /**
   * Connects every device (a bounded number at a time), recording how long
   * it took; devices the server refuses are counted and left out. Throws
   * when no device could connect. An abort leaves the rest unconnected.
   */
  async connect(signal?: AbortSignal): Promise<void> {
    const started = Date.now();
    const queue = [...this.devices];
    const failed: VirtualDevice[] = [];
    let firstError: Error | undefined;
    const worker = async () => {
      for (let device = queue.shift(); device && !signal?.aborted; device = queue.shift()) {
        try {
          await device.connect();
        } catch (err) {
          failed.push(device);
          firstError ??= err as Error;
        }
      }
    };
    const concurrency = Math.max(1, Math.min(this.options.connectConcurrency ?? 100, this.devices.length));
    await Promise.all(Array.from({ length: concurrency }, worker));
    this.stats.allConnectedMs = Date.now() - started;
    if (failed.length === this.devices.length) throw new Error(`no device could connect: ${firstError?.message}`);
    for (const device of failed) this.devices.splice(this.devices.indexOf(device), 1);
  }

  /** Starts publishing on every connected device and arms the disruptions. */
  start(): void {
    for (const device of this.devices) device.start();
    const { storm, burst } = this.options.disruptions ?? {};
    if (storm) this.timers.push(setInterval(() => this.storm(storm.share), storm.everyS * 1000));
    if (burst) this.timers.push(setInterval(() => this.burst(burst.messages, burst.share), burst.everyS * 1000));
  }

  /** Drops the connections of a share of the devices at once; they reconnect by themselves. */
  storm(share: number): number {
    const victims = pickShare(this.devices, share, this.random);
    for (const device of victims) device.link.drop();
    return victims.length;
  }

  /** Makes a share of the devices send `messages` extra messages back to back. */
  burst(messages: number, share: number): number {
    const senders = pickShare(this.devices, share, this.random);
    for (const device of senders) device.triggerBurst(messages);
    return senders.length;
  }

  /** Stops every device and closes its connection (flushing what is queued). */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.length = 0;
    const queue = [...this.devices];
    const worker = async () => {
      for (let device = queue.shift(); device; device = queue.shift()) await device.stop();
    };
    await Promise.all(Array.from({ length: Math.min(200, queue.length) }, worker));
  }
}
