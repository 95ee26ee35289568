import { errors, GrpcCode, ServiceError } from '@iot-mesh/runtime';
import type { DeviceConnectionKind, MintedDeviceUser } from '@iot-mesh/nats-auth';
import type { DeviceStore } from '../store/device-store';
import { checkDeviceId, DeviceChanges } from './devices';
import { DeviceRecord } from './model';

/** A credential as handed to the caller once: the token is never stored. */
export interface IssuedCredential {
  deviceId: string;
  tenantId: string;
  /** The user JWT: bearer for MQTT, for NATS only with {@link seed}. */
  token: string;
  /** A NATS credential's user seed (signs the server's nonce); empty for MQTT. Secret. */
  seed: string;
  publicKey: string;
  kind: DeviceConnectionKind;
  issueTime: Date;
  expireTime: Date;
  natsUrl: string;
  mqttUrl: string;
  publishSubjects: string[];
  subscribeSubjects: string[];
}

/** Most devices one BatchIssueCredentials call names (as BatchCreateDevices creates). */
export const BATCH_ISSUE_LIMIT = 1000;

/** What signs device credentials and makes the NATS server enforce revocations (`events/account-authority.ts`). */
export interface CredentialAuthority {
  /** Makes sure the tenant's own NATS account exists at the server (before its first credential). */
  prepare(tenantId: string): Promise<void>;
  mint(tenantId: string, deviceId: string, kind: DeviceConnectionKind, expireTime: Date): MintedDeviceUser;
  /** Resolves once a NATS server applied the tenant's current revocation list. */
  sync(tenantId: string): Promise<void>;
  /** Like `sync`, but only logs a failure (it is retried). */
  syncInBackground(tenantId: string): Promise<void>;
}

/** Lifetimes, the default kind and the per-tenant quota of credentials. */
export interface CredentialPolicy {
  /** Lifetime of a credential whose request names no expire time. */
  defaultTtlMs: number;
  /** The latest expire time a request may ask for, from now. */
  maxTtlMs: number;
  /** Kind of a credential whose request names none (and of batch-created ones). */
  defaultKind: DeviceConnectionKind;
  /** Active credentials per tenant. */
  maxPerTenant: number;
}

/** The policy the device service's variables describe (`config.ts`). */
export function credentialPolicy(config: {
  DEVICE_CREDENTIAL_TTL_SECONDS: number;
  DEVICE_CREDENTIAL_MAX_TTL_SECONDS: number;
  DEVICE_CREDENTIAL_DEFAULT_KIND: DeviceConnectionKind;
  DEVICE_TENANT_MAX_CREDENTIALS: number;
}): CredentialPolicy {
  if (config.DEVICE_CREDENTIAL_TTL_SECONDS > config.DEVICE_CREDENTIAL_MAX_TTL_SECONDS) throw new Error('DEVICE_CREDENTIAL_TTL_SECONDS must not exceed DEVICE_CREDENTIAL_MAX_TTL_SECONDS');
  return {
    defaultTtlMs: config.DEVICE_CREDENTIAL_TTL_SECONDS * 1000,
    maxTtlMs: config.DEVICE_CREDENTIAL_MAX_TTL_SECONDS * 1000,
    defaultKind: config.DEVICE_CREDENTIAL_DEFAULT_KIND,
    maxPerTenant: config.DEVICE_TENANT_MAX_CREDENTIALS,
  };
}

/** Counts of the tenant's credentials, for the quota. */
export interface CredentialCounts {
  activeCredentials(tenantId: string): Promise<number>;
}

/** What the credentials are built from. */
export interface CredentialsDeps {
  store: DeviceStore;
  changes: DeviceChanges;
  /** Absent when NATS credentials are not configured: credential calls then fail with FAILED_PRECONDITION. */
  authority?: CredentialAuthority;
  /** Where devices connect, as put into credentials. */
  urls: { nats: string; mqtt: string };
  policy: CredentialPolicy;
  counts: CredentialCounts;
}

/**
 * Per-device NATS/MQTT credentials: issue, rotate, revoke. Each is typed
 * (MQTT or NATS) and expires, so a revocation can be left out of the account
 * JWT once the token is dead anyway. A revocation is recorded in PostgreSQL
 * first, then pushed to the NATS server (the tenant's own account), which
 * drops the live connection and refuses reconnects.
 */
export class Credentials {
  constructor(private readonly deps: CredentialsDeps) {}

  /** FAILED_PRECONDITION unless this server can mint credentials. */
  requireConfigured(): CredentialAuthority {
    if (!this.deps.authority) throw errors.failedPrecondition('device credentials are not configured on this server (DEVICE_NATS_* variables)');
    return this.deps.authority;
  }

  /** Mints a credential for a device that has no active one. */
  async issue(tenantId: string, id: string, expireTime: Date | undefined, kind?: DeviceConnectionKind): Promise<IssuedCredential> {
    const device = await this.existing(tenantId, id);
    if (device.credentialState === 'active') throw errors.failedPrecondition(`device ${JSON.stringify(id)} already has an active credential; rotate or revoke it`);
    const { credentials } = await this.mint(tenantId, [device], expireTime, kind);
    return credentials[0];
  }

  /**
   * Mints credentials for up to {@link BATCH_ISSUE_LIMIT} devices that have
   * none active, all or none (one quota check, one transaction, one
   * announcement); in the order of `ids`.
   */
  async issueMany(tenantId: string, ids: string[], expireTime: Date | undefined, kind?: DeviceConnectionKind): Promise<IssuedCredential[]> {
    if (ids.length === 0) throw errors.invalidArgument([{ field: 'device_ids', description: 'must name at least one device' }]);
    if (ids.length > BATCH_ISSUE_LIMIT) throw errors.invalidArgument([{ field: 'device_ids', description: `at most ${BATCH_ISSUE_LIMIT} per call` }]);
    const seen = new Set<string>();
    ids.forEach((id, i) => {
      checkDeviceId(id, `device_ids[${i}]`);
      if (seen.has(id)) throw errors.invalidArgument([{ field: `device_ids[${i}]`, description: `${JSON.stringify(id)} is named twice` }]);
      seen.add(id);
    });
    this.requireConfigured();
    const found = new Map((await this.deps.store.getMany(tenantId, ids)).map((d) => [d.id, d]));
    const devices = ids.map((id) => {
      const device = found.get(id);
      if (!device) throw errors.notFound('device', id);
      if (device.credentialState === 'active') throw errors.failedPrecondition(`device ${JSON.stringify(id)} already has an active credential; rotate or revoke it`);
      return device;
    });
    const { credentials } = await this.mint(tenantId, devices, expireTime, kind);
    return credentials;
  }

  /** Mints a new credential and revokes the previous one at the NATS server before returning. */
  async rotate(tenantId: string, id: string, expireTime: Date | undefined, kind?: DeviceConnectionKind): Promise<IssuedCredential> {
    const device = await this.existing(tenantId, id);
    const { credentials } = await this.mint(tenantId, [device], expireTime, kind);
    if (device.credentialKey) await this.enforceRevocations(tenantId);
    return credentials[0];
  }

  /** Revokes the credential: the NATS server drops the live connection and refuses reconnects. */
  async revoke(tenantId: string, id: string): Promise<DeviceRecord> {
    checkDeviceId(id, 'device_id');
    this.requireConfigured();
    const device = await this.deps.store.revokeCredential(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.enforceRevocations(tenantId);
    await this.deps.changes.announce('credential_revoked', [device]);
    return device;
  }

  /** Mints a credential for each of `devices` (just created, so none has one). */
  issueFor(tenantId: string, devices: DeviceRecord[], expireTime: Date | undefined, kind?: DeviceConnectionKind): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    return this.mint(tenantId, devices, expireTime, kind);
  }

  /** A deleted device's credential is on the revocation list: push it (normally done when this returns; retried if NATS is away). */
  async deviceDeleted(device: DeviceRecord): Promise<void> {
    if (device.credentialKey) await this.deps.authority?.syncInBackground(device.tenantId);
  }

  /** Pushes the tenant's revocation list; a NATS failure becomes UNAVAILABLE (the registry already holds the revocation and retries). */
  private async enforceRevocations(tenantId: string): Promise<void> {
    try {
      await this.requireConfigured().sync(tenantId);
    } catch (err) {
      throw errors.unavailable('the revocation is recorded but the NATS server has not confirmed it yet; it is retried', err);
    }
  }

  private async existing(tenantId: string, id: string): Promise<DeviceRecord> {
    checkDeviceId(id, 'device_id');
    this.requireConfigured();
    const device = await this.deps.store.get(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    return device;
  }

  /** The expire time a request asked for, checked, or the default lifetime from now. */
  private expiry(requested: Date | undefined, now: Date): Date {
    const { defaultTtlMs, maxTtlMs } = this.deps.policy;
    if (!requested) return new Date(now.getTime() + defaultTtlMs);
    if (requested.getTime() <= now.getTime()) throw errors.invalidArgument([{ field: 'expire_time', description: 'must be in the future' }]);
    if (requested.getTime() > now.getTime() + maxTtlMs) {
      throw errors.invalidArgument([{ field: 'expire_time', description: `must be at most ${Math.floor(maxTtlMs / 1000)} s from now (DEVICE_CREDENTIAL_MAX_TTL_SECONDS)` }]);
    }
    return requested;
  }

  /** RESOURCE_EXHAUSTED when `devices` would take the tenant past its quota of active credentials (a rotation replaces one). */
  private async checkQuota(tenantId: string, devices: DeviceRecord[]): Promise<void> {
    const added = devices.filter((d) => !d.credentialKey).length;
    if (added === 0) return;
    const active = await this.deps.counts.activeCredentials(tenantId);
    const { maxPerTenant } = this.deps.policy;
    if (active + added > maxPerTenant) {
      // A quota, not a rate: no RetryInfo, waiting does not help; revoking or deleting does.
      throw new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, `the tenant holds ${active} active device credentials; ${added} more would exceed its quota of ${maxPerTenant} (DEVICE_TENANT_MAX_CREDENTIALS)`);
    }
  }

  private async mint(tenantId: string, devices: DeviceRecord[], requestedExpiry: Date | undefined, requestedKind: DeviceConnectionKind | undefined): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    const authority = this.requireConfigured();
    const issueTime = new Date();
    const expireTime = this.expiry(requestedExpiry, issueTime);
    const kind = requestedKind ?? this.deps.policy.defaultKind;
    await this.checkQuota(tenantId, devices);
    await authority.prepare(tenantId);
    const minted = devices.map((d) => authority.mint(tenantId, d.id, kind, expireTime));
    const updated = await this.deps.store.setCredential(
      tenantId,
      devices.map((d) => d.id),
      minted.map((m) => ({ publicKey: m.publicKey, issueTime, expireTime })),
    );
    if (updated.length !== devices.length) throw errors.notFound('device', devices.find((d) => !updated.some((u) => u.id === d.id))!.id);
    await this.deps.changes.announce('credential_issued', updated);
    const credentials = devices.map((d, i) => ({
      deviceId: d.id,
      tenantId,
      token: minted[i].token,
      seed: minted[i].seed ?? '',
      publicKey: minted[i].publicKey,
      kind,
      issueTime,
      expireTime,
      natsUrl: this.deps.urls.nats,
      mqttUrl: this.deps.urls.mqtt,
      publishSubjects: minted[i].permissions.publish,
      subscribeSubjects: minted[i].permissions.subscribe,
    }));
    return { devices: updated, credentials };
  }
}
