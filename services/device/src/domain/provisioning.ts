import crypto from 'node:crypto';
import { errors, GrpcCode, ServiceError, Violations } from '@iot-mesh/runtime';
import type { ClaimResult, ProvisioningStore } from '../store/provisioning-store';
import type { Credentials, IssuedCredential } from './credentials';
import type { DeviceChanges, DeviceRegistry } from './devices';
import { newDeviceId } from './devices';
import type { DeviceTypes } from './device-types';
import { ClaimOutcome, ClaimRecord, DeviceRecord, ProvisioningKeyRecord } from './model';

/** Secrets start with this, so a leaked one is recognisable (secret scanners, logs). */
export const PROVISIONING_SECRET_PREFIX = 'iotpk_';
/** Characters of the secret kept in clear to tell keys apart. */
const SHOWN_PREFIX_LENGTH = PROVISIONING_SECRET_PREFIX.length + 6;
/** Printable characters, no spaces at the ends. */
const SERIAL = /^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$/;

/** `google.rpc.ErrorInfo` reasons of refused claims. */
export const CLAIM_REFUSALS = {
  unknown: 'PROVISIONING_KEY_UNKNOWN',
  refused_revoked: 'PROVISIONING_KEY_REVOKED',
  refused_expired: 'PROVISIONING_KEY_EXPIRED',
  refused_exhausted: 'PROVISIONING_KEY_EXHAUSTED',
} as const;

/** What CreateProvisioningKey asks for. */
export interface ProvisioningKeyInput {
  name: string;
  /** A type's id or name; undefined for untyped devices. */
  deviceTypeId?: string;
  labels: Record<string, string>;
  expireTime?: Date;
  usageLimit: number;
}

/** A claim that succeeded. */
export interface ClaimedDevice {
  device: DeviceRecord;
  credential: IssuedCredential;
  outcome: Extract<ClaimOutcome, 'created' | 'reclaimed'>;
}

/** What provisioning is built from. */
export interface ProvisioningDeps {
  store: ProvisioningStore;
  types: Pick<DeviceTypes, 'get' | 'byName'>;
  registry: Pick<DeviceRegistry, 'get'>;
  changes: Pick<DeviceChanges, 'announce'>;
  credentials: Pick<Credentials, 'requireConfigured' | 'issueFor' | 'rotate'>;
}

/** SHA-256 of a secret: the only form in which it is stored (256 random bits need no slow hash). */
export function hashSecret(secret: string): Buffer {
  return crypto.createHash('sha256').update(secret, 'utf8').digest();
}

/**
 * Self-provisioning. An admin creates a key bound to a device type and
 * labels (optionally expiring, optionally limited to N devices); a device
 * holding only the key claims with its serial number and gets its device and
 * its own credential. The same serial again gets the same device and a fresh
 * credential (the old one revoked): a device that lost its credential, after a
 * factory reset, must be able to recover, and a cloned serial cannot keep two
 * live credentials. Every claim is audited in `provisioning_claims`.
 */
export class Provisioning {
  constructor(private readonly deps: ProvisioningDeps) {}

  /** Creates a key; the secret is returned here only. */
  async createKey(tenantId: string, input: ProvisioningKeyInput): Promise<{ key: ProvisioningKeyRecord; secret: string }> {
    const v = new Violations();
    if (v.required(input.name.trim(), 'provisioning_key.name')) v.maxLength(input.name, 200, 'provisioning_key.name');
    v.check(Number.isSafeInteger(input.usageLimit) && input.usageLimit >= 0, 'provisioning_key.usage_limit', 'must be 0 (no limit) or more');
    if (input.expireTime) v.check(input.expireTime.getTime() > Date.now(), 'provisioning_key.expire_time', 'must be in the future');
    v.throwIfAny();
    const type = input.deviceTypeId ? await this.deps.types.byName(tenantId, input.deviceTypeId) : undefined;
    if (input.deviceTypeId && !type) throw errors.invalidArgument([{ field: 'provisioning_key.device_type_id', description: 'names no device type of the tenant' }]);
    const secret = PROVISIONING_SECRET_PREFIX + crypto.randomBytes(32).toString('base64url');
    const key = await this.deps.store.insertKey(tenantId, {
      id: crypto.randomUUID(),
      name: input.name.trim(),
      secretHash: hashSecret(secret),
      secretPrefix: secret.slice(0, SHOWN_PREFIX_LENGTH),
      deviceTypeId: type?.id,
      labels: input.labels,
      expireTime: input.expireTime,
      usageLimit: input.usageLimit,
    });
    return { key, secret };
  }

  async listKeys(tenantId: string, size: number, after: string | undefined): Promise<{ keys: ProvisioningKeyRecord[]; nextAfter?: string }> {
    const rows = await this.deps.store.listKeys(tenantId, after, size + 1);
    const keys = rows.slice(0, size);
    return { keys, nextAfter: rows.length > size ? keys[keys.length - 1].seq : undefined };
  }

  async revokeKey(tenantId: string, id: string): Promise<ProvisioningKeyRecord> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    const key = await this.deps.store.revokeKey(tenantId, id);
    if (!key) throw errors.notFound('provisioning key', id);
    return key;
  }

  /** The claims of one key, newest first. */
  async listClaims(tenantId: string, keyId: string, size: number, before: string | undefined): Promise<{ claims: ClaimRecord[]; nextBefore?: string }> {
    if (!keyId) throw errors.invalidArgument([{ field: 'key_id', description: 'is required' }]);
    if (!(await this.deps.store.getKey(tenantId, keyId))) throw errors.notFound('provisioning key', keyId);
    const rows = await this.deps.store.listClaims(tenantId, keyId, before, size + 1);
    const claims = rows.slice(0, size);
    return { claims, nextBefore: rows.length > size ? claims[claims.length - 1].seq : undefined };
  }

  /** A device's claim of its registration (see the class comment). */
  async claim(secret: string, serial: string, name: string, peer: string): Promise<ClaimedDevice> {
    const v = new Violations();
    v.required(secret, 'provisioning_key');
    if (v.required(serial, 'serial_number')) v.check(SERIAL.test(serial), 'serial_number', 'must be 1-128 printable ASCII characters without spaces at either end');
    v.maxLength(name, 200, 'name');
    v.throwIfAny();
    // Refuse before anything is written when no credential could be minted.
    this.deps.credentials.requireConfigured();
    const hash = hashSecret(secret);
    let result: ClaimResult;
    try {
      result = await this.claimOnce(hash, serial, name, peer);
    } catch (err) {
      // Another key's claim inserted this serial meanwhile: it is a re-claim now.
      if (!(err instanceof ServiceError && err.code === GrpcCode.ALREADY_EXISTS)) throw err;
      result = await this.claimOnce(hash, serial, name, peer);
    }
    if (result.kind === 'unknown_key') throw refusal(GrpcCode.PERMISSION_DENIED, 'unknown', 'the provisioning key is not valid');
    if (result.kind === 'refused') {
      const { outcome, key } = result;
      if (outcome === 'refused_revoked') throw refusal(GrpcCode.PERMISSION_DENIED, outcome, `the provisioning key ${JSON.stringify(key.secretPrefix)} was revoked`);
      if (outcome === 'refused_expired') throw refusal(GrpcCode.FAILED_PRECONDITION, outcome, `the provisioning key ${JSON.stringify(key.secretPrefix)} expired at ${key.expireTime!.toISOString()}`);
      throw refusal(GrpcCode.FAILED_PRECONDITION, outcome, `the provisioning key ${JSON.stringify(key.secretPrefix)} has created its limit of ${key.usageLimit} devices`);
    }
    const { device, key } = result;
    if (result.kind === 'created') {
      await this.deps.changes.announce('created', [device]);
      const issued = await this.deps.credentials.issueFor(key.tenantId, [device], undefined);
      return { device: issued.devices[0], credential: issued.credentials[0], outcome: 'created' };
    }
    const credential = await this.deps.credentials.rotate(key.tenantId, device.id, undefined);
    return { device: await this.deps.registry.get(key.tenantId, device.id), credential, outcome: 'reclaimed' };
  }

  private claimOnce(hash: Buffer, serial: string, name: string, peer: string): Promise<ClaimResult> {
    return this.deps.store.claim(hash, serial, peer, async (key) => {
      const type = key.deviceTypeId ? await this.deps.types.byName(key.tenantId, key.deviceTypeId) : undefined;
      return { id: newDeviceId(), name: name.trim() || serial, type: type?.name ?? '', labels: key.labels, deviceTypeId: type?.id, serialNumber: serial };
    });
  }
}

function refusal(code: GrpcCode, why: keyof typeof CLAIM_REFUSALS, message: string): ServiceError {
  return new ServiceError(code, message, { reason: CLAIM_REFUSALS[why] });
}
