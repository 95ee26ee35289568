import { parseArgs } from 'node:util';
import { defaultAddress } from '@iot-mesh/runtime';
import { DEFAULT_BEHAVIOUR, DeviceBehaviour } from './device';
import { Encoding, ENCODINGS } from './encoding';
import { parseFaultPlan } from './faults';
import { parseFirmwarePlan } from './firmware';
import { Disruptions, parseBurst, parseStorm } from './fleet';
import { Transport, TRANSPORTS } from './links';
import { PROFILE_NAMES, ProfileName } from './profiles';
import { ApiAuth } from './provision';

/** Where the fleet's devices come from. */
export type DeviceSource =
  | { kind: 'open'; tenantId: string; prefix: string }
  | { kind: 'credentials'; file: string }
  | { kind: 'provision'; deviceAddress: string; auth: ApiAuth; prefix?: string; saveTo?: string }
  | { kind: 'claim'; deviceAddress: string; provisioningKey: string; serialPrefix: string; stateFile: string };

/** Everything a simulator run needs. */
export interface SimulatorOptions {
  devices: number;
  source: DeviceSource;
  /** `mixed` cycles through the profiles. */
  profile: ProfileName | 'mixed';
  behaviour: DeviceBehaviour;
  disruptions: Disruptions;
  /** Stop after this many seconds; undefined runs until Ctrl-C. */
  durationS?: number;
  connectConcurrency: number;
  /** Progress lines on stderr. */
  progress: boolean;
  /** Print the summary as JSON on stdout instead of a table. */
  json: boolean;
}

export const USAGE = `Usage: npm run simulate -- [options]

A fleet of virtual devices publishing telemetry to the platform.

Devices (one of):
  --tenant <id>              open development server: devices <prefix>-1..N of this tenant, no credentials (default "dev")
  --credentials <file>       a credentials export file (device ids, tenant, token, URLs)
  --provision                create the devices through the device API with credentials; needs
      --device-api <host:port>   (default ${defaultAddress('device')})
      --signing-api <host:port>  (default ${defaultAddress('signing')}), --tenant-name, --email and
                                 SIMULATOR_PASSWORD in the environment; or SIMULATOR_API_KEY
      --save-credentials <file>  keep the minted credentials for later runs
  --provisioning-key <secret> provisioning mode: each device claims itself with this key (or
                             SIMULATOR_PROVISIONING_KEY in the environment) through the public ClaimDevice
                             of --device-api, by its serial number, and keeps its credential; needs no login
      --serial-prefix <text>     serials <text>-0001..N (default "SIM")
      --claims <file>            the claimed credentials by serial (default simulator-claims-<serial prefix>.json);
                                 a restart reuses them, a serial claimed again is the same device
  --prefix <text>            device id prefix (default "sim")
  -n, --devices <N>          number of devices (default 10; with --credentials, at most the file's)

Traffic:
  --profile <p>              weather | power | gps | mixed (default weather)
  --transport <t>            nats | mqtt (default nats)
  --url <url>                server URL (default: the credential's, else nats://127.0.0.1:4222 / mqtt://127.0.0.1:1883)
  --encoding <e>             json | protobuf (default json)
  --rate <r>                 messages per second per device (default 1)
  --jitter <j>               interval jitter share 0..1 (default 0.1)
  -k, --points <K>           points per message (default 5)
  --qos <0|1>                MQTT QoS (default 1)
  --no-trace                 no traceparent header
  --passive                  no state reports, commands or desired state
  --seed <n>                 seed of the generators (default 1)
  --firmware <spec>          desired firmware handling, e.g. version=1.0,install-ms=200,install-fail=0.1,bad-checksum=0.05
                             (download over http(s), verify SHA-256, install, report firmware.version/status)

Faults and disruptions:
  --faults <spec>            shares of bad messages, e.g. malformed=0.01,oversized=0.01,wrong-subject=0.01,clock-skew=0.01
                             (also oversize-bytes=<n>, skew=<seconds>)
  --storm every=<s>,share=<0..1>              drop a share of connections at once, periodically
  --burst every=<s>,messages=<n>,share=<0..1> extra messages back to back, periodically

Run:
  -d, --duration <s>         stop after this many seconds (default: until Ctrl-C)
  --connect-concurrency <n>  connections opened at once (default 100)
  --quiet                    no progress lines
  --json                     summary as JSON on stdout
  -h, --help
`;

function number(name: string, raw: string | undefined, fallback: number, check: (n: number) => boolean, rule: string): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || !check(n)) throw new Error(`--${name} ${JSON.stringify(raw)}: ${rule}`);
  return n;
}

function oneOf<T extends string>(name: string, raw: string | undefined, allowed: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new Error(`--${name} ${JSON.stringify(raw)}: one of ${allowed.join(', ')}`);
  return raw as T;
}

/** Parses the command line (throws with a message naming the bad option); undefined for --help. */
export function parseOptions(argv: string[], environment: NodeJS.ProcessEnv = process.env): SimulatorOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      help: { type: 'boolean', short: 'h' },
      devices: { type: 'string', short: 'n' },
      tenant: { type: 'string' },
      prefix: { type: 'string' },
      credentials: { type: 'string' },
      provision: { type: 'boolean' },
      'device-api': { type: 'string' },
      'signing-api': { type: 'string' },
      'tenant-name': { type: 'string' },
      email: { type: 'string' },
      'save-credentials': { type: 'string' },
      'provisioning-key': { type: 'string' },
      'serial-prefix': { type: 'string' },
      claims: { type: 'string' },
      profile: { type: 'string' },
      transport: { type: 'string' },
      url: { type: 'string' },
      encoding: { type: 'string' },
      rate: { type: 'string' },
      jitter: { type: 'string' },
      points: { type: 'string', short: 'k' },
      qos: { type: 'string' },
      'no-trace': { type: 'boolean' },
      passive: { type: 'boolean' },
      seed: { type: 'string' },
      firmware: { type: 'string' },
      faults: { type: 'string' },
      storm: { type: 'string' },
      burst: { type: 'string' },
      duration: { type: 'string', short: 'd' },
      'connect-concurrency': { type: 'string' },
      quiet: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  if (values.help) return undefined;

  const transport = oneOf<Transport>('transport', values.transport, TRANSPORTS, 'nats');
  const profile = oneOf<ProfileName | 'mixed'>('profile', values.profile, [...PROFILE_NAMES, 'mixed'], 'weather');
  const prefix = values.prefix ?? 'sim';
  const provisioningKey = values['provisioning-key'] ?? environment.SIMULATOR_PROVISIONING_KEY;
  if ([values.credentials, values.provision, provisioningKey].filter(Boolean).length > 1) {
    throw new Error('--credentials, --provision and --provisioning-key (SIMULATOR_PROVISIONING_KEY) exclude each other');
  }

  let source: DeviceSource;
  if (values.credentials) source = { kind: 'credentials', file: values.credentials };
  else if (provisioningKey) {
    const serialPrefix = values['serial-prefix'] ?? 'SIM';
    if (!/^[!-~]{1,100}$/.test(serialPrefix)) throw new Error(`--serial-prefix ${JSON.stringify(serialPrefix)}: 1-100 printable characters without spaces`);
    source = { kind: 'claim', deviceAddress: values['device-api'] ?? defaultAddress('device'), provisioningKey, serialPrefix, stateFile: values.claims ?? `simulator-claims-${serialPrefix}.json` };
  }
  else if (values.provision) {
    const apiKey = environment.SIMULATOR_API_KEY;
    let auth: ApiAuth;
    if (apiKey) auth = { kind: 'api-key', apiKey };
    else {
      const password = environment.SIMULATOR_PASSWORD;
      if (!values['tenant-name'] || !values.email || !password) {
        throw new Error('--provision needs SIMULATOR_API_KEY, or --tenant-name, --email and SIMULATOR_PASSWORD');
      }
      auth = { kind: 'password', signingAddress: values['signing-api'] ?? defaultAddress('signing'), tenant: values['tenant-name'], email: values.email, password };
    }
    source = { kind: 'provision', deviceAddress: values['device-api'] ?? defaultAddress('device'), auth, prefix: values.prefix, saveTo: values['save-credentials'] };
  } else source = { kind: 'open', tenantId: values.tenant ?? 'dev', prefix };

  const rate = number('rate', values.rate, DEFAULT_BEHAVIOUR.rate, (n) => n > 0 && n <= 10_000, 'messages per second per device, > 0 and ≤ 10000');
  const behaviour: DeviceBehaviour = {
    ...DEFAULT_BEHAVIOUR,
    profile: profile === 'mixed' ? 'weather' : profile,
    transport,
    url: values.url ?? (source.kind === 'open' ? (transport === 'mqtt' ? 'mqtt://127.0.0.1:1883' : 'nats://127.0.0.1:4222') : undefined),
    encoding: oneOf<Encoding>('encoding', values.encoding, ENCODINGS, 'json'),
    rate,
    jitter: number('jitter', values.jitter, DEFAULT_BEHAVIOUR.jitter, (n) => n >= 0 && n <= 1, 'a share between 0 and 1'),
    points: number('points', values.points, DEFAULT_BEHAVIOUR.points, (n) => Number.isInteger(n) && n >= 1 && n <= 10_000, 'a whole number 1..10000'),
    qos: number('qos', values.qos, 1, (n) => n === 0 || n === 1, '0 or 1') as 0 | 1,
    trace: !values['no-trace'],
    interactive: !values.passive,
    seed: number('seed', values.seed, 1, Number.isInteger, 'a whole number'),
    faults: parseFaultPlan(values.faults),
    firmware: parseFirmwarePlan(values.firmware),
  };
  return {
    devices: number('devices', values.devices, 10, (n) => Number.isInteger(n) && n >= 1 && n <= 100_000, 'a whole number 1..100000'),
    source,
    profile,
    behaviour,
    disruptions: {
      storm: values.storm ? parseStorm(values.storm) : undefined,
      burst: values.burst ? parseBurst(values.burst) : undefined,
    },
    durationS: values.duration === undefined ? undefined : number('duration', values.duration, 0, (n) => n > 0, 'seconds, > 0'),
    connectConcurrency: number('connect-concurrency', values['connect-concurrency'], 100, (n) => Number.isInteger(n) && n >= 1, 'a whole number ≥ 1'),
    progress: !values.quiet,
    json: !!values.json,
  };
}
