import { fmtCreds } from '@nats-io/jwt';
import { Prefix } from 'nkeys.js';
import { Codec } from 'nkeys.js/lib/codec';
import crypto, { KeyObject } from 'node:crypto';

/**
 * NATS nkeys and JWTs signed with Node's native Ed25519. The pure-JS signer of
 * the nkeys package takes hundreds of milliseconds per signature (seconds under
 * jest), far too slow to mint a thousand device credentials in one call; the
 * encodings (nkey base32 with CRC, JWT v2 claims) are the package's.
 */

/** Key kinds used here, by their nkey letter. */
export type NKeyKind = 'O' | 'A' | 'U';

const PREFIX: Record<NKeyKind, Prefix> = { O: Prefix.Operator, A: Prefix.Account, U: Prefix.User };
/** DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows. */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

/** An nkey pair able to sign. */
export interface NKey {
  readonly kind: NKeyKind;
  /** `O…`, `A…` or `U…`. */
  readonly publicKey: string;
  /** `SO…`, `SA…` or `SU…`. Secret. */
  readonly seed: string;
  sign(data: Uint8Array): Uint8Array;
}

function fromKeyObject(kind: NKeyKind, privateKey: KeyObject, raw?: Uint8Array): NKey {
  const jwk = privateKey.export({ format: 'jwk' });
  const publicKey = new TextDecoder().decode(Codec.encode(PREFIX[kind], Buffer.from(jwk.x!, 'base64url')));
  let seed: string | undefined;
  return {
    kind,
    publicKey,
    // Encoded on demand: device users never need theirs.
    get seed() {
      return (seed ??= new TextDecoder().decode(Codec.encodeSeed(PREFIX[kind], raw ?? Buffer.from(jwk.d!, 'base64url'))));
    },
    sign: (data) => crypto.sign(null, data, privateKey),
  };
}

/** A fresh random nkey of `kind` (generated natively: importing a raw seed is ~5× slower). */
export function newNKey(kind: NKeyKind): NKey {
  return fromKeyObject(kind, crypto.generateKeyPairSync('ed25519').privateKey);
}

/** The nkey of a seed; throws unless the seed is well-formed and of `kind`. */
export function nkeyFromSeed(seed: string, kind: NKeyKind): NKey {
  const decoded = Codec.decodeSeed(new TextEncoder().encode(seed.trim()));
  if (decoded.prefix !== PREFIX[kind]) throw new Error(`not a seed of kind ${kind}`);
  return nkeyFromRaw(kind, decoded.buf);
}

function nkeyFromRaw(kind: NKeyKind, raw: Uint8Array): NKey {
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: 'der', type: 'pkcs8' });
  return fromKeyObject(kind, privateKey, raw);
}

/**
 * The nkey derived from `secret` for `purpose` (HKDF-SHA256): the same
 * secret and purpose always give the same key, so keys derived per tenant
 * need no storage and survive restarts.
 */
export function deriveNKey(kind: NKeyKind, secret: string, purpose: string): NKey {
  const raw = new Uint8Array(crypto.hkdfSync('sha256', secret, 'iot-mesh nats-auth', purpose, 32));
  return nkeyFromRaw(kind, raw);
}

/** True when `key` is a well-formed public nkey of `kind` (`A…` for an account). */
export function isPublicNKey(key: string, kind: NKeyKind): boolean {
  try {
    return Codec.decode(PREFIX[kind], new TextEncoder().encode(key)).length === 32;
  } catch {
    return false;
  }
}

/** JWT claim types. */
export type ClaimType = 'operator' | 'account' | 'user';

/** Encodes and signs a v2 NATS JWT (`alg: ed25519-nkey`) for `subject`, issued by `issuer`. */
export function encodeNatsJwt(type: ClaimType, name: string, subject: string, nats: Record<string, unknown>, issuer: NKey, options: { exp?: Date } = {}): string {
  const claim: Record<string, unknown> = {
    aud: 'NATS',
    ...(options.exp ? { exp: Math.floor(options.exp.getTime() / 1000) } : {}),
    name,
    sub: subject,
    nats: { ...nats, type, version: 2 },
    iss: issuer.publicKey,
    iat: Math.floor(Date.now() / 1000),
  };
  claim.jti = crypto.createHash('sha512').update(JSON.stringify(claim)).digest('base64');
  const header = Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' })).toString('base64url');
  const body = Buffer.from(JSON.stringify(claim)).toString('base64url');
  const signature = Buffer.from(issuer.sign(new TextEncoder().encode(`${header}.${body}`))).toString('base64url');
  return `${header}.${body}.${signature}`;
}

/** The claims of a NATS JWT, unverified (for JWTs the NATS server already accepted). */
export function peekNatsJwt(jwt: string): { sub?: string; name?: string; iss?: string; exp?: number } {
  const body = jwt.split('.')[1];
  if (!body) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { sub?: string; name?: string; iss?: string; exp?: number };
}

/**
 * The claims of a NATS JWT whose signature is valid for `issuer` (a public
 * nkey of `kind`) and that has not expired; undefined otherwise. For tokens a
 * client presents to the platform rather than to the NATS server.
 */
export function verifyNatsJwt(jwt: string, issuer: string, kind: NKeyKind, now = new Date()): { sub?: string; name?: string; iss?: string; exp?: number } | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  let claims: { sub?: string; name?: string; iss?: string; exp?: number };
  let raw: Uint8Array;
  try {
    claims = peekNatsJwt(jwt);
    raw = Codec.decode(PREFIX[kind], new TextEncoder().encode(issuer));
  } catch {
    return undefined;
  }
  if (typeof claims !== 'object' || claims === null || claims.iss !== issuer) return undefined;
  if (claims.exp !== undefined && claims.exp * 1000 <= now.getTime()) return undefined;
  try {
    const publicKey = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
    return crypto.verify(null, new TextEncoder().encode(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], 'base64url')) ? claims : undefined;
  } catch {
    return undefined;
  }
}

/** A `.creds` file body: the user JWT and its seed. */
export function formatCreds(jwt: string, user: NKey): string {
  return new TextDecoder().decode(fmtCreds(jwt, { getSeed: () => new TextEncoder().encode(user.seed) } as Parameters<typeof fmtCreds>[1]));
}
