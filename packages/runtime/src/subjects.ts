/**
 * The NATS subject scheme, in one place. Tenant first:
 *
 *   iot.<tenant>.dev.<device>.tel       telemetry (device → platform), MQTT iot/<tenant>/dev/<device>/tel
 *   iot.<tenant>.dev.<device>.state     reported state (device → platform)
 *   iot.<tenant>.dev.<device>.cmd       commands (platform → device, request/reply)
 *   iot.<tenant>.dev.<device>.cmd.reply command replies of devices that cannot answer a request (MQTT)
 *   iot.<tenant>.dev.<device>.desired   desired state (platform → device)
 *   iot.<tenant>.evt.<topic...>         domain events (device.created, audit.login_failed, alert.raised, …)
 *   iot.<tenant>.dlq.tel.<device>       dead-lettered telemetry, with the reason in headers (stream DEAD_LETTERS)
 */

/** A subject token that devices and tenants may use: no wildcards, dots, spaces or empties. */
export const SUBJECT_TOKEN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** True when `token` is safe as one subject token (tenant id, device id). */
export function isSubjectToken(token: string): boolean {
  return SUBJECT_TOKEN.test(token);
}

function token(kind: string, value: string): string {
  if (!isSubjectToken(value)) throw new Error(`${kind} ${JSON.stringify(value)} is not a valid subject token`);
  return value;
}

/** What a device subject carries. */
export type DeviceChannel = 'tel' | 'state' | 'cmd' | 'desired';

/** Subject of one device channel. */
export function deviceSubject(tenantId: string, deviceId: string, channel: DeviceChannel): string {
  return `iot.${token('tenant', tenantId)}.dev.${token('device', deviceId)}.${channel}`;
}

/** Subject of a domain event: `eventSubject(t, 'device', 'created')` → `iot.<t>.evt.device.created`. */
export function eventSubject(tenantId: string, ...topic: string[]): string {
  return `iot.${token('tenant', tenantId)}.evt.${topic.join('.')}`;
}

/** What an alert event is called on NATS: `iot.<tenant>.evt.alert.<kind>`. */
export type AlertEventKind = 'raised' | 'resolved' | 'acknowledged';

/** Subject of one alert event (body: binary Protobuf `iot.monitoring.v1.Alert`). */
export function alertEventSubject(tenantId: string, kind: AlertEventKind): string {
  return eventSubject(tenantId, 'alert', kind);
}

/** Wildcard of every alert event of one tenant. */
export function alertEventsOf(tenantId: string): string {
  return `${eventSubject(tenantId, 'alert')}.*`;
}

/** Subject telling every monitoring replica that a tenant's alert rules changed (body: empty, i.e. `google.protobuf.Empty`). */
export function alertRulesChangedSubject(tenantId: string): string {
  return eventSubject(tenantId, 'alert_rule', 'changed');
}

/** Wildcard of every tenant's alert-rules-changed notice. */
export const ALL_ALERT_RULES_CHANGED = 'iot.*.evt.alert_rule.changed';

/** The tenant of a domain-event subject (`iot.<tenant>.evt.…`); undefined when the subject is not one. */
export function eventSubjectTenant(subject: string): string | undefined {
  const parts = subject.split('.');
  if (parts.length < 4 || parts[0] !== 'iot' || parts[2] !== 'evt' || !isSubjectToken(parts[1])) return undefined;
  return parts[1];
}

/** Subject of a dead-lettered telemetry message of a device (`_` stands in for a tenant or device the subject did not name usably). */
export function deadLetterSubject(tenantId: string | undefined, deviceId?: string): string {
  const usable = (t: string | undefined) => (t && isSubjectToken(t) ? t : '_');
  return `iot.${usable(tenantId)}.dlq.tel.${usable(deviceId)}`;
}

/** Wildcard of a tenant's dead letters, or of one device's. */
export function deadLettersOf(tenantId: string, deviceId?: string): string {
  return deviceId ? deadLetterSubject(tenantId, deviceId) : `iot.${token('tenant', tenantId)}.dlq.>`;
}

/** Wildcard of every dead letter (the DEAD_LETTERS stream's subject). */
export const ALL_DEAD_LETTERS = 'iot.*.dlq.>';

/**
 * Where a device that cannot answer a NATS request (an MQTT client) publishes
 * its `CommandReply`. NATS clients may simply respond to the request.
 */
export function commandReplySubject(tenantId: string, deviceId: string): string {
  return `${deviceSubject(tenantId, deviceId, 'cmd')}.reply`;
}

/** Wildcard of every device's command reply subject. */
export const ALL_COMMAND_REPLIES = 'iot.*.dev.*.cmd.reply';

/** Wildcard matching telemetry of every device of every tenant (the stream's subject). */
export const ALL_TELEMETRY = 'iot.*.dev.*.tel';
/** Wildcard matching reported state of every device. */
export const ALL_STATE = 'iot.*.dev.*.state';

/** A parsed device subject. */
export interface ParsedDeviceSubject {
  tenantId: string;
  deviceId: string;
  channel: DeviceChannel;
}

/** Parses `iot.<tenant>.dev.<device>.<channel>`; undefined when the subject is not one. */
export function parseDeviceSubject(subject: string): ParsedDeviceSubject | undefined {
  const parts = subject.split('.');
  if (parts.length !== 5 || parts[0] !== 'iot' || parts[2] !== 'dev') return undefined;
  const [, tenantId, , deviceId, channel] = parts;
  if (!isSubjectToken(tenantId) || !isSubjectToken(deviceId)) return undefined;
  if (channel !== 'tel' && channel !== 'state' && channel !== 'cmd' && channel !== 'desired') return undefined;
  return { tenantId, deviceId, channel };
}

/**
 * The device directory: a JetStream KV bucket written by the device service and
 * read (watched into memory) by anyone who must know whether a device exists,
 * is allowed to send, and what labels it has — without a per-message lookup.
 * Key: `<tenantId>.<deviceId>`; a deleted device's key is deleted. Values are
 * binary `iot.device.v1.DeviceDirectoryEntry` (proto/iot/device/v1/directory.proto).
 */
export const DEVICE_DIRECTORY_BUCKET = 'IOT_DEVICES';

/** Key of a device in the directory bucket. */
export function deviceDirectoryKey(tenantId: string, deviceId: string): string {
  return `${token('tenant', tenantId)}.${token('device', deviceId)}`;
}

/** JetStream KV bucket of the group directory (device groups' selectors), written by the device service. */
export const GROUP_DIRECTORY_BUCKET = 'IOT_GROUPS';

/** Key of a group in the group directory bucket. */
export function groupDirectoryKey(tenantId: string, groupId: string): string {
  return `${token('tenant', tenantId)}.${token('group', groupId)}`;
}
