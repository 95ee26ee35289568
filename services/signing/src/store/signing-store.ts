import { Pool, withTransaction } from '@iot-mesh/runtime';
import { ApiKeyRepository, PostgresApiKeyRepository } from './api-keys';
import { AuditEventRepository, PostgresAuditEventRepository } from './audit-events';
import { PostgresRefreshTokenRepository, RefreshTokenRepository } from './refresh-tokens';
import { Db } from './sql';
import { PostgresTenantRepository, TenantRepository } from './tenants';
import { PostgresUserRepository, UserRepository } from './users';

/** The identity repositories, all on one connection. */
export interface Repositories {
  tenants: TenantRepository;
  users: UserRepository;
  refreshTokens: RefreshTokenRepository;
  apiKeys: ApiKeyRepository;
  auditEvents: AuditEventRepository;
}

/** The identity data: repositories outside any transaction, and a way to run several changes atomically. */
export interface SigningStore extends Repositories {
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T>;
}

function repositoriesOn(db: Db): Repositories {
  return {
    tenants: new PostgresTenantRepository(db),
    users: new PostgresUserRepository(db),
    refreshTokens: new PostgresRefreshTokenRepository(db),
    apiKeys: new PostgresApiKeyRepository(db),
    auditEvents: new PostgresAuditEventRepository(db),
  };
}

/** The {@link SigningStore} in the service's PostgreSQL schema. */
export function postgresSigningStore(pool: Pool): SigningStore {
  return { ...repositoriesOn(pool), transaction: (work) => withTransaction(pool, (client) => work(repositoriesOn(client))) };
}
