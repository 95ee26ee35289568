import pino, { Logger } from 'pino';
import { traceFields } from './observability/log-trace-fields';

export type { Logger };

/**
 * Paths whose values never reach a log line. Handlers never log requests
 * whole, so this is the second line of defence.
 */
const REDACT_PATHS = [
  'password', '*.password', 'newPassword', '*.newPassword', 'currentPassword', '*.currentPassword',
  'adminPassword', '*.adminPassword', 'token', '*.token', 'secret', '*.secret',
  'accessToken', '*.accessToken', 'refreshToken', '*.refreshToken', 'bootstrapToken', '*.bootstrapToken',
  'authorization', '*.authorization', 'headers.authorization', 'seed', '*.seed', 'jwt', '*.jwt',
  'privateKey', '*.privateKey', 'credentials', '*.credentials',
];

/** Hides credentials embedded in connection URLs (`postgres://user:pw@host`). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    if (parsed.username && parsed.protocol.startsWith('nats')) parsed.username = '***';
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}

/** The JSON logger of one process. */
export function createLogger(service: string, level = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: service,
      level,
      base: { service },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // trace_id/span_id of the active span on every line written inside one.
      mixin: traceFields,
    },
    destination,
  );
}
