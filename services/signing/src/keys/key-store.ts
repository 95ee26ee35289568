import crypto, { KeyObject } from 'node:crypto';
import { KeySource, Logger, Pool, PublicJwk, publicJwkOf, withTransaction } from '@iot-mesh/runtime';
import { KeyEncryption } from './key-encryption';

/** Timing of key rotation. */
export interface KeyRotationPolicy {
  /** Lifetime of access tokens: a replaced key stays published this long after its last signature. */
  accessTokenTtlMs: number;
  /** A new key is published this long before it starts signing, so verifiers' caches pick it up first. */
  activationDelayMs: number;
  /** Extra time a replaced key stays published, for clock skew. */
  retireGraceMs: number;
}

interface KeyRow {
  kid: string;
  private_key: Buffer;
  encryption: 'none' | 'aes-256-gcm';
  public_jwk: PublicJwk;
  activate_time: Date;
  retire_time: Date | null;
}

interface CachedKey {
  kid: string;
  publicJwk: PublicJwk;
  publicKey: KeyObject;
  activateTime: Date;
  retireTime: Date | null;
  row: KeyRow;
  privateKey?: KeyObject;
}

const LOCK = 'iot-signing:keys';

/**
 * The ES256 signing keys, kept in PostgreSQL (private keys encrypted at rest
 * when an encryption key is configured) and cached briefly in memory so every
 * replica signs with the same key and publishes the same set.
 *
 * A key is published from creation, signs from its activation time and is
 * withdrawn at its retire time, which rotation sets to when the last token it
 * signed expires. It is also the signing service's own {@link KeySource}.
 */
export class SigningKeyStore implements KeySource {
  private cache: CachedKey[] = [];
  private loadedAt = 0;
  private loading?: Promise<void>;

  constructor(
    private readonly pool: Pool,
    private readonly policy: KeyRotationPolicy,
    private readonly encryption: KeyEncryption | undefined,
    private readonly log: Logger,
    private readonly cacheMs = 5_000,
  ) {}

  /** Creates the first key when there is none that can sign; called at start. */
  async ensureSigningKey(): Promise<void> {
    if (!this.encryption) this.log.warn('SIGNING_KEY_ENCRYPTION_KEY is not set: signing keys are stored unencrypted');
    await withTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK]);
      const { rowCount } = await client.query('SELECT 1 FROM signing_keys WHERE retire_time IS NULL OR retire_time > now()');
      if (!rowCount) {
        const kid = await this.insertKey(client, 0);
        this.log.info({ kid }, 'created the first signing key');
      }
    });
    await this.reload();
  }

  /**
   * Publishes a new key that starts signing after the activation delay; every
   * older key that is still published is retired once the tokens it may
   * still sign have expired. Returns the new key id.
   */
  async rotate(): Promise<string> {
    const kid = await withTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK]);
      const newKid = await this.insertKey(client, this.policy.activationDelayMs);
      await client.query(
        `UPDATE signing_keys
            SET retire_time = (SELECT activate_time FROM signing_keys WHERE kid = $1) + make_interval(secs => $2::double precision / 1000)
          WHERE kid <> $1 AND (retire_time IS NULL OR retire_time > now())`,
        [newKid, this.policy.accessTokenTtlMs + this.policy.retireGraceMs],
      );
      return newKid;
    });
    await this.reload();
    this.log.info({ kid, activationDelayMs: this.policy.activationDelayMs }, 'signing key rotated');
    return kid;
  }

  /** The key that signs now: the newest active one. */
  async signingKey(): Promise<{ kid: string; privateKey: KeyObject }> {
    await this.fresh();
    const now = Date.now();
    const candidates = this.cache.filter((k) => k.activateTime.getTime() <= now && (!k.retireTime || k.retireTime.getTime() > now));
    const key = candidates.sort((a, b) => b.activateTime.getTime() - a.activateTime.getTime())[0];
    if (!key) throw new Error('no active signing key');
    key.privateKey ??= this.privateKeyOf(key.row);
    return { kid: key.kid, privateKey: key.privateKey };
  }

  /** The published set: every key not yet retired, newest first. */
  async publishedKeys(): Promise<PublicJwk[]> {
    await this.fresh();
    const now = Date.now();
    return this.cache
      .filter((k) => !k.retireTime || k.retireTime.getTime() > now)
      .sort((a, b) => b.activateTime.getTime() - a.activateTime.getTime())
      .map((k) => k.publicJwk);
  }

  async keyFor(kid: string): Promise<KeyObject | undefined> {
    await this.fresh();
    let key = this.cache.find((k) => k.kid === kid);
    // Another replica may have rotated a moment ago.
    if (!key && Date.now() - this.loadedAt > 1000) {
      await this.reload();
      key = this.cache.find((k) => k.kid === kid);
    }
    if (!key || (key.retireTime && key.retireTime.getTime() <= Date.now())) return undefined;
    return key.publicKey;
  }

  private async fresh(): Promise<void> {
    if (Date.now() - this.loadedAt > this.cacheMs) await this.reload();
  }

  private async reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const { rows } = await this.pool.query<KeyRow>(
          `SELECT kid, private_key, encryption, public_jwk, activate_time, retire_time
             FROM signing_keys WHERE retire_time IS NULL OR retire_time > now()`,
        );
        const previous = new Map(this.cache.map((k) => [k.kid, k]));
        this.cache = rows.map((row) => ({
          kid: row.kid,
          publicJwk: row.public_jwk,
          publicKey: crypto.createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: row.public_jwk.x, y: row.public_jwk.y }, format: 'jwk' }),
          activateTime: row.activate_time,
          retireTime: row.retire_time,
          row,
          privateKey: previous.get(row.kid)?.privateKey,
        }));
        this.loadedAt = Date.now();
      } finally {
        this.loading = undefined;
      }
    })();
    await this.loading;
  }

  private privateKeyOf(row: KeyRow): KeyObject {
    let der = row.private_key;
    if (row.encryption === 'aes-256-gcm') {
      if (!this.encryption) throw new Error(`signing key ${row.kid} is encrypted but SIGNING_KEY_ENCRYPTION_KEY is not set`);
      der = this.encryption.decrypt(der, row.kid);
    }
    return crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  }

  private async insertKey(client: { query: Pool['query'] }, activationDelayMs: number): Promise<string> {
    const kid = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${crypto.randomBytes(6).toString('hex')}`;
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const stored = this.encryption ? this.encryption.encrypt(der, kid) : der;
    await client.query(
      `INSERT INTO signing_keys (kid, private_key, encryption, public_jwk, activate_time)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000))`,
      [kid, stored, this.encryption ? 'aes-256-gcm' : 'none', JSON.stringify(publicJwkOf(privateKey, kid)), activationDelayMs],
    );
    return kid;
  }
}
