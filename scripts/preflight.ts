/**
 * Checks, before anything starts, that the machine has the server programs
 * `npm run up` and `npm test` run (nats-server, PostgreSQL's initdb/postgres,
 * redis-server). Where one is missing it installs the Debian package (as
 * root, with apt-get, the way .ci/run does) or stops with the exact command to
 * run — so a fresh machine with only Node.js needs the README's two commands,
 * and a missing binary never surfaces as a spawn error three steps later.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** A server program the platform starts, and the Debian package that brings it. */
export type Need = 'nats-server' | 'postgresql' | 'redis-server';

/** Folders searched after PATH: Debian puts nats-server in /usr/sbin, which a user's PATH often lacks. */
export const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Where the Debian postgresql package puts its server programs. */
export const POSTGRES_BASE = '/usr/lib/postgresql';

/** Where to look; every field defaults to this machine. */
export interface LookupOptions {
  /** PATH to search (default process.env.PATH). */
  pathEnv?: string;
  /** Searched after PATH (default {@link SYSTEM_DIRS}). */
  extraDirs?: string[];
  /** Holds `<version>/bin/{initdb,postgres}` (default {@link POSTGRES_BASE}). */
  postgresBase?: string;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The full path of an executable found on PATH or in the system folders, or undefined. */
export function findCommand(name: string, options: LookupOptions = {}): string | undefined {
  const dirs = [...(options.pathEnv ?? process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...(options.extraDirs ?? SYSTEM_DIRS)];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    if (isExecutable(file)) return file;
  }
  return undefined;
}

/** The path to run `name` by: found as {@link findCommand} does, else the bare name (so spawn names it in its error). */
export function resolveCommand(name: string): string {
  return findCommand(name) ?? name;
}

/** The newest `<base>/<version>/bin` holding initdb and postgres, or undefined. */
export function findPostgresBinDir(base = POSTGRES_BASE): string | undefined {
  const hasServer = (v: string) => isExecutable(path.join(base, v, 'bin', 'initdb')) && isExecutable(path.join(base, v, 'bin', 'postgres'));
  const versions = fs.existsSync(base) ? fs.readdirSync(base).filter(hasServer) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(base, versions[0], 'bin') : undefined;
}

/** Whether the program a need stands for is on this machine. */
function present(need: Need, options: LookupOptions): boolean {
  if (need === 'postgresql') return findPostgresBinDir(options.postgresBase) !== undefined;
  return findCommand(need, options) !== undefined;
}

/** The needs (Debian package names) whose programs are missing, in the given order. */
export function missingPackages(needs: Need[], options: LookupOptions = {}): Need[] {
  return [...new Set(needs)].filter((need) => !present(need, options));
}

/** The one command that installs `packages` on Debian; `sudo` in front of each part unless root. */
export function installCommand(packages: string[], root: boolean): string {
  const sudo = root ? '' : 'sudo ';
  return `${sudo}apt-get update && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages.join(' ')}`;
}

/** Thrown when a program is missing and was not (or could not be) installed; the message holds the command. */
export class PreflightError extends Error {
  constructor(
    message: string,
    /** The command that installs what is missing. */
    readonly command: string,
    /** The missing packages. */
    readonly packages: string[],
  ) {
    super(message);
    this.name = 'PreflightError';
  }
}

/** Options of {@link preflight}; the defaults describe this machine. */
export interface PreflightOptions extends LookupOptions {
  /** Who asks, for messages: `npm run up`, `npm test`. */
  who: string;
  /** Whether we run as root (default: uid 0). */
  root?: boolean;
  /** `on` (default): install when root and apt-get exists; `off`: only say what to run. From IOT_AUTO_INSTALL. */
  autoInstall?: 'on' | 'off';
  /** Runs a shell command with the terminal attached, returning its exit code (default: sh -c). */
  runShell?: (command: string) => number;
  /** Progress lines (default stderr). */
  say?: (line: string) => void;
}

function defaultRunShell(command: string): number {
  return spawnSync('sh', ['-c', command], { stdio: 'inherit' }).status ?? 1;
}

/**
 * Makes sure the programs of `needs` are on this machine: returns at once when
 * they are; installs the missing packages when running as root with apt-get
 * (and auto-install is on) and checks again; otherwise throws a
 * {@link PreflightError} whose message is the exact command to run.
 */
export function preflight(needs: Need[], options: PreflightOptions): void {
  const missing = missingPackages(needs, options);
  if (missing.length === 0) return;
  const root = options.root ?? process.getuid?.() === 0;
  const command = installCommand(missing, root);
  const say = options.say ?? ((line: string) => process.stderr.write(`${line}\n`));
  const aptGet = findCommand('apt-get', options);
  const autoInstall = options.autoInstall ?? (process.env.IOT_AUTO_INSTALL === 'off' ? 'off' : 'on');
  if (root && aptGet && autoInstall === 'on') {
    say(`${options.who}: installing ${missing.join(', ')} (missing on this machine): ${command}`);
    const code = (options.runShell ?? defaultRunShell)(command);
    const still = missingPackages(needs, options);
    if (code === 0 && still.length === 0) return;
    throw new PreflightError(`${options.who}: installing ${missing.join(', ')} failed (exit code ${code}); run it yourself and try again:\n\n  ${command}\n`, command, missing);
  }
  const why = !aptGet ? ' (no apt-get here: install the same packages with this system\'s package manager)' : '';
  throw new PreflightError(`${options.who}: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not installed; run this, then try again${why}:\n\n  ${command}\n`, command, missing);
}

/** What points the up-command at a running server instead of one it starts (an {@link UpConfig}, or the raw environment). */
export interface UpServers {
  NATS_URL?: string;
  DATABASE_URL?: string;
  UP_POSTGRES_BIN?: string;
  REDIS_URL?: string;
}

/** The server programs the up-command starts itself with this configuration (none of those it is pointed at). */
export function upNeeds(config: UpServers): Need[] {
  const needs: Need[] = [];
  if (!config.NATS_URL) needs.push('nats-server');
  if (!config.DATABASE_URL && !config.UP_POSTGRES_BIN) needs.push('postgresql');
  if (!config.REDIS_URL) needs.push('redis-server');
  return needs;
}

/**
 * {@link preflight} for a command-line entry: prints a PreflightError's
 * message (no stack trace) and exits 1.
 */
export function preflightOrExit(needs: Need[], options: PreflightOptions): void {
  try {
    preflight(needs, options);
  } catch (err) {
    if (!(err instanceof PreflightError)) throw err;
    process.stderr.write(`\n${err.message}\n`);
    process.exit(1);
  }
}

/**
 * `tsx scripts/preflight.ts test|up`: the check alone, run first by `npm test`
 * and `npm run up` so a missing program stops them before anything is
 * generated. It loads nothing but this file (the environment is read raw, an
 * empty variable counting as unset), so it costs well under a second.
 */
if (require.main === module) {
  const target = process.argv[2];
  if (target === 'test') preflightOrExit(['nats-server', 'postgresql', 'redis-server'], { who: 'npm test' });
  else if (target === 'up') preflightOrExit(upNeeds(process.env), { who: 'npm run up' });
  else {
    process.stderr.write('usage: tsx scripts/preflight.ts test|up\n');
    process.exit(2);
  }
}
