import { callerPrincipal, callerTenant, defineService, pageSize, ServiceRegistration } from '@iot-mesh/runtime';
import { CommandServiceService } from '../../../gen/ts/iot/device/v1/command';
import { CredentialServiceService, } from '../../../gen/ts/iot/device/v1/credential';
import { DeviceCredential, DeviceServiceService, WatchDevicesResponse } from '../../../gen/ts/iot/device/v1/device';
import { TwinServiceService } from '../../../gen/ts/iot/device/v1/twin';
import { Duration } from '../../../gen/ts/google/protobuf/duration';
import { CommandService } from './commands';
import { fromDeviceStatus, toCommandMessage, toDeviceMessage, toTwinMessage } from './convert';
import { DeviceEvents } from './nats/device-events';
import { DeviceRegistry, IssuedCredential } from './service';
import { TwinService } from './twin';

/** How many events a slow WatchDevices client may lag behind before the oldest are dropped. */
const WATCH_BUFFER = 10_000;

function toCredentialMessage(c: IssuedCredential): DeviceCredential {
  return { ...c };
}

function durationMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/** The domain objects the gRPC handlers call. */
export interface DeviceHandlersDeps {
  registry: DeviceRegistry;
  twin: TwinService;
  commands: CommandService;
  events: DeviceEvents;
}

/** Thin transport: decode → domain call scoped to the caller's tenant → encode. */
export function deviceServices({ registry, twin, commands, events }: DeviceHandlersDeps): ServiceRegistration[] {
  return [
    defineService(DeviceServiceService, {
      async createDevice(request, ctx) {
        return { device: toDeviceMessage(await registry.create(callerTenant(ctx), request.device)) };
      },
      async getDevice(request, ctx) {
        return { device: toDeviceMessage(await registry.get(callerTenant(ctx), request.id)) };
      },
      async updateDevice(request, ctx) {
        return { device: toDeviceMessage(await registry.update(callerTenant(ctx), request.device, request.updateMask ?? [])) };
      },
      async deleteDevice(request, ctx) {
        await registry.delete(callerTenant(ctx), request.id);
        return {};
      },
      async listDevices(request, ctx) {
        const page = await registry.list(
          callerTenant(ctx),
          { labels: request.labels, status: fromDeviceStatus(request.status), namePrefix: request.namePrefix || undefined, type: request.type || undefined },
          pageSize(request.page?.pageSize),
          request.page?.pageToken || undefined,
        );
        return { devices: page.devices.map(toDeviceMessage), page: { nextPageToken: page.nextPageToken } };
      },
      async batchCreateDevices(request, ctx) {
        const result = await registry.createMany(callerTenant(ctx), request.devices, request.issueCredentials);
        return { devices: result.devices.map(toDeviceMessage), credentials: result.credentials.map(toCredentialMessage) };
      },
      async watchDevices(request, ctx, send) {
        const tenantId = callerTenant(ctx);
        const ids = new Set(request.deviceIds);
        const labels = Object.entries(request.labels);
        const matches = (e: WatchDevicesResponse) =>
          e.device !== undefined && (ids.size === 0 || ids.has(e.device.id)) && labels.every(([k, v]) => e.device!.labels[k] === v);
        const queue: WatchDevicesResponse[] = [];
        let wake: (() => void) | undefined;
        const sub = await events.subscribe(tenantId, (event) => {
          if (!matches(event)) return;
          queue.push(event);
          if (queue.length > WATCH_BUFFER) queue.shift();
          wake?.();
        });
        const aborted = new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
        try {
          while (!ctx.signal.aborted) {
            if (queue.length === 0) await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
            wake = undefined;
            while (queue.length > 0 && !ctx.signal.aborted) await send(queue.shift()!);
          }
        } finally {
          sub.unsubscribe();
        }
      },
    }),
    defineService(CredentialServiceService, {
      async issueCredential(request, ctx) {
        return { credential: toCredentialMessage(await registry.issueCredential(callerTenant(ctx), request.deviceId, request.expireTime)) };
      },
      async rotateCredential(request, ctx) {
        return { credential: toCredentialMessage(await registry.rotateCredential(callerTenant(ctx), request.deviceId, request.expireTime)) };
      },
      async revokeCredential(request, ctx) {
        return { device: toDeviceMessage(await registry.revokeCredential(callerTenant(ctx), request.deviceId)) };
      },
    }),
    defineService(TwinServiceService, {
      async getTwin(request, ctx) {
        const tenantId = callerTenant(ctx);
        await registry.get(tenantId, request.deviceId);
        return { twin: toTwinMessage(await twin.get(tenantId, request.deviceId)) };
      },
      async updateDesired(request, ctx) {
        const tenantId = callerTenant(ctx);
        await registry.get(tenantId, request.deviceId);
        return { twin: toTwinMessage(await twin.updateDesired(tenantId, request.deviceId, request.desired, Number(request.expectedVersion))) };
      },
    }),
    defineService(CommandServiceService, {
      async sendCommand(request, ctx) {
        const principal = callerPrincipal(ctx);
        const device = await registry.get(principal.tenantId, request.deviceId);
        const command = await commands.send(device, {
          name: request.name,
          payload: request.payload,
          timeoutMs: durationMs(request.timeout),
          actorId: principal.id,
          remainingMs: ctx.remainingMs(),
          signal: ctx.signal,
        });
        return { command: toCommandMessage(command) };
      },
      async listCommands(request, ctx) {
        const tenantId = callerTenant(ctx);
        await registry.get(tenantId, request.deviceId);
        const page = await commands.list(tenantId, request.deviceId, pageSize(request.page?.pageSize), request.page?.pageToken || undefined);
        return { commands: page.commands.map(toCommandMessage), page: { nextPageToken: page.nextPageToken } };
      },
    }),
  ];
}
