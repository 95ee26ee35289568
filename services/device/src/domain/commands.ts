import crypto from 'node:crypto';
import { errors, Violations } from '@iot-mesh/runtime';
import type { CommandStore } from '../store/command-store';
import type { DeviceRegistry } from './devices';
import type { DeviceTypes } from './device-types';
import { CommandRecord, JsonObject } from './model';
import { documentProblem, documentSize, TWIN_DOCUMENT_LIMIT } from './twins';

/** How long SendCommand waits for the device when the caller names no timeout. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 5000;
/** The longest timeout a caller may ask for. */
export const MAX_COMMAND_TIMEOUT_MS = 60_000;
/** What a command name may be. */
export const COMMAND_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

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

/** A command as it goes to the device. */
export interface OutgoingCommand {
  commandId: string;
  name: string;
  payload?: JsonObject;
  /** When the platform stops waiting. */
  deadline: Date;
}

/** A device's answer. */
export interface CommandAnswer {
  ok: boolean;
  result?: JsonObject;
  error: string;
}

/** How commands reach devices and answers come back (`events/command-channel.ts`). */
export interface CommandChannel {
  /** Sends `command` to the device; resolves with its answer, or undefined when none came in `waitMs` or `signal` aborted. */
  request(tenantId: string, deviceId: string, command: OutgoingCommand, waitMs: number, signal: AbortSignal): Promise<CommandAnswer | undefined>;
}

/** A page of commands, newest first. */
export interface CommandPage {
  commands: CommandRecord[];
  /** Keyset position of the last command when more follow. */
  nextBefore?: string;
}

/** The `google.rpc.ErrorInfo` reason of the FAILED_PRECONDITION a command to an offline device gets. */
export const DEVICE_OFFLINE = 'DEVICE_OFFLINE';

/**
 * Commands: request/reply to one device with a deadline. Every command is
 * recorded with its outcome: succeeded, failed, timed out, or refused because
 * the device is offline.
 */
export class Commands {
  constructor(
    private readonly store: CommandStore,
    private readonly devices: Pick<DeviceRegistry, 'get'>,
    private readonly channel: CommandChannel,
    /** The device types' command schemas; absent, any command is sent. */
    private readonly rules?: Pick<DeviceTypes, 'checkCommand'>,
  ) {}

  /** Sends a command to the device of `tenantId` and waits for its reply. */
  async send(tenantId: string, deviceId: string, input: CommandInput): Promise<CommandRecord> {
    const device = await this.devices.get(tenantId, deviceId);
    const v = new Violations();
    v.check(COMMAND_NAME.test(input.name), 'name', "must be 1-128 characters: letters, digits, '_', '.', '-'");
    if (input.payload) v.check(documentSize(input.payload) <= TWIN_DOCUMENT_LIMIT, 'payload', `must be at most ${TWIN_DOCUMENT_LIMIT} bytes as JSON`);
    if (input.timeoutMs !== undefined) v.check(input.timeoutMs > 0 && input.timeoutMs <= MAX_COMMAND_TIMEOUT_MS, 'timeout', `must be more than 0 and at most ${MAX_COMMAND_TIMEOUT_MS / 1000} s`);
    v.throwIfAny();
    await this.rules?.checkCommand(device, input.name, input.payload);
    const base = { id: crypto.randomUUID(), tenantId: device.tenantId, deviceId: device.id, name: input.name, payload: input.payload, actorId: input.actorId, error: '', result: undefined };
    if (device.status !== 'online') {
      await this.store.insertCommand({ ...base, status: 'device_offline', error: 'device offline', completeTime: new Date() });
      // Not UNAVAILABLE: the service is up and a retry at once fails the same way; the device must connect first.
      throw errors.failedPrecondition(`device ${JSON.stringify(device.id)} is offline`, DEVICE_OFFLINE);
    }
    // Leave the caller time to receive the answer before its own deadline.
    const waitMs = Math.max(0, Math.min(input.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, input.remainingMs - 50));
    const deadline = new Date(Date.now() + waitMs);
    await this.store.insertCommand({ ...base, status: 'pending', completeTime: undefined });
    const answer = await this.channel.request(device.tenantId, device.id, { commandId: base.id, name: input.name, payload: input.payload, deadline }, waitMs, input.signal);
    if (!answer) {
      await this.store.completeCommand(base.id, 'timed_out', undefined, 'the device did not answer in time');
      throw errors.deadlineExceeded(`device ${JSON.stringify(device.id)} did not answer within ${waitMs} ms`);
    }
    // A result that cannot be stored as sent fails the command instead of leaving it pending.
    // Depth first: JSON.stringify (the size) overflows the stack on a deep enough document.
    const problem = answer.result && (documentProblem(answer.result) ?? (documentSize(answer.result) > TWIN_DOCUMENT_LIMIT ? `is over ${TWIN_DOCUMENT_LIMIT} bytes as JSON` : undefined));
    if (problem) return this.store.completeCommand(base.id, 'failed', undefined, `the device's reply was refused: its result ${problem}`);
    // The device's error text is kept as text PostgreSQL can hold (U+0000 and lone surrogates as U+FFFD), at most 1,000 characters.
    const error = answer.error.slice(0, 1000).replace(/[\u0000\ud800-\udfff]/gu, '\ufffd');
    return this.store.completeCommand(base.id, answer.ok ? 'succeeded' : 'failed', answer.result, answer.ok ? '' : error || 'the device reported a failure');
  }

  /** Commands of one device, newest first, before keyset position `before`. */
  async list(tenantId: string, deviceId: string, size: number, before: string | undefined): Promise<CommandPage> {
    await this.devices.get(tenantId, deviceId);
    const rows = await this.store.listCommands(tenantId, deviceId, before, size + 1);
    const commands = rows.slice(0, size);
    return { commands, nextBefore: rows.length > size ? commands[commands.length - 1].seq : undefined };
  }
}
