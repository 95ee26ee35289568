import { NatsConnection } from 'nats';
import { connectNats, Logger } from '@iot-mesh/runtime';
import {
  DeviceConnectionKind,
  nkeyFromSeed,
  encodeAppAccount,
  encodeTenantAccount,
  mintDeviceUser,
  MintedDeviceUser,
  NKey,
  TenantAccountKeys,
  tenantAccountKeys,
  TenantAccountLimits,
  updateAccountClaims,
} from '@iot-mesh/nats-auth';
import type { CredentialAuthority } from '../domain/credentials';
import type { AccountStore } from '../store/account-store';

/** The device service's variables the authority reads (`config.ts`). */
export interface DeviceNatsConfig {
  DEVICE_NATS_OPERATOR_SIGNING_SEED?: string;
  DEVICE_NATS_PLATFORM_ACCOUNT?: string;
  DEVICE_NATS_TENANT_KEY_SECRET?: string;
  DEVICE_NATS_SYSTEM_CREDS?: string;
  DEVICE_ALLOW_INSECURE_NATS: boolean;
  DEVICE_TENANT_MAX_CONNECTIONS: number;
  DEVICE_TENANT_MQTT_STORAGE_BYTES: number;
}

/** What the authority is built from. */
export interface AccountAuthorityOptions {
  /** An operator signing key (not the operator identity): signs the account JWTs. */
  operatorSigner: NKey;
  /** Public key of the platform account, where the services connect. */
  platformAccount: string;
  /** Secret the tenant accounts' keys are derived from. */
  tenantKeySecret: string;
  /** Quotas written into every tenant account. */
  limits: TenantAccountLimits;
  /** A system-account connection: claim updates go through it. */
  system: NatsConnection;
  store: AccountStore;
  log: Logger;
}

/**
 * Keeps one NATS account per tenant (`@iot-mesh/nats-auth` tenant-accounts):
 * creates it when the tenant's first credential is minted (recorded in
 * PostgreSQL, its JWT pushed, then the platform account re-issued with imports
 * of every recorded tenant), mints device users with the tenant account's
 * signing key, and re-issues a tenant's JWT with its live revocation list.
 * JWTs go through a system-account user to
 * `$SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE`, so the NATS server itself drops
 * and refuses revoked credentials. Pushes run one at a time and each reads
 * the store afresh, so the last push always carries every revocation.
 */
export class AccountAuthority implements CredentialAuthority {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly known = new Set<string>();
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly options: AccountAuthorityOptions) {}

  /**
   * The authority the device service's variables describe, connected and
   * synced (every tenant account and the platform account pushed), and kept
   * synced after every reconnect; undefined (with a warning) when the
   * DEVICE_NATS_* variables are unset.
   */
  static async open(config: DeviceNatsConfig, natsUrl: string, store: AccountStore, log: Logger): Promise<{ system: NatsConnection; authority: AccountAuthority } | undefined> {
    const vars = [config.DEVICE_NATS_OPERATOR_SIGNING_SEED, config.DEVICE_NATS_PLATFORM_ACCOUNT, config.DEVICE_NATS_TENANT_KEY_SECRET, config.DEVICE_NATS_SYSTEM_CREDS];
    if (vars.some(Boolean) && !vars.every(Boolean)) {
      throw new Error('DEVICE_NATS_OPERATOR_SIGNING_SEED, DEVICE_NATS_PLATFORM_ACCOUNT, DEVICE_NATS_TENANT_KEY_SECRET and DEVICE_NATS_SYSTEM_CREDS must be set together');
    }
    if (!vars.every(Boolean)) {
      if (!config.DEVICE_ALLOW_INSECURE_NATS) {
        throw new Error(
          'refusing to start without NATS auth: set DEVICE_NATS_OPERATOR_SIGNING_SEED, DEVICE_NATS_PLATFORM_ACCOUNT, DEVICE_NATS_TENANT_KEY_SECRET and DEVICE_NATS_SYSTEM_CREDS (npm run setup:nats writes them), ' +
            'or set DEVICE_ALLOW_INSECURE_NATS=true to run without device credentials, where any NATS client can act as any device of any tenant (development only)',
        );
      }
      log.warn('DEVICE_ALLOW_INSECURE_NATS=true and DEVICE_NATS_* are not set: device credentials and connection status are disabled; any NATS client can act as any device');
      return undefined;
    }
    const system = await connectNats(natsUrl, 'iot-device-system', log.child({ component: 'nats-system' }), { credsFile: config.DEVICE_NATS_SYSTEM_CREDS });
    const authority = new AccountAuthority({
      operatorSigner: nkeyFromSeed(config.DEVICE_NATS_OPERATOR_SIGNING_SEED!.trim(), 'O'),
      platformAccount: config.DEVICE_NATS_PLATFORM_ACCOUNT!.trim(),
      tenantKeySecret: config.DEVICE_NATS_TENANT_KEY_SECRET!,
      limits: { connections: config.DEVICE_TENANT_MAX_CONNECTIONS, mqttStorageBytes: config.DEVICE_TENANT_MQTT_STORAGE_BYTES },
      system,
      store,
      log: log.child({ component: 'nats-account' }),
    });
    // A restarted NATS server may have forgotten accounts or revocations: push them on start and after every reconnect.
    await authority.syncAll();
    void (async () => {
      for await (const status of system.status()) if (status.type === 'reconnect') void authority.syncAll().catch(() => undefined);
    })();
    return { system, authority };
  }

  /** The keys of a tenant's account. */
  keysOf(tenantId: string): TenantAccountKeys {
    return tenantAccountKeys(this.options.tenantKeySecret, tenantId);
  }

  /** Makes sure the tenant's account exists at the NATS server (a no-op after the first time). */
  async prepare(tenantId: string): Promise<void> {
    if (this.known.has(tenantId)) return;
    await this.options.store.addTenantAccount(tenantId, this.keysOf(tenantId).account.publicKey);
    await this.serial(async () => {
      await this.pushTenant(tenantId);
      await this.pushPlatform();
    });
    this.known.add(tenantId);
  }

  /**
   * Mints a user JWT for one device (after {@link prepare}): bearer for MQTT
   * (the MQTT password), with its seed for NATS, so the JWT that nats-server
   * publishes in `$SYS.ACCOUNT.*.CONNECT` events does not log in.
   */
  mint(tenantId: string, deviceId: string, kind: DeviceConnectionKind, expireTime: Date): MintedDeviceUser {
    return mintDeviceUser(this.keysOf(tenantId), { deviceId, kind, expireTime, bearer: kind === 'mqtt' });
  }

  /**
   * Pushes the tenant's account JWT with its current revocation list;
   * resolves once a server confirmed it. On failure a full re-sync is
   * scheduled and the error thrown.
   */
  sync(tenantId: string): Promise<void> {
    return this.serial(() => this.pushTenant(tenantId)).catch((err: Error) => {
      this.scheduleRetry();
      throw err;
    });
  }

  /** Like {@link sync}, but only logs a failure (the retry keeps going). */
  syncInBackground(tenantId: string): Promise<void> {
    return this.sync(tenantId).catch((err: Error) => this.options.log.warn({ err: err.message, tenantId }, 'pushing a tenant account failed; retrying'));
  }

  /**
   * Pushes every recorded tenant account and the platform account: on start
   * and after every reconnect, so a restarted NATS server cannot forget an
   * account or a revocation.
   */
  syncAll(): Promise<void> {
    return this.serial(async () => {
      const tenants = await this.options.store.tenantAccounts();
      for (const { tenantId } of tenants) {
        await this.pushTenant(tenantId);
        this.known.add(tenantId);
      }
      await this.pushPlatform();
    }).catch((err: Error) => {
      this.scheduleRetry();
      throw err;
    });
  }

  /** Ends the retries. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.syncAll().catch((err: Error) => this.options.log.warn({ err: err.message }, 're-syncing the NATS accounts failed; retrying'));
    }, 5000);
    this.retryTimer.unref();
  }

  private async pushTenant(tenantId: string): Promise<void> {
    const { operatorSigner, platformAccount, limits, store, log } = this.options;
    const keys = this.keysOf(tenantId);
    const revocations = await store.revocations(tenantId);
    await this.push(keys.account.publicKey, encodeTenantAccount(operatorSigner, keys, platformAccount, limits, revocations));
    log.info({ tenantId, account: keys.account.publicKey, revocations: Object.keys(revocations).length }, 'tenant account applied');
  }

  private async pushPlatform(): Promise<void> {
    const { operatorSigner, platformAccount, store } = this.options;
    // Account ids derived afresh rather than read back, so the imports always name the accounts that sign the devices.
    const tenants = (await store.tenantAccounts()).map(({ tenantId }) => ({ tenantId, account: this.keysOf(tenantId).account.publicKey }));
    await this.push(platformAccount, encodeAppAccount(operatorSigner, platformAccount, tenants));
  }

  private push(account: string, jwt: string): Promise<void> {
    return updateAccountClaims(this.options.system, account, jwt);
  }

}
