import { callerTenant, defineService, errors, Middleware, ServiceSpec } from '@iot-mesh/runtime';
import { DeviceServiceService } from '../../../../gen/ts/iot/device/v1/device';

/**
 * A stand-in for another service of the mesh: the real DeviceService
 * contract behind the shared auth middleware, whose handlers echo the caller's
 * tenant so tests see what the middleware decided.
 */
export function echoDeviceSpec(auth: () => Middleware): ServiceSpec<{}> {
  const unimplemented = async () => {
    throw errors.failedPrecondition('not part of this test');
  };
  return {
    name: 'echo',
    env: {},
    defaultPort: 0,
    uses: {},
    async build() {
      const registration = defineService(DeviceServiceService, {
        async getDevice(req, ctx) {
          return { device: { id: req.id, tenantId: callerTenant(ctx), name: ctx.principal!.id, type: ctx.principal!.kind, labels: {}, credentialState: 0, status: 0 } as never };
        },
        async createDevice(req, ctx) {
          return { device: { ...(req.device as object), tenantId: callerTenant(ctx) } as never };
        },
        updateDevice: unimplemented,
        deleteDevice: unimplemented,
        listDevices: unimplemented,
        countDevices: unimplemented,
        batchCreateDevices: unimplemented,
        async watchDevices() {
          throw errors.failedPrecondition('not part of this test');
        },
      });
      return { services: [registration], middlewares: [auth()] };
    },
  };
}
