import { errors } from '@iot-mesh/runtime';
import type { MintedDeviceUser } from '@iot-mesh/nats-auth';
import type { DeviceStore } from '../store/device-store';
import { checkDeviceId, DeviceChanges } from './devices';
import { DeviceRecord } from './model';

/** A credential as handed to the caller once: the token is never stored. */
export interface IssuedCredential {
  deviceId: string;
  tenantId: string;
  token: string;
  publicKey: string;
  issueTime: Date;
  expireTime?: Date;
  natsUrl: string;
  mqttUrl: string;
  publishSubjects: string[];
  subscribeSubjects: string[];
}

/** What signs device credentials and makes the NATS server enforce revocations (`events/account-authority.ts`). */
export interface CredentialAuthority {
  mint(tenantId: string, deviceId: string, expireTime?: Date): MintedDeviceUser;
  /** Resolves once a NATS server applied the current revocation list. */
  sync(): Promise<void>;
  /** Like `sync`, but only logs a failure (it is retried). */
  syncInBackground(): Promise<void>;
}

/** What the credentials are built from. */
export interface CredentialsDeps {
  store: DeviceStore;
  changes: DeviceChanges;
  /** Absent when NATS credentials are not configured: credential calls then fail with FAILED_PRECONDITION. */
  authority?: CredentialAuthority;
  /** Where devices connect, as put into credentials. */
  urls: { nats: string; mqtt: string };
}

/**
 * Per-device NATS/MQTT credentials: issue, rotate, revoke. A revocation is
 * recorded in PostgreSQL first, then pushed to the NATS server, which drops
 * the live connection and refuses reconnects.
 */
export class Credentials {
  constructor(private readonly deps: CredentialsDeps) {}

  /** FAILED_PRECONDITION unless this server can mint credentials. */
  requireConfigured(): CredentialAuthority {
    if (!this.deps.authority) throw errors.failedPrecondition('device credentials are not configured on this server (DEVICE_NATS_* variables)');
    return this.deps.authority;
  }

  /** Mints a credential for a device that has no active one. */
  async issue(tenantId: string, id: string, expireTime: Date | undefined): Promise<IssuedCredential> {
    const device = await this.existing(tenantId, id, expireTime);
    if (device.credentialState === 'active') throw errors.failedPrecondition(`device ${JSON.stringify(id)} already has an active credential; rotate or revoke it`);
    const { credentials } = await this.mint(tenantId, [device], expireTime);
    return credentials[0];
  }

  /** Mints a new credential and revokes the previous one at the NATS server before returning. */
  async rotate(tenantId: string, id: string, expireTime: Date | undefined): Promise<IssuedCredential> {
    const device = await this.existing(tenantId, id, expireTime);
    const { credentials } = await this.mint(tenantId, [device], expireTime);
    if (device.credentialKey) await this.enforceRevocations();
    return credentials[0];
  }

  /** Revokes the credential: the NATS server drops the live connection and refuses reconnects. */
  async revoke(tenantId: string, id: string): Promise<DeviceRecord> {
    checkDeviceId(id, 'device_id');
    this.requireConfigured();
    const device = await this.deps.store.revokeCredential(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    await this.enforceRevocations();
    await this.deps.changes.announce('credential_revoked', [device]);
    return device;
  }

  /** Mints a credential for each of `devices` (just created, so none has one). */
  issueFor(tenantId: string, devices: DeviceRecord[], expireTime: Date | undefined): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    return this.mint(tenantId, devices, expireTime);
  }

  /** A deleted device's credential is on the revocation list: push it (normally done when this returns; retried if NATS is away). */
  async deviceDeleted(device: DeviceRecord): Promise<void> {
    if (device.credentialKey) await this.deps.authority?.syncInBackground();
  }

  /** Pushes the revocation list; a NATS failure becomes UNAVAILABLE (the registry already holds the revocation and retries). */
  private async enforceRevocations(): Promise<void> {
    try {
      await this.requireConfigured().sync();
    } catch (err) {
      throw errors.unavailable('the revocation is recorded but the NATS server has not confirmed it yet; it is retried', err);
    }
  }

  private async existing(tenantId: string, id: string, expireTime: Date | undefined): Promise<DeviceRecord> {
    checkDeviceId(id, 'device_id');
    this.requireConfigured();
    if (expireTime && expireTime.getTime() <= Date.now()) throw errors.invalidArgument([{ field: 'expire_time', description: 'must be in the future' }]);
    const device = await this.deps.store.get(tenantId, id);
    if (!device) throw errors.notFound('device', id);
    return device;
  }

  private async mint(tenantId: string, devices: DeviceRecord[], expireTime: Date | undefined): Promise<{ devices: DeviceRecord[]; credentials: IssuedCredential[] }> {
    const authority = this.requireConfigured();
    const issueTime = new Date();
    const minted = devices.map((d) => authority.mint(tenantId, d.id, expireTime));
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
      publicKey: minted[i].publicKey,
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
