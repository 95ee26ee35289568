/**
 * `npm run simulate -- [options]`: a fleet of virtual devices. See
 * {@link USAGE} (or `--help`) for the options and the README's Simulator
 * section for examples. Ctrl-C stops cleanly and prints the summary; a second
 * Ctrl-C exits at once.
 */
import { flushTelemetry } from '@iot-mesh/runtime';
import { parseOptions, USAGE } from './options';
import { startSimulation, summaryTable } from './run';

async function main(): Promise<number> {
  let options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`simulate: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    process.stdout.write(USAGE);
    return 0;
  }
  const simulation = await startSimulation(options);
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) process.exit(130);
    process.stderr.write('\nstopping (Ctrl-C again to exit at once)…\n');
    simulation.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stats = await simulation.done;
  if (options.json) process.stdout.write(JSON.stringify(stats) + '\n');
  else process.stdout.write(summaryTable(stats) + '\n');
  return stats.sent > 0 || stats.online > 0 || stats.connects > 0 ? 0 : 1;
}

main().then(
  // Spans of the last publishes are still buffered when tracing is on.
  (code) => flushTelemetry().then(() => process.exit(code)),
  (err: Error) => {
    process.stderr.write(`simulate: ${err.message}\n`);
    process.exit(1);
  },
);
