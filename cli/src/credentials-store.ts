import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** One logged-in session, kept per signing address (a token of one deployment is never sent to another). */
export interface Session {
  tenant: string;
  email: string;
  userId: string;
  accessToken: string;
  /** ISO 8601. */
  accessTokenExpireTime: string;
  refreshToken: string;
  /** ISO 8601. */
  refreshTokenExpireTime: string;
}

interface CredentialsFile {
  version: 1;
  /** Keyed by the signing service address the session was opened with. */
  sessions: Record<string, Session>;
}

/** `$XDG_CONFIG_HOME/iotctl` (default `~/.config/iotctl`). */
export function configDir(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'iotctl');
}

/** The file holding the tokens, readable by its owner only (mode 0600). */
export function credentialsPath(): string {
  return path.join(configDir(), 'credentials.json');
}

function readFile(): CredentialsFile {
  try {
    const parsed = JSON.parse(fs.readFileSync(credentialsPath(), 'utf8')) as CredentialsFile;
    return parsed?.version === 1 && parsed.sessions ? parsed : { version: 1, sessions: {} };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, sessions: {} };
    throw new Error(`cannot read ${credentialsPath()}: ${(err as Error).message}`);
  }
}

/** The session stored for a signing address, if any. */
export function readSession(signingAddress: string): Session | undefined {
  return readFile().sessions[signingAddress];
}

/**
 * Stores (or with `undefined` removes) the session of a signing address.
 * Written to a private temporary file renamed into place, so a reader never
 * sees half a file and the tokens are never readable by others, not even
 * for a moment.
 */
export function writeSession(signingAddress: string, session: Session | undefined): void {
  const file = readFile();
  if (session) file.sessions[signingAddress] = session;
  else delete file.sessions[signingAddress];
  fs.mkdirSync(configDir(), { recursive: true, mode: 0o700 });
  const tmp = `${credentialsPath()}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, credentialsPath());
}

const LOCK_STALE_MS = 15_000;
const LOCK_WAIT_MS = 20_000;

/**
 * Runs `fn` holding the credentials lock file. Refresh tokens rotate and a
 * reused one revokes the whole session, so two iotctl processes of one script
 * must not both refresh: the second waits here and then finds the first's
 * new tokens. A lock older than {@link LOCK_STALE_MS} is left over from a
 * killed process and is taken over.
 */
export async function withCredentialsLock<T>(fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(configDir(), { recursive: true, mode: 0o700 });
  const lock = `${credentialsPath()}.lock`;
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lock, 'wx', 0o600));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > LOCK_STALE_MS) fs.rmSync(lock, { force: true });
      else if (Date.now() > until) throw new Error(`${lock} is held by another iotctl; remove it if none is running`);
      else await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}
