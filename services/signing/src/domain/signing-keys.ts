import crypto, { KeyObject } from 'node:crypto';
import { keyFromJwk, KeySource, Logger, Principal, PublicJwk } from '@iot-mesh/runtime';
import type { NewSigningKey, SigningKeyRepository, StoredSigningKey } from '../store/signing-keys';
import type { AuditTrail } from './audit';
import type { RequestOrigin } from './request-origin';

/** Timing of key rotation. */
export interface KeyRotationPolicy {
  /** Lifetime of access tokens: a replaced key stays published this long after its last signature. */
  accessTokenTtlMs: number;
  /** A new key is published this long before it starts signing, so verifiers' caches pick it up first. */
  activationDelayMs: number;
  /** Extra time a replaced key stays published, for clock skew. */
  retireGraceMs: number;
}

interface CachedKey {
  stored: StoredSigningKey;
  publicKey: KeyObject;
  privateKey?: KeyObject;
}

const isRetired = (key: StoredSigningKey, now: number): boolean => key.retireTime !== null && key.retireTime.getTime() <= now;
const newestFirst = (a: StoredSigningKey, b: StoredSigningKey): number => b.activateTime.getTime() - a.activateTime.getTime();

/** The key that signs at `now`: the newest one that is active and not retired. */
export function currentSigningKeyOf<K extends StoredSigningKey>(keys: K[], now = Date.now()): K | undefined {
  return keys.filter((k) => k.activateTime.getTime() <= now && !isRetired(k, now)).sort(newestFirst)[0];
}

/** The public JWK of an EC P-256 key (private or public). */
export function publicJwkOf(key: KeyObject, kid: string): PublicJwk {
  const publicKey = key.type === 'private' ? crypto.createPublicKey(key) : key;
  const jwk = publicKey.export({ format: 'jwk' }) as { kty?: string; crv?: string; x?: string; y?: string };
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new Error('signing keys must be EC P-256');
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' };
}

/** A new ES256 key with a dated, random kid. */
function generateSigningKey(): NewSigningKey {
  const kid = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${crypto.randomBytes(6).toString('hex')}`;
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, publicJwk: publicJwkOf(privateKey, kid) };
}

/**
 * The ES256 signing keys, cached briefly in memory so every replica signs
 * with the same key and publishes the same set.
 *
 * A key is published from creation, signs from its activation time and is
 * withdrawn at its retire time, which rotation sets to when the last token it
 * signed expires. It is also the signing service's own {@link KeySource}.
 */
export class SigningKeys implements KeySource {
  private cache: CachedKey[] = [];
  private loadedAt = 0;
  private loading?: Promise<void>;

  constructor(
    private readonly keys: SigningKeyRepository,
    private readonly policy: KeyRotationPolicy,
    private readonly audit: AuditTrail,
    private readonly log: Logger,
    private readonly cacheMs = 5_000,
  ) {}

  /** Creates the first key when there is none that can sign; called at start. */
  async ensureSigningKey(): Promise<void> {
    const kid = await this.keys.insertFirstIfNone(generateSigningKey);
    if (kid) this.log.info({ kid }, 'created the first signing key');
    await this.reload();
  }

  /**
   * Publishes a new key that starts signing after the activation delay; every
   * older key that is still published is retired once the tokens it may
   * still sign have expired. Audited; returns the new key id.
   */
  async rotate(actor: Principal, origin: RequestOrigin): Promise<string> {
    const key = generateSigningKey();
    await this.keys.insertReplacing(key, this.policy.activationDelayMs, this.policy.accessTokenTtlMs + this.policy.retireGraceMs);
    await this.reload();
    this.log.info({ kid: key.kid, activationDelayMs: this.policy.activationDelayMs }, 'signing key rotated');
    await this.audit.record({ tenantId: actor.tenantId, type: 'signing_key.rotated', actorId: actor.id, subject: { kind: 'signing_key', id: key.kid }, sourceAddress: origin.address });
    return key.kid;
  }

  /** The key that signs now: the newest active one. */
  async signingKey(): Promise<{ kid: string; privateKey: KeyObject }> {
    await this.fresh();
    const key = currentSigningKeyOf(this.cache.map((k) => k.stored));
    const cached = key && this.cache.find((k) => k.stored === key);
    if (!cached) throw new Error('no active signing key');
    cached.privateKey ??= cached.stored.openPrivateKey();
    return { kid: cached.stored.kid, privateKey: cached.privateKey };
  }

  /** The published set: every key not yet retired, newest first. */
  async publishedKeys(): Promise<PublicJwk[]> {
    await this.fresh();
    const now = Date.now();
    return this.cache
      .map((k) => k.stored)
      .filter((k) => !isRetired(k, now))
      .sort(newestFirst)
      .map((k) => k.publicJwk);
  }

  /** The verification key of a published key id; undefined when unknown or retired. */
  async keyFor(kid: string): Promise<KeyObject | undefined> {
    await this.fresh();
    let key = this.cache.find((k) => k.stored.kid === kid);
    // Another replica may have rotated a moment ago.
    if (!key && Date.now() - this.loadedAt > 1000) {
      await this.reload();
      key = this.cache.find((k) => k.stored.kid === kid);
    }
    if (!key || isRetired(key.stored, Date.now())) return undefined;
    return key.publicKey;
  }

  private async fresh(): Promise<void> {
    if (Date.now() - this.loadedAt > this.cacheMs) await this.reload();
  }

  private async reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const stored = await this.keys.published();
        const previous = new Map(this.cache.map((k) => [k.stored.kid, k]));
        this.cache = stored.map((s) => {
          const publicKey = keyFromJwk(s.publicJwk);
          if (!publicKey) throw new Error(`signing key ${s.kid} has no usable public JWK`);
          return { stored: s, publicKey, privateKey: previous.get(s.kid)?.privateKey };
        });
        this.loadedAt = Date.now();
      } finally {
        this.loading = undefined;
      }
    })();
    await this.loading;
  }
}
