import { callerTenant, defineService, ServiceRegistration } from '@iot-mesh/runtime';
import { CredentialServiceService } from '../../../../gen/ts/iot/device/v1/credential';
import { Credentials } from '../domain/credentials';
import { toCredentialMessage, toDeviceMessage } from './devices';

/** `iot.device.v1.CredentialService`: issue, rotate and revoke a device's NATS/MQTT credential in the caller's tenant. */
export function credentialApi(credentials: Credentials): ServiceRegistration {
  return defineService(CredentialServiceService, {
    async issueCredential(request, ctx) {
      return { credential: toCredentialMessage(await credentials.issue(callerTenant(ctx), request.deviceId, request.expireTime)) };
    },
    async rotateCredential(request, ctx) {
      return { credential: toCredentialMessage(await credentials.rotate(callerTenant(ctx), request.deviceId, request.expireTime)) };
    },
    async revokeCredential(request, ctx) {
      return { device: toDeviceMessage(await credentials.revoke(callerTenant(ctx), request.deviceId)) };
    },
  });
}
