/** The signed-in user's tokens. */
export interface Session {
  accessToken: string;
  refreshToken: string;
  tenant: string;
  email: string;
}

/**
 * Kept in localStorage so every tab of this browser shares one session (a new
 * tab needs no second login, logging out in one logs out all); tabs hear each
 * other's changes through the `storage` event. Sessions saved by older builds
 * in sessionStorage are moved over once.
 */
const KEY = 'iot-mesh.session';
const listeners = new Set<() => void>();

function migrateTabSession(): void {
  const old = sessionStorage.getItem(KEY);
  if (old === null) return;
  if (localStorage.getItem(KEY) === null) localStorage.setItem(KEY, old);
  sessionStorage.removeItem(KEY);
}
migrateTabSession();

window.addEventListener('storage', (event) => {
  if (event.key === KEY || event.key === null) listeners.forEach((l) => l());
});

/** The current session, if any. */
export function currentSession(): Session | undefined {
  const raw = localStorage.getItem(KEY);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as Session;
  } catch {
    return undefined;
  }
}

/** Stores (or clears) the session and tells subscribers in this tab (other tabs learn through `storage`). */
export function setSession(session: Session | undefined): void {
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
  listeners.forEach((l) => l());
}

/** Calls `listener` whenever the session changes, in this tab or another; returns the unsubscribe function. */
export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Runs `work` while holding a lock shared by every tab, so two tabs never
 * spend the same refresh token (the second use would revoke the whole family).
 */
export async function withSessionLock<T>(work: () => Promise<T>): Promise<T> {
  if (!navigator.locks) return work();
  return navigator.locks.request('iot-mesh.session.refresh', work);
}
