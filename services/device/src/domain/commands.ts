import crypto from 'node:crypto';
import { createInbox, NatsConnection, Subscription } from 'nats';
import { ALL_COMMAND_REPLIES, decodePageToken, deviceSubject, encodePageToken, errors, Logger, parseDeviceSubject, Violations } from '@iot-mesh/runtime';
import { CommandReply, CommandRequest } from '../../../gen/ts/iot/telemetry/v1/telemetry';
import { CommandRecord, DeviceRecord, JsonObject } from './model';
import { DeviceStore } from './store/device-store';
import { decodeDevicePayload, documentSize, TWIN_DOCUMENT_LIMIT } from './twin';

export const DEFAULT_COMMAND_TIMEOUT_MS = 5000;
export const MAX_COMMAND_TIMEOUT_MS = 60_000;
const COMMAND_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** What SendCommand asks for. */
export interface CommandInput {
  name: string;
  payload?: JsonObject;
  /** Requested wait; undefined for the default. */
  timeoutMs?: number;
  actorId: string;
  /** Time left before the caller's own deadline. */
  remainingMs: number;
  signal: AbortSignal;
}

interface Waiter {
  tenantId: string;
  deviceId: string;
  resolve(reply: CommandReply): void;
}

/**
 * Commands: a `CommandRequest` published to the device's `.cmd` subject with a
 * reply subject of this replica. A NATS device responds to it; an MQTT device
 * (which cannot see reply subjects) publishes its `CommandReply` on
 * `.cmd.reply`. Every command is recorded with its outcome.
 */
export class CommandService {
  private readonly inboxPrefix = createInbox();
  private readonly waiters = new Map<string, Waiter>();
  private readonly subs: Subscription[] = [];

  constructor(
    private readonly store: DeviceStore,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.subs.push(
      this.nc.subscribe(`${this.inboxPrefix}.*`, {
        callback: (err, msg) => {
          if (err) return;
          const id = msg.subject.slice(this.inboxPrefix.length + 1);
          const waiter = this.waiters.get(id);
          if (waiter) this.settle(id, waiter, msg.data);
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
          if (waiter && waiter.tenantId === from.tenantId && waiter.deviceId === from.deviceId) {
            this.waiters.delete(reply.commandId);
            waiter.resolve(reply);
          }
        },
      }),
    );
    await this.nc.flush();
  }

  private settle(id: string, waiter: Waiter, data: Uint8Array): void {
    let reply: CommandReply;
    try {
      reply = decodeDevicePayload(data, CommandReply);
    } catch {
      reply = { commandId: id, ok: false, result: undefined, error: 'the device sent an undecodable reply' };
    }
    this.waiters.delete(id);
    waiter.resolve(reply);
  }

  /** Sends a command to `device` and waits for its reply. */
  async send(device: DeviceRecord, input: CommandInput): Promise<CommandRecord> {
    const v = new Violations();
    v.check(COMMAND_NAME.test(input.name), 'name', "must be 1-128 characters: letters, digits, '_', '.', '-'");
    if (input.payload) v.check(documentSize(input.payload) <= TWIN_DOCUMENT_LIMIT, 'payload', `must be at most ${TWIN_DOCUMENT_LIMIT} bytes as JSON`);
    if (input.timeoutMs !== undefined) v.check(input.timeoutMs > 0 && input.timeoutMs <= MAX_COMMAND_TIMEOUT_MS, 'timeout', `must be more than 0 and at most ${MAX_COMMAND_TIMEOUT_MS / 1000} s`);
    v.throwIfAny();
    const base = { id: crypto.randomUUID(), tenantId: device.tenantId, deviceId: device.id, name: input.name, payload: input.payload, actorId: input.actorId, error: '', result: undefined };
    if (device.status !== 'online') {
      await this.store.insertCommand({ ...base, status: 'device_offline', error: 'device offline', completeTime: new Date() });
      throw errors.unavailable(`device ${JSON.stringify(device.id)} is offline`);
    }
    const waitMs = Math.max(0, Math.min(input.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, input.remainingMs - 50));
    const deadline = new Date(Date.now() + waitMs);
    await this.store.insertCommand({ ...base, status: 'pending', completeTime: undefined });
    const request: CommandRequest = { commandId: base.id, name: input.name, payload: input.payload, deadline };
    const reply = await new Promise<CommandReply | undefined>((resolve) => {
      const timer = setTimeout(() => done(undefined), waitMs);
      const onAbort = () => done(undefined);
      const done = (r: CommandReply | undefined) => {
        clearTimeout(timer);
        input.signal.removeEventListener('abort', onAbort);
        this.waiters.delete(base.id);
        resolve(r);
      };
      input.signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(base.id, { tenantId: device.tenantId, deviceId: device.id, resolve: done });
      try {
        this.nc.publish(deviceSubject(device.tenantId, device.id, 'cmd'), new TextEncoder().encode(JSON.stringify(CommandRequest.toJSON(request))), {
          reply: `${this.inboxPrefix}.${base.id}`,
        });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'publishing a command failed');
        done(undefined);
      }
    });
    if (!reply) {
      await this.store.completeCommand(base.id, 'timed_out', undefined, 'the device did not answer in time');
      throw errors.deadlineExceeded(`device ${JSON.stringify(device.id)} did not answer within ${waitMs} ms`);
    }
    return this.store.completeCommand(base.id, reply.ok ? 'succeeded' : 'failed', reply.result, reply.ok ? '' : reply.error || 'the device reported a failure');
  }

  async list(tenantId: string, deviceId: string, size: number, pageToken: string | undefined): Promise<{ commands: CommandRecord[]; nextPageToken: string }> {
    const cursor = decodePageToken(pageToken);
    if (cursor && (cursor.length !== 1 || typeof cursor[0] !== 'string' || !/^\d+$/.test(cursor[0]))) {
      throw errors.invalidArgument([{ field: 'page.page_token', description: 'is not a token this server issued' }]);
    }
    const rows = await this.store.listCommands(tenantId, deviceId, cursor?.[0] as string | undefined, size + 1);
    const commands = rows.slice(0, size);
    return { commands, nextPageToken: rows.length > size ? encodePageToken([commands[commands.length - 1].seq]) : '' };
  }

  stop(): void {
    for (const sub of this.subs) sub.unsubscribe();
    for (const [id, waiter] of this.waiters) {
      this.waiters.delete(id);
      waiter.resolve({ commandId: id, ok: false, result: undefined, error: 'the server is shutting down' });
    }
  }
}
