import { claimDevices, fleetSerials } from './claim';
import { DeviceIdentity } from './device';
import { Fleet } from './fleet';
import { SimulatorOptions } from './options';
import { PROFILE_NAMES, ProfileName } from './profiles';
import { authorization, provisionDevices, readCredentialsFile, writeCredentialsFile } from './provision';
import { FleetStats, progressLine, snapshot, summaryTable } from './stats';

/** The profile of device `index` in a run. */
export function profileOf(options: Pick<SimulatorOptions, 'profile' | 'behaviour'>, index: number): ProfileName {
  return options.profile === 'mixed' ? PROFILE_NAMES[index % PROFILE_NAMES.length] : options.profile;
}

/** The identities of a run's devices, from its source. */
export async function resolveDevices(options: SimulatorOptions, log: (line: string) => void): Promise<DeviceIdentity[]> {
  const source = options.source;
  switch (source.kind) {
    case 'open':
      return Array.from({ length: options.devices }, (_, i) => ({ tenantId: source.tenantId, deviceId: `${source.prefix}-${i + 1}` }));
    case 'credentials': {
      const all = readCredentialsFile(source.file);
      if (all.length === 0) throw new Error(`${source.file} holds no credentials`);
      return all.slice(0, options.devices);
    }
    case 'provision': {
      const auth = await authorization(source.auth);
      log(`provisioning ${options.devices} devices through ${source.deviceAddress}…`);
      const identities = await provisionDevices({
        deviceAddress: source.deviceAddress,
        authorization: auth,
        count: options.devices,
        prefix: source.prefix,
        profileOf: (i) => profileOf(options, i),
        transport: options.behaviour.transport,
        onProgress: (n) => log(`  ${n} created`),
        onNoCredentials: (reason) => log(`the device service issues no credentials (${reason}); devices connect without`),
      });
      if (source.saveTo) {
        writeCredentialsFile(source.saveTo, identities);
        log(`credentials saved to ${source.saveTo}`);
      }
      return identities;
    }
    case 'claim': {
      log(`claiming ${options.devices} devices (serials ${source.serialPrefix}-0001…) with a provisioning key at ${source.deviceAddress}…`);
      const fleet = await claimDevices({
        deviceAddress: source.deviceAddress,
        provisioningKey: source.provisioningKey,
        serials: fleetSerials(source.serialPrefix, options.devices),
        stateFile: source.stateFile,
        transport: options.behaviour.transport,
        onProgress: (n) => n % 100 === 0 && log(`  ${n} claimed`),
      });
      log(`${fleet.claimed} claimed, ${fleet.reused} reused from ${source.stateFile}`);
      return fleet.identities;
    }
  }
}

/** A running simulation that can be stopped. */
export interface Simulation {
  fleet: Fleet;
  stats: FleetStats;
  /** Resolves when the run ended (duration over or `stop()` called), after every device closed. */
  done: Promise<FleetStats>;
  stop(): void;
}

/**
 * Starts a simulation: resolves devices, connects them, starts publishing,
 * prints progress every second (stderr) until the duration is over or
 * `stop()` is called, then closes every connection.
 */
export async function startSimulation(options: SimulatorOptions, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<Simulation> {
  const identities = await resolveDevices(options, log);
  const fleet = new Fleet(identities, { behaviour: options.behaviour, disruptions: options.disruptions, connectConcurrency: options.connectConcurrency }, (_, i) => ({
    ...options.behaviour,
    profile: profileOf(options, i),
  }));
  const stats = fleet.stats;
  const interactive = options.progress && process.stderr.isTTY;
  let previous = snapshot(stats);
  let ticks = 0;
  const progress = options.progress
    ? setInterval(() => {
        const current = snapshot(stats);
        const line = progressLine(stats, previous, current);
        previous = current;
        // On a terminal the line is rewritten in place; in a log file, one line every 5 s.
        if (interactive) process.stderr.write(`\r\x1b[2K${line}`);
        else if (++ticks % 5 === 0) log(line);
      }, 1000)
    : undefined;

  const aborted = new AbortController();
  const stopped = new Promise<void>((resolve) => aborted.signal.addEventListener('abort', () => resolve()));
  const stopRequested = () => aborted.abort();
  const done = (async () => {
    try {
      await fleet.connect(aborted.signal);
      log(`${stats.online} of ${stats.devices} devices connected in ${stats.allConnectedMs} ms`);
      fleet.start();
      const timer = options.durationS ? setTimeout(stopRequested, options.durationS * 1000) : undefined;
      await stopped;
      clearTimeout(timer);
    } finally {
      if (progress) clearInterval(progress);
      if (interactive) process.stderr.write('\n');
      await fleet.stop();
    }
    return stats;
  })();
  return { fleet, stats, done, stop: stopRequested };
}

export { summaryTable };
