import { NatsConnection } from 'nats';
import { Logger } from '@iot-mesh/runtime';
import { encodeAppAccount, mintDeviceUser, MintedDeviceUser, NKey } from '@iot-mesh/nats-auth';
import type { CredentialAuthority } from '../domain/credentials';

/** Where the authority reads the revocation list from. */
export type RevocationSource = () => Promise<Record<string, number>>;

/**
 * Holds the application account's keys: mints device users, and re-issues the
 * account JWT with the revocation list, pushed through a system-account user to
 * `$SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE` so the NATS server itself drops
 * and refuses revoked credentials. Pushes run one at a time and each reads the
 * list afresh, so the last push always carries every revocation.
 */
export class AccountAuthority implements CredentialAuthority {
  private chain: Promise<unknown> = Promise.resolve();
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly operator: NKey,
    private readonly account: NKey,
    private readonly system: NatsConnection,
    private readonly revocations: RevocationSource,
    private readonly log: Logger,
  ) {}

  /** Public key of the application account. */
  get accountId(): string {
    return this.account.publicKey;
  }

  /** Mints a bearer user JWT for one device. */
  mint(tenantId: string, deviceId: string, expireTime?: Date): MintedDeviceUser {
    return mintDeviceUser(this.account, tenantId, deviceId, expireTime);
  }

  /**
   * Pushes the account JWT with the current revocation list; resolves once a
   * server confirmed it. On failure a retry is scheduled and the error thrown.
   */
  sync(): Promise<void> {
    const run = this.chain.then(() => this.push());
    this.chain = run.catch(() => undefined);
    return run.catch((err: Error) => {
      this.scheduleRetry();
      throw err;
    });
  }

  /** Like {@link sync}, but only logs a failure (the retry keeps going). */
  syncInBackground(): Promise<void> {
    return this.sync().catch((err: Error) => this.log.warn({ err: err.message }, 'pushing the account revocation list failed; retrying'));
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.syncInBackground();
    }, 5000);
    this.retryTimer.unref();
  }

  private async push(): Promise<void> {
    const revocations = await this.revocations();
    const jwt = encodeAppAccount(this.operator, this.account, revocations);
    const reply = await this.system.request(`$SYS.REQ.ACCOUNT.${this.accountId}.CLAIMS.UPDATE`, new TextEncoder().encode(jwt), { timeout: 5000 });
    const body = JSON.parse(new TextDecoder().decode(reply.data)) as { data?: { code?: number }; error?: { code?: number; description?: string } };
    if (body.error || body.data?.code !== 200) {
      throw new Error(`account claims update refused: ${body.error?.description ?? JSON.stringify(body.data ?? body)}`);
    }
    this.log.info({ account: this.accountId, revocations: Object.keys(revocations).length }, 'account revocation list applied');
  }

  /** Ends the retries. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }
}
