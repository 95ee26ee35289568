import { Command, CommandStatus } from '../../../gen/ts/iot/device/v1/command';
import { CredentialState, Device, DeviceEventType, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { Twin } from '../../../gen/ts/iot/device/v1/twin';
import { CommandOutcome, CommandRecord, ConnectionStatus, DeviceEventKind, DeviceRecord, TwinRecord } from './model';

/** Conversions between the service's records and the `iot.device.v1` messages. */

const CREDENTIAL_STATES: Record<DeviceRecord['credentialState'], CredentialState> = {
  none: CredentialState.CREDENTIAL_STATE_NONE,
  active: CredentialState.CREDENTIAL_STATE_ACTIVE,
  revoked: CredentialState.CREDENTIAL_STATE_REVOKED,
};

export function toDeviceStatus(status: ConnectionStatus): DeviceStatus {
  return status === 'online' ? DeviceStatus.DEVICE_STATUS_ONLINE : DeviceStatus.DEVICE_STATUS_OFFLINE;
}

/** The connection status a list filter asks for; undefined for "any". */
export function fromDeviceStatus(status: DeviceStatus): ConnectionStatus | undefined {
  if (status === DeviceStatus.DEVICE_STATUS_ONLINE) return 'online';
  if (status === DeviceStatus.DEVICE_STATUS_OFFLINE) return 'offline';
  return undefined;
}

export function toDeviceMessage(d: DeviceRecord): Device {
  return {
    id: d.id,
    tenantId: d.tenantId,
    name: d.name,
    type: d.type,
    labels: d.labels,
    credentialState: CREDENTIAL_STATES[d.credentialState],
    status: toDeviceStatus(d.status),
    lastSeenTime: d.lastSeenTime,
    lastConnectTime: d.lastConnectTime,
    lastDisconnectTime: d.lastDisconnectTime,
    createTime: d.createTime,
    updateTime: d.updateTime,
  };
}

const EVENT_TYPES: Record<DeviceEventKind, DeviceEventType> = {
  created: DeviceEventType.DEVICE_EVENT_TYPE_CREATED,
  updated: DeviceEventType.DEVICE_EVENT_TYPE_UPDATED,
  deleted: DeviceEventType.DEVICE_EVENT_TYPE_DELETED,
  status_changed: DeviceEventType.DEVICE_EVENT_TYPE_STATUS_CHANGED,
  credential_issued: DeviceEventType.DEVICE_EVENT_TYPE_CREDENTIAL_ISSUED,
  credential_revoked: DeviceEventType.DEVICE_EVENT_TYPE_CREDENTIAL_REVOKED,
};

export function toEventType(kind: DeviceEventKind): DeviceEventType {
  return EVENT_TYPES[kind];
}

export function toTwinMessage(t: TwinRecord): Twin {
  return {
    deviceId: t.deviceId,
    desired: t.desired,
    desiredVersion: BigInt(t.desiredVersion),
    desiredUpdateTime: t.desiredUpdateTime,
    reported: t.reported,
    reportedVersion: BigInt(t.reportedVersion),
    reportedUpdateTime: t.reportedUpdateTime,
  };
}

const COMMAND_STATUSES: Record<CommandOutcome, CommandStatus> = {
  pending: CommandStatus.COMMAND_STATUS_PENDING,
  succeeded: CommandStatus.COMMAND_STATUS_SUCCEEDED,
  failed: CommandStatus.COMMAND_STATUS_FAILED,
  timed_out: CommandStatus.COMMAND_STATUS_TIMED_OUT,
  device_offline: CommandStatus.COMMAND_STATUS_DEVICE_OFFLINE,
};

export function toCommandMessage(c: CommandRecord): Command {
  return {
    id: c.id,
    deviceId: c.deviceId,
    name: c.name,
    payload: c.payload,
    status: COMMAND_STATUSES[c.status],
    result: c.result,
    error: c.error,
    actorId: c.actorId,
    createTime: c.createTime,
    completeTime: c.completeTime,
  };
}
