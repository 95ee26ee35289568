import { callerTenant, defineService, ServiceRegistration } from '@iot-mesh/runtime';
import type { DeviceConnectionKind } from '@iot-mesh/nats-auth';
import { CredentialKind, CredentialServiceService } from '../../../../gen/ts/iot/device/v1/credential';
import { Credentials } from '../domain/credentials';
import { toCredentialMessage, toDeviceMessage } from './devices';

/** `iot.device.v1.CredentialService`: issue (one or a batch), rotate and revoke a device's NATS/MQTT credential in the caller's tenant. */
export function credentialApi(credentials: Credentials): ServiceRegistration {
  return defineService(CredentialServiceService, {
    async issueCredential(request, ctx) {
      return { credential: toCredentialMessage(await credentials.issue(callerTenant(ctx), request.deviceId, request.expireTime, kindOf(request.kind))) };
    },
    async batchIssueCredentials(request, ctx) {
      const issued = await credentials.issueMany(callerTenant(ctx), request.deviceIds, request.expireTime, kindOf(request.kind));
      return { credentials: issued.map(toCredentialMessage) };
    },
    async rotateCredential(request, ctx) {
      return { credential: toCredentialMessage(await credentials.rotate(callerTenant(ctx), request.deviceId, request.expireTime, kindOf(request.kind))) };
    },
    async revokeCredential(request, ctx) {
      return { device: toDeviceMessage(await credentials.revoke(callerTenant(ctx), request.deviceId)) };
    },
  });
}

/** The connection kind a request asked for; undefined for the server's default (an unknown value too, as proto3 enums are open). */
function kindOf(kind: CredentialKind): DeviceConnectionKind | undefined {
  if (kind === CredentialKind.CREDENTIAL_KIND_MQTT) return 'mqtt';
  if (kind === CredentialKind.CREDENTIAL_KIND_NATS) return 'nats';
  return undefined;
}
