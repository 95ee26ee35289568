import { ReactElement, StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { HashRouter, Navigate, NavLink, Route, Routes, useParams } from 'react-router';
import { AdminPage } from './admin';
import { AlertsPage } from './alerts';
import { DeadLettersPage } from './dead-letters';
import { RulesPage } from './rules';
import { api } from './api';
import { DevicePage } from './device';
import { DeviceTypesPage } from './device-types';
import { DevicesPage } from './devices';
import { ExportPage } from './export';
import { FirmwarePage } from './firmware';
import { GroupsPage } from './groups';
import { JobsPage } from './jobs';
import { LivePage } from './live';
import { LoginPage } from './login';
import { OverviewPage } from './overview';
import { ProvisioningPage } from './provisioning';
import { Abilities, AbilitiesProvider, roleName, useAbilities } from './principal';
import { currentSession, onSessionChange, setSession } from './session';
import './styles.css';

/** A new device page per id: nothing of the previous device (live values, chart, twin) survives the navigation. */
function DeviceRoute() {
  const { id = '' } = useParams();
  return <DevicePage key={id} deviceId={id} />;
}

/**
 * Every page of the console: its path, its element and, when it belongs in
 * the header, its label and who sees it. A feature's page is one line here.
 */
const PAGES: Array<{ path: string; element: ReactElement; nav?: string; visible?: (a: Abilities) => boolean }> = [
  { path: '/overview', element: <OverviewPage />, nav: 'Overview' },
  { path: '/devices', element: <DevicesPage />, nav: 'Devices' },
  { path: '/devices/:id', element: <DeviceRoute /> },
  { path: '/live', element: <LivePage />, nav: 'Live' },
  { path: '/device-types', element: <DeviceTypesPage />, nav: 'Types' },
  { path: '/groups', element: <GroupsPage />, nav: 'Groups' },
  { path: '/jobs', element: <JobsPage />, nav: 'Jobs' },
  { path: '/firmware', element: <FirmwarePage />, nav: 'Firmware' },
  { path: '/provisioning', element: <ProvisioningPage />, nav: 'Provisioning' },
  { path: '/alerts', element: <AlertsPage />, nav: 'Alerts' },
  { path: '/rules', element: <RulesPage />, nav: 'Rules' },
  { path: '/dead-letters', element: <DeadLettersPage />, nav: 'Dead letters' },
  { path: '/export', element: <ExportPage />, nav: 'Export' },
  { path: '/admin', element: <AdminPage />, nav: 'Administration', visible: (a) => a.canAdmin },
];

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

function Shell() {
  const session = useSession()!;
  const abilities = useAbilities();
  const pages = PAGES.filter((p) => p.nav && (p.visible?.(abilities) ?? true));
  return (
    <>
      <header>
        <strong>iot-mesh</strong>
        <nav aria-label="main">
          {pages.map((p) => (
            <NavLink key={p.path} to={p.path}>
              {p.nav}
            </NavLink>
          ))}
          <a href="docs/" target="_blank" rel="noreferrer">
            API
          </a>
        </nav>
        <span className="muted" data-testid="whoami" data-role={abilities.principal ? roleName(abilities.principal.role) : ''}>
          {session.email} @ {session.tenant} ({abilities.principal ? roleName(abilities.principal.role) : '?'})
        </span>
        <button onClick={() => void logout()}>Log out</button>
      </header>
      <main>
        <Routes>
          {PAGES.filter((p) => p.visible?.(abilities) ?? true).map((p) => (
            <Route key={p.path} path={p.path} element={p.element} />
          ))}
          <Route path="*" element={<Navigate to="/devices" replace />} />
        </Routes>
      </main>
    </>
  );
}

function App() {
  const session = useSession();
  if (!session) return <LoginPage />;
  return (
    <HashRouter>
      <AbilitiesProvider sessionKey={`${session.tenant}/${session.email}`}>
        <Shell />
      </AbilitiesProvider>
    </HashRouter>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
