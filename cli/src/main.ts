import { Command, CommanderError, Option } from 'commander';
import { defaultAddress } from '@iot-mesh/runtime/client';
import { version } from '../package.json';
import { describeFailure, failureOf } from './cli-error';
import { adminCommands } from './commands/admin';
import { alertCommands } from './commands/alerts';
import { deadLetterCommands } from './commands/dead-letters';
import { authCommands } from './commands/auth';
import { deviceCommands } from './commands/devices';
import { campaignCommands, firmwareCommands } from './commands/firmware';
import { fleetCommands } from './commands/fleet';
import { jobCommands } from './commands/jobs';
import { retentionCommands } from './commands/retention';
import { ruleCommands } from './commands/rules';
import { telemetryCommands } from './commands/telemetry';
import { EXIT, EXIT_CODES_HELP } from './exit-codes';
import { OUTPUT_FORMATS } from './output';
import { parseDuration } from './parse';

const ENVIRONMENT_HELP = `Environment (flags win over variables):
  IOTCTL_ADDRESS             one host:port serving all three services (an edge), like --address
  IOTCTL_SIGNING_ADDRESS     signing service (default ${defaultAddress('signing')}), like --signing
  IOTCTL_DEVICE_ADDRESS      device service (default ${defaultAddress('device')}), like --device
  IOTCTL_MONITORING_ADDRESS  monitoring service (default ${defaultAddress('monitoring')}), like --monitoring
  IOTCTL_API_KEY             API key secret, like --api-key (used instead of the login session)
  XDG_CONFIG_HOME            the session is kept in $XDG_CONFIG_HOME/iotctl/credentials.json (default ~/.config)`;

/** The whole command tree; `exitOverride` makes usage errors throw instead of exiting, so {@link main} decides the code. */
export function buildProgram(): Command {
  const program = new Command('iotctl')
    .description('Command-line client of iot-mesh: devices, credentials, jobs, telemetry, alerts, users and API keys over gRPC.')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .option('--address <host:port>', 'one address for all services (an edge in front of them)')
    .option('--signing <host:port>', 'signing service address')
    .option('--device <host:port>', 'device service address')
    .option('--monitoring <host:port>', 'monitoring service address')
    .option('--api-key <secret>', 'authenticate with this API key instead of the login session')
    .option('--tls', 'use TLS (server certificate checked against the system roots)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .addOption(new Option('--timeout <duration>', 'deadline of each call').argParser(parseDuration).default(10_000, '10s'))
    .addHelpText('after', `\n${ENVIRONMENT_HELP}\n\n${EXIT_CODES_HELP}\n`);
  authCommands(program);
  deviceCommands(program);
  fleetCommands(program);
  jobCommands(program);
  firmwareCommands(program);
  campaignCommands(program);
  telemetryCommands(program);
  alertCommands(program);
  ruleCommands(program);
  retentionCommands(program);
  deadLetterCommands(program);
  adminCommands(program);
  return program;
}

/**
 * Runs iotctl on a command line (`process.argv` shape) and resolves with the
 * exit code (see {@link EXIT}); errors are printed on stderr with the server's
 * message and field violations.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    // Commander has printed its own message (or the help) already.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const failure = failureOf(err);
    process.stderr.write(describeFailure(failure));
    return failure.exitCode;
  }
}
