import { FormEvent, useState } from 'react';
import { api, errorMessage } from './api';
import { setSession } from './session';

/** Tenant, email and password in; a session out. */
export function LoginPage() {
  const [tenant, setTenant] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError('');
    try {
      const res = await api.auth.login({ tenant, email, password });
      if (!res.tokens) throw new Error('the signing service returned no tokens');
      setSession({ accessToken: res.tokens.accessToken, refreshToken: res.tokens.refreshToken, tenant, email });
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="card login" onSubmit={submit}>
      <h1>iot-mesh</h1>
      <label>
        Tenant
        <input name="tenant" value={tenant} onChange={(e) => setTenant(e.target.value)} autoComplete="organization" required />
      </label>
      <label>
        Email
        <input name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="username" required />
      </label>
      <label>
        Password
        <input name="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="current-password" required />
      </label>
      <button type="submit" disabled={busy}>
        Log in
      </button>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
