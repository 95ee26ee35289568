import { FormEvent, ReactNode, useEffect, useState } from 'react';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Role } from '../../../gen/es/iot/common/v1/common_pb';
import { ApiKey } from '../../../gen/es/iot/signing/v1/api_keys_pb';
import { AuditEvent } from '../../../gen/es/iot/signing/v1/audit_pb';
import { Tenant, User } from '../../../gen/es/iot/signing/v1/auth_pb';
import { ConfirmButton } from './components/confirm-button';
import { SecretPanel } from './components/secret-panel';
import { TableHead } from './components/table-head';
import { api, errorMessage } from './api';
import { formatTime, pretty } from './format';
import { roleName, useAbilities } from './principal';

const ROLES = [Role.VIEWER, Role.OPERATOR, Role.ADMIN];

function RoleSelect({ value, onChange, label }: { value: Role; onChange: (role: Role) => void; label: string }) {
  return (
    <select aria-label={label} value={value} onChange={(e) => onChange(Number(e.target.value) as Role)}>
      {ROLES.map((r) => (
        <option key={r} value={r}>
          {roleName(r)}
        </option>
      ))}
    </select>
  );
}

/** Every page of a paged list (admin lists are small: users, keys, tenants). */
async function allPages<T>(page: (pageToken: string) => Promise<{ items: T[]; next: string }>): Promise<T[]> {
  const all: T[] = [];
  let token = '';
  do {
    const res = await page(token);
    all.push(...res.items);
    token = res.next;
  } while (token);
  return all;
}

/** A card with a reload counter and the server's error message. */
function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, initial: T): { value: T; error: string; setError: (e: string) => void; reload: () => void } {
  const [value, setValue] = useState<T>(initial);
  const [error, setError] = useState('');
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    load(abort.signal).then(
      (v) => {
        setValue(v);
        setError('');
      },
      (err) => !abort.signal.aborted && setError(errorMessage(err)),
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [generation]);
  return { value, error, setError, reload: () => setGeneration((n) => n + 1) };
}

function Card({ title, error, children, testId }: { title: string; error: string; children: ReactNode; testId: string }) {
  return (
    <div className="card" data-testid={testId}>
      <h2>{title}</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {children}
    </div>
  );
}

function UsersCard() {
  const { principal } = useAbilities();
  const users = useLoad((signal) => allPages<User>(async (pageToken) => {
    const res = await api.users.listUsers({ page: { pageSize: 500, pageToken } }, { signal });
    return { items: res.users, next: res.page?.nextPageToken ?? '' };
  }), []);
  const [email, setEmail] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState(Role.VIEWER);
  const act = (work: Promise<unknown>) => work.then(users.reload, (err) => users.setError(errorMessage(err)));
  function create(event: FormEvent) {
    event.preventDefault();
    void act(api.users.createUser({ email, displayName, password, role }).then(() => {
      setEmail('');
      setDisplayName('');
      setPassword('');
    }));
  }
  return (
    <Card title="Users" error={users.error} testId="users-card">
      <form className="inline-form" onSubmit={create} aria-label="create user" data-testid="create-user">
        <input aria-label="email" name="user-email" type="email" placeholder="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        <input aria-label="display name" name="user-name" placeholder="display name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
        <input aria-label="password" name="user-password" type="password" placeholder="initial password" value={password} onChange={(e) => setPassword(e.target.value)} required autoComplete="new-password" />
        <RoleSelect label="role" value={role} onChange={setRole} />
        <button type="submit">Create user</button>
      </form>
      <table>
        <TableHead columns={['Email', 'Name', 'Role', 'Created', '']} />
        <tbody>
          {users.value.map((u) => (
            <tr key={u.id} data-testid={`user-row-${u.email}`}>
              <td>{u.email}</td>
              <td>{u.displayName}</td>
              <td>
                {u.id === principal?.id ? (
                  roleName(u.role)
                ) : (
                  <RoleSelect label={`role of ${u.email}`} value={u.role} onChange={(r) => void act(api.users.updateUser({ user: { id: u.id, role: r }, updateMask: { paths: ['role'] } }))} />
                )}
              </td>
              <td>{formatTime(u.createTime)}</td>
              <td>
                {u.id !== principal?.id && (
                  <ConfirmButton label="Delete" question={`Delete user ${u.email}?`} onConfirm={() => act(api.users.deleteUser({ id: u.id }))} />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}

function ApiKeysCard() {
  const keys = useLoad((signal) => allPages<ApiKey>(async (pageToken) => {
    const res = await api.apiKeys.listApiKeys({ page: { pageSize: 500, pageToken } }, { signal });
    return { items: res.apiKeys, next: res.page?.nextPageToken ?? '' };
  }), []);
  const [name, setName] = useState('');
  const [role, setRole] = useState(Role.VIEWER);
  const [days, setDays] = useState(90);
  const [secret, setSecret] = useState<{ name: string; secret: string } | undefined>();
  function create(event: FormEvent) {
    event.preventDefault();
    api.apiKeys
      .createApiKey({ name, role, expireTime: days > 0 ? timestampFromMs(Date.now() + days * 86_400_000) : undefined })
      .then((res) => {
        setSecret({ name, secret: res.secret });
        setName('');
        keys.reload();
      }, (err) => keys.setError(errorMessage(err)));
  }
  return (
    <Card title="API keys" error={keys.error} testId="api-keys-card">
      <form className="inline-form" onSubmit={create} aria-label="create API key" data-testid="create-api-key">
        <input aria-label="key name" name="key-name" placeholder="name" value={name} onChange={(e) => setName(e.target.value)} required />
        <RoleSelect label="key role" value={role} onChange={setRole} />
        <label>
          expires in days
          <input type="number" min={0} name="key-days" value={days} onChange={(e) => setDays(Number(e.target.value))} />
        </label>
        <button type="submit">Create API key</button>
      </form>
      {secret && (
        <SecretPanel
          testId="api-key-secret"
          warning={
            <>
              The secret of {secret.name} is shown once. Copy it now; send it as <code>Authorization: ApiKey &lt;secret&gt;</code>.
            </>
          }
          label="API key secret"
          secret={secret.secret}
          onClose={() => setSecret(undefined)}
        />
      )}
      <table>
        <TableHead columns={['Name', 'Prefix', 'Role', 'Expires', 'Last used', '']} />
        <tbody>
          {keys.value.map((k) => (
            <tr key={k.id} data-testid={`api-key-row-${k.name}`}>
              <td>{k.name}</td>
              <td>
                <code>{k.prefix}</code>
              </td>
              <td>{roleName(k.role)}</td>
              <td>{formatTime(k.expireTime)}</td>
              <td>{formatTime(k.lastUsedTime)}</td>
              <td>
                {k.revokeTime ? (
                  <span className="muted">revoked {formatTime(k.revokeTime)}</span>
                ) : (
                  <button className="danger" onClick={() => api.apiKeys.revokeApiKey({ id: k.id }).then(keys.reload, (err) => keys.setError(errorMessage(err)))}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}

function TenantsCard() {
  const tenants = useLoad((signal) => allPages<Tenant>(async (pageToken) => {
    const res = await api.tenants.listTenants({ page: { pageSize: 500, pageToken } }, { signal });
    return { items: res.tenants, next: res.page?.nextPageToken ?? '' };
  }), []);
  const [name, setName] = useState('');
  const [adminEmail, setAdminEmail] = useState('');
  const [adminPassword, setAdminPassword] = useState('');
  function create(event: FormEvent) {
    event.preventDefault();
    api.tenants.createTenant({ name, adminEmail, adminPassword }).then(() => {
      setName('');
      setAdminEmail('');
      setAdminPassword('');
      tenants.reload();
    }, (err) => tenants.setError(errorMessage(err)));
  }
  return (
    <Card title="Tenants" error={tenants.error} testId="tenants-card">
      <form className="inline-form" onSubmit={create} aria-label="create tenant" data-testid="create-tenant">
        <input aria-label="tenant name" name="tenant-name" placeholder="name" value={name} onChange={(e) => setName(e.target.value)} required />
        <input aria-label="admin email" name="tenant-admin-email" type="email" placeholder="first admin's email" value={adminEmail} onChange={(e) => setAdminEmail(e.target.value)} required />
        <input aria-label="admin password" name="tenant-admin-password" type="password" placeholder="first admin's password" value={adminPassword} onChange={(e) => setAdminPassword(e.target.value)} required autoComplete="new-password" />
        <button type="submit">Create tenant</button>
      </form>
      <ul className="plain">
        {tenants.value.map((t) => (
          <li key={t.id} data-testid={`tenant-row-${t.name}`}>
            <strong>{t.name}</strong> <span className="muted">{t.id} · created {formatTime(t.createTime)}</span>
          </li>
        ))}
      </ul>
    </Card>
  );
}

function AuditCard() {
  const [type, setType] = useState('');
  const [hours, setHours] = useState(24);
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [next, setNext] = useState('');
  const [error, setError] = useState('');
  async function load(pageToken: string) {
    try {
      const end = Date.now();
      const res = await api.audit.listAuditEvents({ page: { pageSize: 100, pageToken }, type, timeRange: { start: timestampFromMs(end - hours * 3_600_000), end: timestampFromMs(end + 60_000) } });
      setEvents((prev) => (pageToken ? [...prev, ...res.events] : res.events));
      setNext(res.page?.nextPageToken ?? '');
      setError('');
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  useEffect(() => {
    void load('');
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return (
    <Card title="Audit log" error={error} testId="audit-card">
      <form
        className="inline-form"
        aria-label="filter audit events"
        onSubmit={(e) => {
          e.preventDefault();
          void load('');
        }}
      >
        <input aria-label="event type" name="audit-type" placeholder="type, e.g. user.created" value={type} onChange={(e) => setType(e.target.value)} />
        <label>
          last hours
          <input type="number" min={1} name="audit-hours" value={hours} onChange={(e) => setHours(Number(e.target.value))} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <table data-testid="audit-list">
        <TableHead columns={['Time', 'Type', 'Actor', 'Subject', 'From', 'Details']} />
        <tbody>
          {events.map((e) => (
            <tr key={e.id}>
              <td>{formatTime(e.time)}</td>
              <td>{e.type}</td>
              <td>{e.actorId}</td>
              <td>{e.subject ? `${e.subject.kind} ${e.subject.id}` : '—'}</td>
              <td>{e.sourceAddress}</td>
              <td>
                <code>{pretty(e.details).replace(/\s+/g, ' ')}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {events.length === 0 && !error && <p className="muted">No events.</p>}
      {next && <button onClick={() => void load(next)}>More</button>}
    </Card>
  );
}

/** Users and roles, API keys, tenants (platform admins) and the audit log; offered to admins only. */
export function AdminPage() {
  const { canAdmin, platformAdmin } = useAbilities();
  if (!canAdmin) return <p className="error">Administration needs the admin role.</p>;
  return (
    <section>
      <h1>Administration</h1>
      <UsersCard />
      <ApiKeysCard />
      {platformAdmin && <TenantsCard />}
      <AuditCard />
    </section>
  );
}
