import { Pool, withTransaction } from '@iot-mesh/runtime';
import { ClaimOutcome, ClaimRecord, DeviceRecord, NewDevice, ProvisioningKeyRecord } from '../domain/model';
import { DEVICE_ROW_COLUMNS, DeviceStoreLimits, insertDevices, optionalDate, Row, toDevice } from './device-store';
import { isUuid } from './device-type-store';

/** A key to store: its secret only as a hash. */
export interface NewProvisioningKey {
  id: string;
  name: string;
  secretHash: Buffer;
  secretPrefix: string;
  deviceTypeId?: string;
  labels: Record<string, string>;
  expireTime?: Date;
  usageLimit: number;
}

/** What a claim came to, decided and recorded in one transaction. */
export type ClaimResult =
  | { kind: 'unknown_key' }
  | { kind: 'refused'; outcome: Extract<ClaimOutcome, `refused_${string}`>; key: ProvisioningKeyRecord }
  | { kind: 'created' | 'reclaimed'; key: ProvisioningKeyRecord; device: DeviceRecord };

/** Persistence of provisioning keys and their audited claims. */
export interface ProvisioningStore {
  insertKey(tenantId: string, key: NewProvisioningKey): Promise<ProvisioningKeyRecord>;
  listKeys(tenantId: string, afterSeq: string | undefined, limit: number): Promise<ProvisioningKeyRecord[]>;
  getKey(tenantId: string, id: string): Promise<ProvisioningKeyRecord | undefined>;
  /** Sets the revoke time (kept when already revoked). */
  revokeKey(tenantId: string, id: string): Promise<ProvisioningKeyRecord | undefined>;
  /**
   * Claims `serial` with the key whose secret hashes to `secretHash`: the
   * key row is locked, so claims of one key are serialized; the device with
   * the serial is returned, or one made by `newDevice` is inserted; counters
   * and the audit row are written in the same transaction. ALREADY_EXISTS
   * when a claim with another key inserted the serial concurrently.
   */
  claim(secretHash: Buffer, serial: string, peer: string, newDevice: (key: ProvisioningKeyRecord) => Promise<NewDevice>): Promise<ClaimResult>;
  listClaims(tenantId: string, keyId: string, beforeSeq: string | undefined, limit: number): Promise<ClaimRecord[]>;
}

const KEY_COLUMNS = 'tenant_id, id, seq, name, secret_prefix, device_type_id, labels, expire_time, usage_limit, device_count, claim_count, create_time, revoke_time';

function toKey(row: Row): ProvisioningKeyRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    name: row.name,
    secretPrefix: row.secret_prefix,
    deviceTypeId: row.device_type_id ?? undefined,
    labels: row.labels,
    expireTime: optionalDate(row.expire_time),
    usageLimit: Number(row.usage_limit),
    deviceCount: Number(row.device_count),
    claimCount: Number(row.claim_count),
    createTime: row.create_time,
    revokeTime: optionalDate(row.revoke_time),
  };
}

function toClaim(row: Row): ClaimRecord {
  return {
    keyId: row.key_id,
    serialNumber: row.serial_number,
    deviceId: row.device_id,
    outcome: row.outcome,
    peer: row.peer,
    claimTime: row.claim_time,
    seq: String(row.seq),
  };
}

/** The PostgreSQL implementation (schema `device`). */
export class PgProvisioningStore implements ProvisioningStore {
  constructor(
    private readonly pool: Pool,
    private readonly limits: DeviceStoreLimits = {},
  ) {}

  async insertKey(tenantId: string, key: NewProvisioningKey): Promise<ProvisioningKeyRecord> {
    const { rows } = await this.pool.query(
      `INSERT INTO provisioning_keys (tenant_id, id, name, secret_hash, secret_prefix, device_type_id, labels, expire_time, usage_limit)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${KEY_COLUMNS}`,
      [tenantId, key.id, key.name, key.secretHash, key.secretPrefix, key.deviceTypeId ?? null, JSON.stringify(key.labels), key.expireTime ?? null, key.usageLimit],
    );
    return toKey(rows[0]);
  }

  async listKeys(tenantId: string, afterSeq: string | undefined, limit: number): Promise<ProvisioningKeyRecord[]> {
    const { rows } = await this.pool.query(`SELECT ${KEY_COLUMNS} FROM provisioning_keys WHERE tenant_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3`, [
      tenantId,
      afterSeq ?? '0',
      limit,
    ]);
    return rows.map(toKey);
  }

  async getKey(tenantId: string, id: string): Promise<ProvisioningKeyRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query(`SELECT ${KEY_COLUMNS} FROM provisioning_keys WHERE tenant_id = $1 AND id = $2::uuid`, [tenantId, id]);
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  async revokeKey(tenantId: string, id: string): Promise<ProvisioningKeyRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query(
      `UPDATE provisioning_keys SET revoke_time = COALESCE(revoke_time, now()) WHERE tenant_id = $1 AND id = $2::uuid RETURNING ${KEY_COLUMNS}`,
      [tenantId, id],
    );
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  claim(secretHash: Buffer, serial: string, peer: string, newDevice: (key: ProvisioningKeyRecord) => Promise<NewDevice>): Promise<ClaimResult> {
    return withTransaction(this.pool, async (client) => {
      const { rows: keys } = await client.query(`SELECT ${KEY_COLUMNS} FROM provisioning_keys WHERE secret_hash = $1 FOR UPDATE`, [secretHash]);
      if (!keys[0]) return { kind: 'unknown_key' };
      const key = toKey(keys[0]);
      const audit = async (outcome: ClaimOutcome, deviceId: string, counts: { devices: number; claims: number }): Promise<ProvisioningKeyRecord> => {
        await client.query(`INSERT INTO provisioning_claims (tenant_id, key_id, serial_number, device_id, outcome, peer) VALUES ($1, $2, $3, $4, $5, $6)`, [
          key.tenantId,
          key.id,
          serial,
          deviceId,
          outcome,
          peer,
        ]);
        const { rows } = await client.query(
          `UPDATE provisioning_keys SET device_count = device_count + $3, claim_count = claim_count + $4 WHERE tenant_id = $1 AND id = $2 RETURNING ${KEY_COLUMNS}`,
          [key.tenantId, key.id, counts.devices, counts.claims],
        );
        return toKey(rows[0]);
      };
      const refuse = async (outcome: Extract<ClaimOutcome, `refused_${string}`>): Promise<ClaimResult> => ({ kind: 'refused', outcome, key: await audit(outcome, '', { devices: 0, claims: 0 }) });
      if (key.revokeTime) return refuse('refused_revoked');
      if (key.expireTime && key.expireTime.getTime() <= Date.now()) return refuse('refused_expired');
      const { rows: existing } = await client.query(`SELECT ${DEVICE_ROW_COLUMNS} FROM devices WHERE tenant_id = $1 AND serial_number = $2`, [key.tenantId, serial]);
      if (existing[0]) {
        const device = toDevice(existing[0]);
        return { kind: 'reclaimed', device, key: await audit('reclaimed', device.id, { devices: 0, claims: 1 }) };
      }
      if (key.usageLimit > 0 && key.deviceCount >= key.usageLimit) return refuse('refused_exhausted');
      const [device] = await insertDevices(client, key.tenantId, [await newDevice(key)], this.limits.maxDevicesPerTenant);
      return { kind: 'created', device, key: await audit('created', device.id, { devices: 1, claims: 1 }) };
    });
  }

  async listClaims(tenantId: string, keyId: string, beforeSeq: string | undefined, limit: number): Promise<ClaimRecord[]> {
    const { rows } = await this.pool.query(
      `SELECT seq, key_id, serial_number, device_id, outcome, peer, claim_time FROM provisioning_claims
        WHERE tenant_id = $1 AND key_id = $2::uuid AND ($3::bigint IS NULL OR seq < $3::bigint) ORDER BY seq DESC LIMIT $4`,
      [tenantId, keyId, beforeSeq ?? null, limit],
    );
    return rows.map(toClaim);
  }
}
