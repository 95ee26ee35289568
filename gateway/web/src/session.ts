/** The signed-in user's tokens, kept for this browser tab only. */
export interface Session {
  accessToken: string;
  refreshToken: string;
  tenant: string;
  email: string;
}

const KEY = 'iot-mesh.session';
const listeners = new Set<() => void>();

/** The current session, if any. */
export function currentSession(): Session | undefined {
  const raw = sessionStorage.getItem(KEY);
  return raw ? (JSON.parse(raw) as Session) : undefined;
}

/** Stores (or clears) the session and tells subscribers. */
export function setSession(session: Session | undefined): void {
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((l) => l());
}

/** Calls `listener` whenever the session changes; returns the unsubscribe function. */
export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
