import { z } from 'zod';

/** A configuration value failed validation; the message names every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** An environment variable shape: one zod schema per variable name. */
export type EnvShape = Record<string, z.ZodType>;

/** The parsed configuration of a shape. */
export type ConfigOf<S extends EnvShape> = { [K in keyof S]: z.output<S[K]> };

/**
 * Reads and validates the variables named by `shape` from `env`. Empty
 * strings count as unset. Throws {@link ConfigError} naming each bad variable.
 */
export function loadConfig<S extends EnvShape>(shape: S, env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(shape)) {
    const raw = env[name] === '' ? undefined : env[name];
    const result = schema.safeParse(raw);
    if (result.success) out[name] = result.data;
    else problems.push(`${name}: ${result.error.issues.map((i) => i.message).join('; ')}${raw === undefined ? ' (not set)' : ''}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as ConfigOf<S>;
}

/** Variable schemas used across services. */
export const env = {
  /** A TCP port, 0 meaning "any free port". */
  port: (fallback: number) =>
    z.coerce.number({ error: 'must be a port number' }).int('must be a whole number').min(0, 'must be 0..65535').max(65535, 'must be 0..65535').default(fallback),
  /** A positive whole number of milliseconds (or items). */
  positiveInt: (fallback: number) =>
    z.coerce.number({ error: 'must be a number' }).int('must be a whole number').positive('must be greater than 0').default(fallback),
  /** A URL with one of the given schemes. */
  url: (schemes: string[], fallback?: string) => {
    const schema = z
      .string()
      .refine((value) => {
        try {
          return schemes.includes(new URL(value).protocol.replace(/:$/, ''));
        } catch {
          return false;
        }
      }, `must be a URL starting with ${schemes.map((s) => `${s}://`).join(' or ')}`);
    return fallback === undefined ? schema : schema.default(fallback);
  },
  /** A comma-separated list of URLs (NATS servers). */
  urlList: (schemes: string[], fallback: string) =>
    z
      .string()
      .default(fallback)
      .refine(
        (value) =>
          value.split(',').every((part) => {
            try {
              return schemes.includes(new URL(part.trim()).protocol.replace(/:$/, ''));
            } catch {
              return false;
            }
          }),
        `must be comma-separated URLs starting with ${schemes.map((s) => `${s}://`).join(' or ')}`,
      ),
  /** One of a fixed set of words. */
  oneOf: <T extends string>(values: readonly [T, ...T[]], fallback: T) => z.enum(values, { error: `must be one of ${values.join(', ')}` }).default(fallback),
  /** true/false, 1/0, yes/no. */
  bool: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
      .optional()
      .transform((v) => (v === undefined ? fallback : ['true', '1', 'yes'].includes(v))),
  /** Any non-empty string, optionally with a minimum length (secrets). */
  string: (options: { fallback?: string; minLength?: number } = {}) => {
    const base = z.string({ error: 'is required' }).min(options.minLength ?? 1, `must be at least ${options.minLength ?? 1} characters`);
    return options.fallback === undefined ? base : base.default(options.fallback);
  },
  /** An optional string. */
  optional: () => z.string().optional(),
};

/** Variables every service reads. */
export const baseEnv = {
  GRPC_HOST: env.string({ fallback: '127.0.0.1' }),
  LOG_LEVEL: env.oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
  /** How long SIGTERM waits for in-flight RPCs before cancelling them. */
  SHUTDOWN_GRACE_MS: env.positiveInt(5000),
  /** How often dependencies are probed for the health status. */
  HEALTH_INTERVAL_MS: env.positiveInt(2000),
};
