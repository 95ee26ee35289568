import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ConfigError, env, loadConfig } from '../src';

describe('loadConfig', () => {
  const shape = {
    PORT: env.port(50051),
    DATABASE_URL: env.url(['postgres']),
    MODE: env.oneOf(['a', 'b'] as const, 'a'),
    FLAG: env.bool(false),
    SECRET: env.string({ minLength: 16 }),
  };

  it('parses valid values and applies defaults', () => {
    const config = loadConfig(shape, { DATABASE_URL: 'postgres://x@h/db', SECRET: 'a'.repeat(16), FLAG: 'yes' });
    expect(config).toEqual({ PORT: 50051, DATABASE_URL: 'postgres://x@h/db', MODE: 'a', FLAG: true, SECRET: 'a'.repeat(16) });
  });

  it('names every bad or missing variable', () => {
    let error: unknown;
    try {
      loadConfig(shape, { PORT: '70000', DATABASE_URL: 'mysql://h/db', MODE: 'c', FLAG: 'maybe' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'DATABASE_URL', 'MODE', 'FLAG', 'SECRET']) expect(problems).toContain(`${name}:`);
    expect(problems).toMatch(/SECRET: .*\(not set\)/);
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: env.port(7) }, { PORT: '' }).PORT).toBe(7);
  });
});

describe('a service with a bad configuration value', () => {
  jest.setTimeout(120_000);
  it('exits non-zero naming the variable', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'fixtures', 'echo-service.ts')], {
      env: { ...process.env, GRPC_PORT: 'not-a-port', REDIS_URL: 'http://wrong' },
      encoding: 'utf8',
      timeout: 90_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('GRPC_PORT: must be a port number');
    expect(result.stderr).toContain('REDIS_URL: must be a URL starting with redis://');
  });
});
