/** The device service's own view of its data, independent of transport and storage. */

export type CredentialState = 'none' | 'active' | 'revoked';
export type ConnectionStatus = 'online' | 'offline';

/** One registered device (without its twin documents). */
export interface DeviceRecord {
  tenantId: string;
  id: string;
  name: string;
  type: string;
  /** The device's DeviceType; undefined for an untyped device (then `type` is free text). */
  deviceTypeId?: string;
  /** Set for devices registered by a provisioning claim. */
  serialNumber?: string;
  labels: Record<string, string>;
  credentialState: CredentialState;
  /** NATS user public key of the active credential. */
  credentialKey?: string;
  credentialIssueTime?: Date;
  credentialExpireTime?: Date;
  status: ConnectionStatus;
  lastSeenTime?: Date;
  lastConnectTime?: Date;
  lastDisconnectTime?: Date;
  /** The NATS server's reason for the last disconnect. */
  lastDisconnectReason: string;
  /** When telemetry last arrived. */
  lastDataTime?: Date;
  createTime: Date;
  updateTime: Date;
  /** Bumped by every change; orders cached copies. */
  version: number;
  /** Keyset position in lists. */
  seq: string;
}

/** What a caller may give when creating a device. */
export interface NewDevice {
  id: string;
  name: string;
  type: string;
  labels: Record<string, string>;
  /** A type id, or (before the registry resolves it) a type's id or name. */
  deviceTypeId?: string;
  serialNumber?: string;
}

/** Fields UpdateDevice may change. */
export interface DevicePatch {
  name?: string;
  type?: string;
  labels?: Record<string, string>;
  /** null unbinds the type. */
  deviceTypeId?: string | null;
}

/** Filters of a device list. */
export interface DeviceFilter {
  labels?: Record<string, string>;
  status?: ConnectionStatus;
  namePrefix?: string;
  type?: string;
  deviceTypeId?: string;
  /** Only devices this group's selector matches (resolved by the registry into labels and type). */
  groupId?: string;
  /** Only these devices (WatchDevices' snapshot). */
  ids?: string[];
}

/** The columns a device list may be sorted by (ListDevices' order_by). */
export const DEVICE_ORDER_FIELDS = ['name', 'type', 'status', 'create_time', 'last_seen_time'] as const;
export type DeviceOrderField = (typeof DEVICE_ORDER_FIELDS)[number];

/** A device list's order; ties (and the default, no field) go by creation order (seq). */
export interface DeviceOrder {
  field?: DeviceOrderField;
  descending: boolean;
}

/** A keyset position in a list: the last row's seq and, for a sorted list, its sort key (as text). */
export interface DeviceCursor {
  seq: string;
  key?: string;
}

/** A JSON object (a twin document, a command payload or result). */
export type JsonObject = Record<string, unknown>;

/** Desired and reported state of one device. */
export interface TwinRecord {
  deviceId: string;
  desired: JsonObject;
  desiredVersion: number;
  desiredUpdateTime?: Date;
  reported: JsonObject;
  reportedVersion: number;
  reportedUpdateTime?: Date;
}

export type CommandOutcome = 'pending' | 'succeeded' | 'failed' | 'timed_out' | 'device_offline';

/** One command sent to a device and what became of it. */
export interface CommandRecord {
  id: string;
  tenantId: string;
  deviceId: string;
  name: string;
  payload?: JsonObject;
  status: CommandOutcome;
  result?: JsonObject;
  error: string;
  actorId: string;
  createTime: Date;
  completeTime?: Date;
  seq: string;
}

/** Kinds of device events, as they appear in event subjects. */
export type DeviceEventKind = 'created' | 'updated' | 'deleted' | 'status_changed' | 'credential_issued' | 'credential_revoked';

/** What happens to telemetry naming a metric the device's type does not declare. */
export type UnknownMetricPolicy = 'accept' | 'dead_letter';

/** One metric a device type reports. */
export interface MetricDefinition {
  name: string;
  displayName: string;
  unit: string;
  kind: 'gauge' | 'counter' | 'boolean' | 'unspecified';
  min?: number;
  max?: number;
}

/** One command a device type takes, with the JSON Schema of its payload. */
export interface CommandDefinition {
  name: string;
  description: string;
  parametersSchema?: JsonObject;
}

/** A kind of device of one tenant. */
export interface DeviceTypeRecord {
  tenantId: string;
  id: string;
  name: string;
  displayName: string;
  description: string;
  metrics: MetricDefinition[];
  commands: CommandDefinition[];
  desiredSchema?: JsonObject;
  reportedSchema?: JsonObject;
  /** `iot.device.v1.DefaultAlertRule` messages as proto3 JSON: stored here, applied by monitoring. */
  defaultAlertRules: JsonObject[];
  firmwareVersion: string;
  unknownMetricPolicy: UnknownMetricPolicy;
  createTime: Date;
  updateTime: Date;
  seq: string;
}

/** The fields of a device type a caller sets. */
export type DeviceTypeInput = Omit<DeviceTypeRecord, 'tenantId' | 'id' | 'createTime' | 'updateTime' | 'seq'>;

/** A saved selector of devices. */
export interface GroupRecord {
  tenantId: string;
  id: string;
  name: string;
  description: string;
  matchLabels: Record<string, string>;
  deviceTypeId?: string;
  createTime: Date;
  updateTime: Date;
  seq: string;
}

/** A per-tenant key devices claim their registration with (its secret is only hashed). */
export interface ProvisioningKeyRecord {
  tenantId: string;
  id: string;
  name: string;
  secretPrefix: string;
  deviceTypeId?: string;
  labels: Record<string, string>;
  expireTime?: Date;
  /** 0: no limit. */
  usageLimit: number;
  deviceCount: number;
  claimCount: number;
  createTime: Date;
  revokeTime?: Date;
  seq: string;
}

export type ClaimOutcome = 'created' | 'reclaimed' | 'refused_revoked' | 'refused_expired' | 'refused_exhausted';

/** One audited use of a provisioning key. */
export interface ClaimRecord {
  keyId: string;
  serialNumber: string;
  deviceId: string;
  outcome: ClaimOutcome;
  peer: string;
  claimTime: Date;
  seq: string;
}

/** The disconnect reason of a session whose end no server reported (it restarted or became unreachable), found when reconciling. */
export const UNREPORTED_DISCONNECT = 'no disconnect reported (the server restarted or became unreachable)';

/** One connection of a device, as the NATS server reported it. */
export interface DeviceSessionRecord {
  deviceId: string;
  serverId: string;
  clientId: string;
  connectTime?: Date;
  disconnectTime?: Date;
  disconnectReason: string;
  remoteAddress: string;
  clientName: string;
  seq: string;
}

/** What a connect or disconnect event says about the connection itself. */
export interface SessionInfo {
  serverId: string;
  clientId: string;
  /** When the connection started (a disconnect event carries it too). */
  start?: Date;
  remoteAddress: string;
  clientName: string;
  /** The server's reason, on disconnect. */
  reason: string;
}
