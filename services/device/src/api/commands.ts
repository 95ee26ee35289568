import { callerPrincipal, callerTenant, defineService, durationToMs, pageSize, ServiceRegistration } from '@iot-mesh/runtime';
import { Command, CommandServiceService, CommandStatus } from '../../../../gen/ts/iot/device/v1/command';
import { Commands } from '../domain/commands';
import { CommandOutcome, CommandRecord } from '../domain/model';
import { decodeSeqToken, encodeSeqToken } from './devices';

const COMMAND_STATUSES: Record<CommandOutcome, CommandStatus> = {
  pending: CommandStatus.COMMAND_STATUS_PENDING,
  succeeded: CommandStatus.COMMAND_STATUS_SUCCEEDED,
  failed: CommandStatus.COMMAND_STATUS_FAILED,
  timed_out: CommandStatus.COMMAND_STATUS_TIMED_OUT,
  device_offline: CommandStatus.COMMAND_STATUS_DEVICE_OFFLINE,
};

/** A command record as the `iot.device.v1.Command` message. */
function toCommandMessage(c: CommandRecord): Command {
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

/** `iot.device.v1.CommandService`: send a command and wait for the device's answer; list a device's commands. */
export function commandApi(commands: Commands): ServiceRegistration {
  return defineService(CommandServiceService, {
    async sendCommand(request, ctx) {
      const principal = callerPrincipal(ctx);
      const command = await commands.send(principal.tenantId, request.deviceId, {
        name: request.name,
        payload: request.payload,
        timeoutMs: durationToMs(request.timeout),
        actorId: principal.id,
        remainingMs: ctx.remainingMs(),
        signal: ctx.signal,
      });
      return { command: toCommandMessage(command) };
    },
    async listCommands(request, ctx) {
      const tenantId = callerTenant(ctx);
      const before = decodeSeqToken(request.page?.pageToken);
      const page = await commands.list(tenantId, request.deviceId, pageSize(request.page?.pageSize), before);
      return { commands: page.commands.map(toCommandMessage), page: { nextPageToken: encodeSeqToken(page.nextBefore) } };
    },
  });
}
