import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installCommand, missingPackages, preflight, PreflightError, upNeeds } from '../preflight';
import { loadUpConfig } from '../up-config';

/* The preflight of `npm run up` and `npm test` on a machine lacking server programs; apt-get is never really run. */
describe('preflight (scripts/preflight.ts)', () => {
  let bin: string;
  let pgBase: string;

  /** Puts an executable `name` into the fake PATH folder. */
  const provide = (name: string) => fs.writeFileSync(path.join(bin, name), '#!/bin/sh\n', { mode: 0o755 });
  /** A machine with only what this test provides: no system folders, an empty PostgreSQL base. */
  const machine = () => ({ pathEnv: bin, extraDirs: [], postgresBase: pgBase });
  const needs = ['nats-server', 'postgresql', 'redis-server'] as const;

  beforeEach(() => {
    bin = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-preflight-bin-'));
    pgBase = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-preflight-pg-'));
  });
  afterEach(() => {
    fs.rmSync(bin, { recursive: true, force: true });
    fs.rmSync(pgBase, { recursive: true, force: true });
  });

  test('names what is missing from PATH and the PostgreSQL folders', () => {
    provide('redis-server');
    expect(missingPackages([...needs], machine())).toEqual(['nats-server', 'postgresql']);
    fs.mkdirSync(path.join(pgBase, '15', 'bin'), { recursive: true });
    for (const program of ['initdb', 'postgres']) fs.writeFileSync(path.join(pgBase, '15', 'bin', program), '', { mode: 0o755 });
    expect(missingPackages([...needs], machine())).toEqual(['nats-server']);
  });

  test('not root: stops with the exact command to run, and installs nothing', () => {
    provide('apt-get');
    const runShell = jest.fn(() => 0);
    let error: unknown;
    try {
      preflight([...needs], { ...machine(), who: 'npm test', root: false, runShell, say: () => undefined });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PreflightError);
    const command = 'sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server postgresql redis-server';
    expect((error as PreflightError).command).toBe(command);
    expect((error as PreflightError).message).toBe(`npm test: nats-server, postgresql, redis-server are not installed; run this, then try again:\n\n  ${command}\n`);
    expect(runShell).not.toHaveBeenCalled();
  });

  test('root with apt-get: installs the missing packages and checks again', () => {
    provide('apt-get');
    provide('redis-server');
    const say = jest.fn();
    const runShell = jest.fn(() => {
      provide('nats-server'); // what the package would bring
      return 0;
    });
    preflight(['nats-server', 'redis-server'], { ...machine(), who: 'npm run up', root: true, autoInstall: 'on', runShell, say });
    expect(runShell).toHaveBeenCalledWith('apt-get update && env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server');
    expect(say).toHaveBeenCalledWith(expect.stringContaining('npm run up: installing nats-server'));
  });

  test('root with apt-get: an install that fails, or leaves the program missing, stops with the command', () => {
    provide('apt-get');
    for (const code of [100, 0]) {
      const run = () => preflight(['nats-server'], { ...machine(), who: 'npm run up', root: true, autoInstall: 'on', runShell: () => code, say: () => undefined });
      expect(run).toThrow(PreflightError);
      expect(run).toThrow(`installing nats-server failed (exit code ${code}); run it yourself and try again:\n\n  ${installCommand(['nats-server'], true)}\n`);
    }
  });

  test('root without apt-get, or with auto-install off: says what to run', () => {
    const runShell = jest.fn(() => 0);
    expect(() => preflight(['redis-server'], { ...machine(), who: 'npm test', root: true, runShell })).toThrow(/redis-server is not installed; run this, then try again \(no apt-get here/);
    provide('apt-get');
    expect(() => preflight(['redis-server'], { ...machine(), who: 'npm test', root: true, autoInstall: 'off', runShell })).toThrow(`\n\n  ${installCommand(['redis-server'], true)}\n`);
    expect(runShell).not.toHaveBeenCalled();
  });

  test('nothing missing: returns without running anything', () => {
    provide('nats-server');
    const runShell = jest.fn(() => 0);
    preflight(['nats-server'], { ...machine(), who: 'npm test', root: true, runShell });
    expect(runShell).not.toHaveBeenCalled();
  });

  test('the command-line entry prints the message without a stack trace and exits 1', () => {
    provide('apt-get');
    const script = `require(${JSON.stringify(path.join(__dirname, '..', 'preflight.ts'))}).preflightOrExit(['nats-server'], { who: 'npm run up', pathEnv: ${JSON.stringify(bin)}, extraDirs: [], root: false })`;
    const result = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(`npm run up: nats-server is not installed; run this, then try again:\n\n  ${installCommand(['nats-server'], false)}`);
  });

  test('the up-command needs only the servers it starts itself', () => {
    expect(upNeeds(loadUpConfig({}))).toEqual(['nats-server', 'postgresql', 'redis-server']);
    expect(upNeeds(loadUpConfig({ NATS_URL: 'nats://x:4222', DATABASE_URL: 'postgres://x/db' }))).toEqual(['redis-server']);
    // The package.json entry (`preflight.ts up`) reads the raw environment, where an empty variable is unset.
    expect(upNeeds({ NATS_URL: '', DATABASE_URL: '', UP_POSTGRES_BIN: '/opt/pg/bin', REDIS_URL: 'redis://x' })).toEqual(['nats-server']);
  });
});
