import { callerTenant, defineService, pageSize, ServiceRegistration } from '@iot-mesh/runtime';
import { DeviceSession, DeviceSessionServiceService } from '../../../../gen/ts/iot/device/v1/sessions';
import type { DeviceRegistry } from '../domain/devices';
import { DeviceSessionRecord } from '../domain/model';
import type { Presence } from '../domain/presence';
import { decodeSeqToken, encodeSeqToken } from './devices';

function toSessionMessage(s: DeviceSessionRecord): DeviceSession {
  return {
    deviceId: s.deviceId,
    serverId: s.serverId,
    clientId: BigInt(s.clientId),
    connectTime: s.connectTime,
    disconnectTime: s.disconnectTime,
    disconnectReason: s.disconnectReason,
    remoteAddress: s.remoteAddress,
    clientName: s.clientName,
  };
}

/** `iot.device.v1.DeviceSessionService`: the connection history of a device of the caller's tenant. */
export function sessionApi(registry: Pick<DeviceRegistry, 'get'>, presence: Pick<Presence, 'sessions'>): ServiceRegistration {
  return defineService(DeviceSessionServiceService, {
    async listDeviceSessions(request, ctx) {
      const tenantId = callerTenant(ctx);
      const device = await registry.get(tenantId, request.deviceId, 'device_id');
      const page = await presence.sessions(tenantId, device.id, pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { sessions: page.sessions.map(toSessionMessage), page: { nextPageToken: encodeSeqToken(page.nextBefore) } };
    },
  });
}
