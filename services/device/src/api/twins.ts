import { callerTenant, defineService, ServiceRegistration } from '@iot-mesh/runtime';
import { Twin, TwinServiceService } from '../../../../gen/ts/iot/device/v1/twin';
import { TwinRecord } from '../domain/model';
import { Twins } from '../domain/twins';

/** A twin record as the `iot.device.v1.Twin` message. */
function toTwinMessage(t: TwinRecord): Twin {
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

/** `iot.device.v1.TwinService`: read the twin, replace the desired document, in the caller's tenant. */
export function twinApi(twins: Twins): ServiceRegistration {
  return defineService(TwinServiceService, {
    async getTwin(request, ctx) {
      return { twin: toTwinMessage(await twins.get(callerTenant(ctx), request.deviceId)) };
    },
    async updateDesired(request, ctx) {
      return { twin: toTwinMessage(await twins.updateDesired(callerTenant(ctx), request.deviceId, request.desired, Number(request.expectedVersion))) };
    },
  });
}
