import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { AlertsPage } from './alerts';
import { api } from './api';
import { DevicePage } from './device';
import { DevicesPage } from './devices';
import { LoginPage } from './login';
import { currentSession, onSessionChange, setSession } from './session';
import './styles.css';

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const update = () => setHash(window.location.hash);
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return hash;
}

function useSession() {
  const [session, set] = useState(currentSession());
  useEffect(() => onSessionChange(() => set(currentSession())), []);
  return session;
}

async function logout() {
  const session = currentSession();
  setSession(undefined);
  if (session) await api.auth.logout({ refreshToken: session.refreshToken }).catch(() => undefined);
}

function App() {
  const session = useSession();
  const hash = useHash();
  if (!session) return <LoginPage />;
  const device = /^#\/devices\/(.+)$/.exec(hash);
  const page = device ? <DevicePage deviceId={decodeURIComponent(device[1])} /> : hash.startsWith('#/alerts') ? <AlertsPage /> : <DevicesPage />;
  return (
    <>
      <header>
        <strong>iot-mesh</strong>
        <nav>
          <a href="#/devices">Devices</a>
          <a href="#/alerts">Alerts</a>
        </nav>
        <span className="muted" data-testid="whoami">
          {session.email} @ {session.tenant}
        </span>
        <button onClick={() => void logout()}>Log out</button>
      </header>
      <main>{page}</main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
