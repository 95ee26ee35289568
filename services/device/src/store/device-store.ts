import { errors, GrpcCode, PG_ERROR, Pool, PoolClient, ServiceError, withTransaction } from '@iot-mesh/runtime';
import { DeviceCursor, DeviceFilter, DeviceOrder, DeviceOrderField, DevicePatch, DeviceRecord, NewDevice, UNREPORTED_DISCONNECT } from '../domain/model';

/** A connection status change applied to a device. */
export interface StatusChange {
  device: DeviceRecord;
  /** True when online/offline flipped. */
  changed: boolean;
}

/** A connection of the credential `publicKey` opened (+1) or closed (-1) at `at`, for the server's `reason`. */
export interface ConnectionDelta {
  publicKey: string;
  delta: 1 | -1;
  at: Date;
  reason?: string;
}

/** Persistence of the registry, credentials and connection status (twins: `twin-store.ts`, commands: `command-store.ts`). */
export interface DeviceStore {
  /** Inserts all or none; ALREADY_EXISTS when an id is taken, RESOURCE_EXHAUSTED past the tenant's device quota. */
  insert(tenantId: string, devices: NewDevice[]): Promise<DeviceRecord[]>;
  get(tenantId: string, id: string): Promise<DeviceRecord | undefined>;
  /** The devices of `ids` that exist, in no particular order. */
  getMany(tenantId: string, ids: string[]): Promise<DeviceRecord[]>;
  update(tenantId: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined>;
  /** Deletes the device, moving an active credential key to the revocation list. */
  delete(tenantId: string, id: string): Promise<DeviceRecord | undefined>;
  list(tenantId: string, filter: DeviceFilter, afterSeq: string | undefined, limit: number): Promise<DeviceRecord[]>;
  /** A page in `order` after `after`, each device with its own cursor (index-backed: migration 0006). */
  listOrdered(tenantId: string, filter: DeviceFilter, order: DeviceOrder, after: DeviceCursor | undefined, limit: number): Promise<{ device: DeviceRecord; cursor: DeviceCursor }[]>;
  /** How many devices match `filter`. */
  count(tenantId: string, filter: DeviceFilter): Promise<number>;
  /** Every device of every tenant, in seq order, `batch` at a time. */
  scanAll(batch: number): AsyncIterable<DeviceRecord[]>;

  /** Records a new active credential, revoking the previous one (if any). FAILED_PRECONDITION-worthy states are the caller's business. */
  setCredential(tenantId: string, ids: string[], keys: { publicKey: string; issueTime: Date; expireTime?: Date }[]): Promise<DeviceRecord[]>;
  /** Marks the credential revoked and lists its key as revoked. */
  revokeCredential(tenantId: string, id: string): Promise<DeviceRecord | undefined>;

  /**
   * Applies connection events in one statement, at most one per credential
   * key: each opens (+1) or closes (-1) a live connection of the device
   * holding the key. The change of every key a device holds, by key.
   */
  applyConnections(events: ConnectionDelta[]): Promise<Map<string, StatusChange>>;
  /** Sets every device's connection count to what the NATS servers report (credential key → live connections). */
  reconcileConnections(counts: Map<string, number>): Promise<StatusChange[]>;
  /** Advances last-seen and last-data times (telemetry arrived); returns the devices touched. */
  touchLastSeen(entries: { tenantId: string; id: string; at: Date }[]): Promise<{ tenantId: string; id: string; version: number }[]>;
}

const DEVICE_COLUMNS = `tenant_id, id, seq, name, type, device_type_id, serial_number, labels, credential_state, credential_key, credential_issue_time,
  credential_expire_time, status, last_seen_time, last_connect_time, last_disconnect_time, last_disconnect_reason, last_data_time, create_time, update_time, version`;

/** A result row. */
export type Row = Record<string, any>;

/** A nullable column as an optional field. */
export function optionalDate(value: Date | null): Date | undefined {
  return value ?? undefined;
}

/** The columns of a device row, for `RETURNING` and `SELECT` in other stores of this schema. */
export const DEVICE_ROW_COLUMNS = DEVICE_COLUMNS;

/** A device row as a record. */
export function toDevice(row: Row): DeviceRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    name: row.name,
    type: row.type,
    deviceTypeId: row.device_type_id ?? undefined,
    serialNumber: row.serial_number ?? undefined,
    labels: row.labels,
    credentialState: row.credential_state,
    credentialKey: row.credential_key ?? undefined,
    credentialIssueTime: optionalDate(row.credential_issue_time),
    credentialExpireTime: optionalDate(row.credential_expire_time),
    status: row.status,
    lastSeenTime: optionalDate(row.last_seen_time),
    lastConnectTime: optionalDate(row.last_connect_time),
    lastDisconnectTime: optionalDate(row.last_disconnect_time),
    lastDisconnectReason: row.last_disconnect_reason ?? '',
    lastDataTime: optionalDate(row.last_data_time),
    createTime: row.create_time,
    updateTime: row.update_time,
    version: Number(row.version),
  };
}

/** Escapes LIKE metacharacters so a name prefix matches literally. */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Sort expressions of ListDevices' order_by (each matches an index of migration 0006) and the type of their cursor key. */
const ORDER_KEYS: Record<DeviceOrderField, { sql: string; cast: string }> = {
  name: { sql: 'name', cast: 'text' },
  type: { sql: 'type', cast: 'text' },
  status: { sql: 'status', cast: 'text' },
  create_time: { sql: 'create_time', cast: 'timestamptz' },
  last_seen_time: { sql: "COALESCE(last_seen_time, '-infinity'::timestamptz)", cast: 'timestamptz' },
};

/** The WHERE conditions of a device filter (`group_id` is resolved by the registry first). */
function filterClause(tenantId: string, filter: DeviceFilter): { where: string[]; params: unknown[]; add: (sql: string, value: unknown) => void } {
  const where = ['tenant_id = $1'];
  const params: unknown[] = [tenantId];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (filter.labels && Object.keys(filter.labels).length > 0) add('labels @> ?::jsonb', JSON.stringify(filter.labels));
  if (filter.status) add('status = ?', filter.status);
  if (filter.namePrefix) add("name LIKE ? ESCAPE '\\'", likePrefix(filter.namePrefix));
  if (filter.type) add('type = ?', filter.type);
  if (filter.deviceTypeId) add('device_type_id = ?::uuid', filter.deviceTypeId);
  if (filter.ids) add('id = ANY(?::text[])', filter.ids);
  return { where, params, add };
}

/** Something to run a query on: the pool or a client inside a transaction. */
export type Queryable = Pick<PoolClient, 'query'>;

/** First key of the advisory lock a tenant's device creations take (the second is the tenant's hash). */
const DEVICE_QUOTA_LOCK = 0x10de;

/**
 * RESOURCE_EXHAUSTED with a `google.rpc.QuotaFailure` unless the tenant has room
 * for `adding` more devices. Run inside the inserting transaction: the
 * per-tenant advisory lock it takes (held until commit) makes concurrent
 * creations count one after the other, so two at the limit cannot both pass.
 */
async function checkDeviceQuota(db: Queryable, tenantId: string, adding: number, maxPerTenant: number): Promise<void> {
  await db.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [DEVICE_QUOTA_LOCK, tenantId]);
  // Kept by triggers in the transactions that insert and delete devices (migration 0009).
  const { rows } = await db.query('SELECT devices::int FROM tenant_device_counts WHERE tenant_id = $1', [tenantId]);
  const existing = (rows[0]?.devices as number | undefined) ?? 0;
  if (existing + adding <= maxPerTenant) return;
  // A quota, not a rate: no RetryInfo, waiting does not help; deleting devices does.
  throw new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, `the tenant has ${existing} devices; ${adding} more would exceed its quota of ${maxPerTenant} (DEVICE_MAX_PER_TENANT)`, {
    quotaViolations: [{ subject: `tenant:${tenantId}`, description: `devices per tenant (DEVICE_MAX_PER_TENANT = ${maxPerTenant})` }],
  });
}

/**
 * Inserts all devices or none (ALREADY_EXISTS when an id or serial number is
 * taken), in the order given. With `maxPerTenant`, `db` must be a client inside
 * a transaction: the quota is checked under a lock held until it commits.
 */
export async function insertDevices(db: Queryable, tenantId: string, devices: NewDevice[], maxPerTenant?: number): Promise<DeviceRecord[]> {
  if (devices.length === 0) return [];
  if (maxPerTenant !== undefined) await checkDeviceQuota(db, tenantId, devices.length, maxPerTenant);
  const { rows } = await db
    .query(
      `INSERT INTO devices (tenant_id, id, name, type, labels, device_type_id, serial_number)
       SELECT $1, d.id, d.name, d.type, d.labels, d.device_type_id, d.serial_number
         FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::uuid[], $7::text[]) WITH ORDINALITY AS d(id, name, type, labels, device_type_id, serial_number, n)
        ORDER BY d.n
       RETURNING ${DEVICE_COLUMNS}`,
      [
        tenantId,
        devices.map((d) => d.id),
        devices.map((d) => d.name),
        devices.map((d) => d.type),
        devices.map((d) => JSON.stringify(d.labels)),
        devices.map((d) => d.deviceTypeId ?? null),
        devices.map((d) => d.serialNumber ?? null),
      ],
    )
    .catch((err: { code?: string; constraint?: string }) => {
      if (err.code === PG_ERROR.uniqueViolation) throw errors.alreadyExists(err.constraint === 'devices_tenant_serial' ? 'a device with this serial number already exists' : 'a device with this id already exists');
      throw err;
    });
  const byId = new Map(rows.map((r) => [r.id as string, toDevice(r)]));
  return devices.map((d) => byId.get(d.id)!);
}

/** Quotas the stores enforce where devices are inserted. */
export interface DeviceStoreLimits {
  /** Devices one tenant may have (DEVICE_MAX_PER_TENANT); unset: no quota. */
  maxDevicesPerTenant?: number;
}

/** The PostgreSQL implementation (schema `device`). */
export class PgDeviceStore implements DeviceStore {
  constructor(
    private readonly pool: Pool,
    private readonly limits: DeviceStoreLimits = {},
  ) {}

  insert(tenantId: string, devices: NewDevice[]): Promise<DeviceRecord[]> {
    const max = this.limits.maxDevicesPerTenant;
    if (max === undefined) return insertDevices(this.pool, tenantId, devices);
    return withTransaction(this.pool, (client) => insertDevices(client, tenantId, devices, max));
  }

  async get(tenantId: string, id: string): Promise<DeviceRecord | undefined> {
    const { rows } = await this.pool.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return rows[0] ? toDevice(rows[0]) : undefined;
  }

  async getMany(tenantId: string, ids: string[]): Promise<DeviceRecord[]> {
    const { rows } = await this.pool.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND id = ANY($2::text[])`, [tenantId, ids]);
    return rows.map(toDevice);
  }

  async update(tenantId: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined> {
    const { rows } = await this.pool.query(
      `UPDATE devices SET
         name = COALESCE($3, name), type = COALESCE($4, type), labels = COALESCE($5::jsonb, labels),
         device_type_id = CASE WHEN $6 THEN $7::uuid ELSE device_type_id END,
         version = nextval('device_versions'), update_time = now()
       WHERE tenant_id = $1 AND id = $2
       RETURNING ${DEVICE_COLUMNS}`,
      [tenantId, id, patch.name ?? null, patch.type ?? null, patch.labels ? JSON.stringify(patch.labels) : null, patch.deviceTypeId !== undefined, patch.deviceTypeId ?? null],
    );
    return rows[0] ? toDevice(rows[0]) : undefined;
  }

  async delete(tenantId: string, id: string): Promise<DeviceRecord | undefined> {
    return withTransaction(this.pool, async (client) => {
      const { rows } = await client.query(`DELETE FROM devices WHERE tenant_id = $1 AND id = $2 RETURNING ${DEVICE_COLUMNS}`, [tenantId, id]);
      if (!rows[0]) return undefined;
      const device = toDevice(rows[0]);
      if (device.credentialKey) await this.addRevocation(client, device, device.credentialKey, device.credentialExpireTime);
      return device;
    });
  }

  async list(tenantId: string, filter: DeviceFilter, afterSeq: string | undefined, limit: number): Promise<DeviceRecord[]> {
    const rows = await this.listOrdered(tenantId, filter, { descending: false }, afterSeq === undefined ? undefined : { seq: afterSeq }, limit);
    return rows.map((r) => r.device);
  }

  async listOrdered(tenantId: string, filter: DeviceFilter, order: DeviceOrder, after: DeviceCursor | undefined, limit: number): Promise<{ device: DeviceRecord; cursor: DeviceCursor }[]> {
    const { where, params, add } = filterClause(tenantId, filter);
    const key = order.field ? ORDER_KEYS[order.field] : undefined;
    const cmp = order.descending ? '<' : '>';
    const dir = order.descending ? 'DESC' : 'ASC';
    if (after !== undefined) {
      if (key && after.key !== undefined) {
        params.push(after.key, after.seq);
        where.push(`(${key.sql}, seq) ${cmp} ($${params.length - 1}::${key.cast}, $${params.length}::bigint)`);
      } else add(`seq ${cmp} ?::bigint`, after.seq);
    }
    params.push(limit);
    const orderBy = key ? `${key.sql} ${dir}, seq ${dir}` : `seq ${dir}`;
    const { rows } = await this.pool.query(
      `SELECT ${DEVICE_COLUMNS}${key ? `, (${key.sql})::text AS sort_key` : ''} FROM devices WHERE ${where.join(' AND ')} ORDER BY ${orderBy} LIMIT $${params.length}`,
      params,
    );
    return rows.map((r) => ({ device: toDevice(r), cursor: { seq: String(r.seq), key: key ? r.sort_key : undefined } }));
  }

  async count(tenantId: string, filter: DeviceFilter): Promise<number> {
    const { where, params } = filterClause(tenantId, filter);
    const { rows } = await this.pool.query(`SELECT count(*)::bigint AS n FROM devices WHERE ${where.join(' AND ')}`, params);
    return Number(rows[0].n);
  }

  async *scanAll(batch: number): AsyncIterable<DeviceRecord[]> {
    let after = '0';
    for (;;) {
      const { rows } = await this.pool.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE seq > $1 ORDER BY seq LIMIT $2`, [after, batch]);
      if (rows.length === 0) return;
      const devices = rows.map(toDevice);
      yield devices;
      after = devices[devices.length - 1].seq;
    }
  }

  private async addRevocation(client: PoolClient, device: DeviceRecord, publicKey: string, expireTime: Date | undefined): Promise<void> {
    await client.query(
      `INSERT INTO revoked_credentials (public_key, tenant_id, device_id, expire_time) VALUES ($1, $2, $3, $4)
       ON CONFLICT (public_key) DO NOTHING`,
      [publicKey, device.tenantId, device.id, expireTime ?? null],
    );
  }

  async setCredential(tenantId: string, ids: string[], keys: { publicKey: string; issueTime: Date; expireTime?: Date }[]): Promise<DeviceRecord[]> {
    return withTransaction(this.pool, async (client) => {
      const { rows: previous } = await client.query(
        `SELECT ${DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND id = ANY($2::text[]) FOR UPDATE`,
        [tenantId, ids],
      );
      for (const row of previous) {
        const device = toDevice(row);
        if (device.credentialKey) await this.addRevocation(client, device, device.credentialKey, device.credentialExpireTime);
      }
      const { rows } = await client.query(
        `UPDATE devices d SET credential_state = 'active', credential_key = k.public_key, credential_issue_time = k.issue_time,
           credential_expire_time = k.expire_time, version = nextval('device_versions'), update_time = now()
           FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS k(id, public_key, issue_time, expire_time)
          WHERE d.tenant_id = $1 AND d.id = k.id
          RETURNING ${DEVICE_COLUMNS.split(',').map((c) => `d.${c.trim()}`).join(', ')}`,
        [tenantId, ids, keys.map((k) => k.publicKey), keys.map((k) => k.issueTime), keys.map((k) => k.expireTime ?? null)],
      );
      const byId = new Map(rows.map((r) => [r.id as string, toDevice(r)]));
      return ids.map((id) => byId.get(id)).filter((d): d is DeviceRecord => d !== undefined);
    });
  }

  async revokeCredential(tenantId: string, id: string): Promise<DeviceRecord | undefined> {
    return withTransaction(this.pool, async (client) => {
      const { rows: previous } = await client.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenantId, id]);
      if (!previous[0]) return undefined;
      const before = toDevice(previous[0]);
      if (before.credentialKey) await this.addRevocation(client, before, before.credentialKey, before.credentialExpireTime);
      const { rows } = await client.query(
        `UPDATE devices SET credential_state = CASE WHEN credential_state = 'none' THEN 'none' ELSE 'revoked' END,
           credential_key = NULL, version = nextval('device_versions'), update_time = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING ${DEVICE_COLUMNS}`,
        [tenantId, id],
      );
      return toDevice(rows[0]);
    });
  }

  async applyConnections(events: ConnectionDelta[]): Promise<Map<string, StatusChange>> {
    if (events.length === 0) return new Map();
    // Rows are locked in key order, as the other many-row writers of connection columns lock them, so two batches cannot deadlock.
    const { rows } = await this.pool.query(
      `WITH e AS (SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[]) AS e(key, delta, at, reason)),
       before AS (SELECT d.tenant_id, d.id, d.status, e.key, e.delta, e.at, e.reason FROM devices d JOIN e ON d.credential_key = e.key
                   ORDER BY d.tenant_id, d.id FOR UPDATE OF d)
       UPDATE devices d SET connections = GREATEST(d.connections + b.delta, 0),
           status = CASE WHEN d.connections + b.delta > 0 THEN 'online' ELSE 'offline' END,
           last_connect_time = CASE WHEN b.delta > 0 THEN GREATEST(d.last_connect_time, b.at) ELSE d.last_connect_time END,
           last_disconnect_time = CASE WHEN b.delta < 0 THEN GREATEST(d.last_disconnect_time, b.at) ELSE d.last_disconnect_time END,
           last_seen_time = GREATEST(d.last_seen_time, b.at),
           last_disconnect_reason = CASE WHEN b.delta < 0 AND b.at >= COALESCE(d.last_disconnect_time, '-infinity'::timestamptz) THEN b.reason ELSE d.last_disconnect_reason END,
           version = nextval('device_versions')
         FROM before b WHERE d.tenant_id = b.tenant_id AND d.id = b.id
         RETURNING ${DEVICE_COLUMNS.split(',').map((c) => `d.${c.trim()}`).join(', ')}, b.status AS previous_status, b.key AS event_key`,
      [events.map((e) => e.publicKey), events.map((e) => e.delta), events.map((e) => e.at), events.map((e) => e.reason ?? '')],
    );
    return new Map(rows.map((r) => [r.event_key as string, { device: toDevice(r), changed: r.previous_status !== r.status }]));
  }

  async reconcileConnections(counts: Map<string, number>): Promise<StatusChange[]> {
    const { rows } = await this.pool.query(
      `WITH counts AS (SELECT * FROM unnest($1::text[], $2::int[]) AS c(key, n)),
       target AS (
         SELECT d.tenant_id, d.id, d.status AS previous_status, COALESCE(c.n, 0) AS n
           FROM devices d LEFT JOIN counts c ON c.key = d.credential_key
          WHERE d.connections <> COALESCE(c.n, 0) OR d.status <> CASE WHEN COALESCE(c.n, 0) > 0 THEN 'online' ELSE 'offline' END
          ORDER BY d.tenant_id, d.id FOR UPDATE OF d)
       UPDATE devices d SET connections = t.n, status = CASE WHEN t.n > 0 THEN 'online' ELSE 'offline' END,
           last_disconnect_time = CASE WHEN t.n = 0 AND d.status = 'online' THEN now() ELSE d.last_disconnect_time END,
           last_disconnect_reason = CASE WHEN t.n = 0 AND d.status = 'online' THEN $3 ELSE d.last_disconnect_reason END,
           version = nextval('device_versions')
         FROM target t WHERE d.tenant_id = t.tenant_id AND d.id = t.id
         RETURNING ${DEVICE_COLUMNS.split(',').map((c) => `d.${c.trim()}`).join(', ')}, t.previous_status`,
      [[...counts.keys()], [...counts.values()], UNREPORTED_DISCONNECT],
    );
    return rows.map((r) => ({ device: toDevice(r), changed: r.previous_status !== r.status }));
  }

  async touchLastSeen(entries: { tenantId: string; id: string; at: Date }[]): Promise<{ tenantId: string; id: string; version: number }[]> {
    if (entries.length === 0) return [];
    const { rows } = await this.pool.query(
      `WITH locked AS (SELECT d.tenant_id, d.id, e.at FROM devices d JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS e(tenant_id, id, at)
                        ON d.tenant_id = e.tenant_id AND d.id = e.id ORDER BY d.tenant_id, d.id FOR UPDATE OF d)
       UPDATE devices d SET last_seen_time = GREATEST(d.last_seen_time, l.at), last_data_time = GREATEST(d.last_data_time, l.at), version = nextval('device_versions')
         FROM locked l WHERE d.tenant_id = l.tenant_id AND d.id = l.id
        RETURNING d.tenant_id, d.id, d.version`,
      [entries.map((e) => e.tenantId), entries.map((e) => e.id), entries.map((e) => e.at)],
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, id: r.id, version: Number(r.version) }));
  }

}
