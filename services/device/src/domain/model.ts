/** The device service's own view of its data, independent of transport and storage. */

export type CredentialState = 'none' | 'active' | 'revoked';
export type ConnectionStatus = 'online' | 'offline';

/** One registered device (without its twin documents). */
export interface DeviceRecord {
  tenantId: string;
  id: string;
  name: string;
  type: string;
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
}

/** Fields UpdateDevice may change. */
export interface DevicePatch {
  name?: string;
  type?: string;
  labels?: Record<string, string>;
}

/** Filters of a device list. */
export interface DeviceFilter {
  labels?: Record<string, string>;
  status?: ConnectionStatus;
  namePrefix?: string;
  type?: string;
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
