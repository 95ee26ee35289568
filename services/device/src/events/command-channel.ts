import { createInbox, NatsConnection, Subscription } from 'nats';
import { ALL_COMMAND_REPLIES, deviceSubject, Logger, parseDeviceSubject } from '@iot-mesh/runtime';
import { CommandReply, CommandRequest } from '../../../../gen/ts/iot/telemetry/v1/telemetry';
import type { CommandAnswer, CommandChannel, OutgoingCommand } from '../domain/commands';
import { decodeDevicePayload, encodeForDevice } from './device-payload';

interface Waiter {
  tenantId: string;
  deviceId: string;
  resolve(answer: CommandAnswer | undefined): void;
}

/**
 * Commands on NATS: a `CommandRequest` (canonical JSON, the device protocol)
 * published to the device's `.cmd` subject with a reply subject of this
 * replica. A NATS device responds to it; an MQTT device (which cannot see
 * reply subjects) publishes its `CommandReply` on `.cmd.reply`.
 */
export class NatsCommandChannel implements CommandChannel {
  private readonly inboxPrefix = createInbox();
  private readonly waiters = new Map<string, Waiter>();
  private readonly subs: Subscription[] = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  /** Subscribes to replies; resolves once the server has the subscriptions. */
  async start(): Promise<void> {
    this.subs.push(
      this.nc.subscribe(`${this.inboxPrefix}.*`, {
        callback: (err, msg) => {
          if (err) return;
          const id = msg.subject.slice(this.inboxPrefix.length + 1);
          const waiter = this.waiters.get(id);
          if (!waiter) return;
          let reply: CommandReply;
          try {
            reply = decodeDevicePayload(msg.data, CommandReply);
          } catch {
            reply = { commandId: id, ok: false, result: undefined, error: 'the device sent an undecodable reply' };
          }
          this.settle(id, waiter, reply);
        },
      }),
      this.nc.subscribe(ALL_COMMAND_REPLIES, {
        callback: (err, msg) => {
          if (err) return;
          const from = parseDeviceSubject(msg.subject.slice(0, -'.reply'.length));
          if (!from) return;
          let reply: CommandReply;
          try {
            reply = decodeDevicePayload(msg.data, CommandReply);
          } catch {
            return;
          }
          const waiter = this.waiters.get(reply.commandId);
          // Only the device the command went to may answer it.
          if (waiter && waiter.tenantId === from.tenantId && waiter.deviceId === from.deviceId) this.settle(reply.commandId, waiter, reply);
        },
      }),
    );
    await this.nc.flush();
  }

  private settle(id: string, waiter: Waiter, reply: CommandReply): void {
    this.waiters.delete(id);
    waiter.resolve({ ok: reply.ok, result: reply.result, error: reply.error });
  }

  request(tenantId: string, deviceId: string, command: OutgoingCommand, waitMs: number, signal: AbortSignal): Promise<CommandAnswer | undefined> {
    return new Promise<CommandAnswer | undefined>((resolve) => {
      const timer = setTimeout(() => done(undefined), waitMs);
      const onAbort = () => done(undefined);
      const done = (answer: CommandAnswer | undefined) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiters.delete(command.commandId);
        resolve(answer);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(command.commandId, { tenantId, deviceId, resolve: done });
      try {
        this.nc.publish(deviceSubject(tenantId, deviceId, 'cmd'), encodeForDevice<CommandRequest>(command, CommandRequest), { reply: `${this.inboxPrefix}.${command.commandId}` });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'publishing a command failed');
        done(undefined);
      }
    });
  }

  /** Stops listening; commands still waiting fail as shut down. */
  stop(): void {
    for (const sub of this.subs) sub.unsubscribe();
    for (const [id, waiter] of this.waiters) {
      this.waiters.delete(id);
      waiter.resolve({ ok: false, result: undefined, error: 'the server is shutting down' });
    }
  }
}
