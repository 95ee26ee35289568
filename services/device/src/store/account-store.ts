import { Pool } from '@iot-mesh/runtime';

/** A tenant's NATS account as recorded (its keys are derived, never stored). */
export interface TenantAccountRow {
  tenantId: string;
  account: string;
}

/** Persistence of the tenants' NATS accounts, their revocation lists and credential counts. */
export interface AccountStore {
  /** Records the tenant's account (idempotent); true when it was not recorded before. */
  addTenantAccount(tenantId: string, account: string): Promise<boolean>;
  /** Every recorded tenant account. */
  tenantAccounts(): Promise<TenantAccountRow[]>;
  /**
   * Public key → revocation instant (unix seconds) of the tenant's revoked
   * credentials that have not expired yet: an expired token is refused by the
   * server anyway, so its revocation is pruned from the account JWT.
   */
  revocations(tenantId: string): Promise<Record<string, number>>;
  /** How many of the tenant's devices hold an active credential. */
  activeCredentials(tenantId: string): Promise<number>;
}

/** {@link AccountStore} on the device schema's `tenant_accounts`, `revoked_credentials` and `devices`. */
export class PgAccountStore implements AccountStore {
  constructor(private readonly pool: Pool) {}

  async addTenantAccount(tenantId: string, account: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('INSERT INTO tenant_accounts (tenant_id, account) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING', [tenantId, account]);
    return (rowCount ?? 0) > 0;
  }

  async tenantAccounts(): Promise<TenantAccountRow[]> {
    const { rows } = await this.pool.query('SELECT tenant_id, account FROM tenant_accounts ORDER BY tenant_id');
    return rows.map((r) => ({ tenantId: r.tenant_id as string, account: r.account as string }));
  }

  async revocations(tenantId: string): Promise<Record<string, number>> {
    const { rows } = await this.pool.query(
      `SELECT public_key, floor(extract(epoch FROM revoke_time))::bigint + 1 AS at FROM revoked_credentials
        WHERE tenant_id = $1 AND (expire_time IS NULL OR expire_time > now())`,
      [tenantId],
    );
    return Object.fromEntries(rows.map((r) => [r.public_key as string, Number(r.at)]));
  }

  async activeCredentials(tenantId: string): Promise<number> {
    const { rows } = await this.pool.query('SELECT count(*)::int AS n FROM devices WHERE tenant_id = $1 AND credential_key IS NOT NULL', [tenantId]);
    return rows[0].n as number;
  }
}
