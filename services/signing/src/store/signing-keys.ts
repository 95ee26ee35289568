import crypto, { KeyObject } from 'node:crypto';
import { Pool, PoolClient, PublicJwk, withTransaction } from '@iot-mesh/runtime';
import { KeyEncryption } from './key-encryption';

/** A freshly generated signing key to store. */
export interface NewSigningKey {
  kid: string;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
}

/** A published signing key as stored; the private key is decrypted only when asked for. */
export interface StoredSigningKey {
  kid: string;
  publicJwk: PublicJwk;
  activateTime: Date;
  retireTime: Date | null;
  /** Decrypts the private key (throws when it is encrypted and no encryption key is configured). */
  openPrivateKey(): KeyObject;
}

/** Where the signing keys are kept. Changes are serialised across replicas. */
export interface SigningKeyRepository {
  /** Stores `make()` as a key that signs at once unless some key is still published; returns its kid when one was created. */
  insertFirstIfNone(make: () => NewSigningKey): Promise<string | undefined>;
  /**
   * Stores `key`, signing `activationDelayMs` from now, and retires every
   * other published key `retireAfterMs` after the new key's activation.
   */
  insertReplacing(key: NewSigningKey, activationDelayMs: number, retireAfterMs: number): Promise<void>;
  /** Every key not yet retired. */
  published(): Promise<StoredSigningKey[]>;
}

interface KeyRow {
  kid: string;
  private_key: Buffer;
  encryption: 'none' | 'aes-256-gcm';
  public_jwk: PublicJwk;
  activate_time: Date;
  retire_time: Date | null;
}

const LOCK = 'iot-signing:keys';

/**
 * {@link SigningKeyRepository} on the `signing_keys` table, private keys as
 * PKCS#8 DER, encrypted at rest when an encryption key is configured.
 */
export class PostgresSigningKeyRepository implements SigningKeyRepository {
  constructor(private readonly pool: Pool, private readonly encryption: KeyEncryption | undefined) {}

  async insertFirstIfNone(make: () => NewSigningKey): Promise<string | undefined> {
    return withTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK]);
      const { rowCount } = await client.query('SELECT 1 FROM signing_keys WHERE retire_time IS NULL OR retire_time > now()');
      if (rowCount) return undefined;
      const key = make();
      await this.insert(client, key, 0);
      return key.kid;
    });
  }

  async insertReplacing(key: NewSigningKey, activationDelayMs: number, retireAfterMs: number): Promise<void> {
    await withTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK]);
      await this.insert(client, key, activationDelayMs);
      await client.query(
        `UPDATE signing_keys
            SET retire_time = (SELECT activate_time FROM signing_keys WHERE kid = $1) + make_interval(secs => $2::double precision / 1000)
          WHERE kid <> $1 AND (retire_time IS NULL OR retire_time > now())`,
        [key.kid, retireAfterMs],
      );
    });
  }

  async published(): Promise<StoredSigningKey[]> {
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT kid, private_key, encryption, public_jwk, activate_time, retire_time
         FROM signing_keys WHERE retire_time IS NULL OR retire_time > now()`,
    );
    return rows.map((row) => ({
      kid: row.kid,
      publicJwk: row.public_jwk,
      activateTime: row.activate_time,
      retireTime: row.retire_time,
      openPrivateKey: () => this.privateKeyOf(row),
    }));
  }

  private privateKeyOf(row: KeyRow): KeyObject {
    let der = row.private_key;
    if (row.encryption === 'aes-256-gcm') {
      if (!this.encryption) throw new Error(`signing key ${row.kid} is encrypted but SIGNING_KEY_ENCRYPTION_KEY is not set`);
      der = this.encryption.decrypt(der, row.kid);
    }
    return crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  }

  private async insert(client: PoolClient, key: NewSigningKey, activationDelayMs: number): Promise<void> {
    const der = key.privateKey.export({ format: 'der', type: 'pkcs8' });
    const stored = this.encryption ? this.encryption.encrypt(der, key.kid) : der;
    await client.query(
      `INSERT INTO signing_keys (kid, private_key, encryption, public_jwk, activate_time)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000))`,
      [key.kid, stored, this.encryption ? 'aes-256-gcm' : 'none', JSON.stringify(key.publicJwk), activationDelayMs],
    );
  }
}
