import crypto from 'node:crypto';
import fs from 'node:fs';
import { CredentialKind, CredentialServiceClient } from '../../gen/ts/iot/device/v1/credential';
import { Device, DeviceCredential, DeviceServiceClient } from '../../gen/ts/iot/device/v1/device';
import { AuthServiceClient } from '../../gen/ts/iot/signing/v1/auth';
import { insecureClient, isSubjectToken, unary } from '@iot-mesh/runtime';
import { DeviceIdentity } from './device';
import { Transport } from './links';
import { DEVICE_TYPES, ProfileName } from './profiles';

/** How the simulator authenticates to the platform's API. */
export type ApiAuth =
  | { kind: 'password'; signingAddress: string; tenant: string; email: string; password: string }
  | { kind: 'api-key'; apiKey: string }
  | { kind: 'bearer'; accessToken: string };

/** The `authorization` header value for an API call: logs in when given a password. */
export async function authorization(auth: ApiAuth): Promise<string> {
  if (auth.kind === 'api-key') return `ApiKey ${auth.apiKey}`;
  if (auth.kind === 'bearer') return `Bearer ${auth.accessToken}`;
  const client = insecureClient(AuthServiceClient, auth.signingAddress);
  try {
    const response = await unary(client, client.login, { tenant: auth.tenant, email: auth.email, password: auth.password });
    const token = response.tokens?.accessToken;
    if (!token) throw new Error('login returned no access token');
    return `Bearer ${token}`;
  } finally {
    client.close();
  }
}

/** What to provision. */
export interface ProvisionRequest {
  /** The device service, `host:port`. */
  deviceAddress: string;
  authorization: string;
  count: number;
  /** Device ids are `<prefix>-<n>`; default `sim-<random>` so runs do not collide. */
  prefix?: string;
  /** The profile of device n (sets the device type and a `profile` label). */
  profileOf: (index: number) => ProfileName;
  /** Extra labels on every device. */
  labels?: Record<string, string>;
  /**
   * How the devices will connect: credentials are typed and the NATS server
   * refuses the other kind. Default: the device service's default kind
   * (DEVICE_CREDENTIAL_DEFAULT_KIND).
   */
  transport?: Transport;
  /** Called after each batch with the number created so far. */
  onProgress?: (created: number) => void;
  /** Called when the service cannot issue credentials and devices are created without. */
  onNoCredentials?: (reason: string) => void;
}

/** The API's limit on one BatchCreateDevices call. */
export const BATCH_LIMIT = 1000;

const CREDENTIAL_KINDS: Record<Transport, CredentialKind> = { mqtt: CredentialKind.CREDENTIAL_KIND_MQTT, nats: CredentialKind.CREDENTIAL_KIND_NATS };

const FAILED_PRECONDITION = 9;

/**
 * Creates `count` devices through the device API in batches of up to 1,000
 * with `issue_credentials` (or, for a given transport, with a credential of
 * that kind issued to each), and returns each device's identity with its
 * credential (token and URLs, as the service returns them once). A device
 * service without NATS credentials configured (a development stack whose
 * NATS has no auth) refuses to issue them: then the devices are created
 * without, and connect unauthenticated.
 */
export async function provisionDevices(request: ProvisionRequest): Promise<DeviceIdentity[]> {
  const prefix = request.prefix ?? `sim-${crypto.randomBytes(3).toString('hex')}`;
  const client = insecureClient(DeviceServiceClient, request.deviceAddress);
  const credentialClient = insecureClient(CredentialServiceClient, request.deviceAddress);
  const options = { authorization: request.authorization, deadlineMs: 120_000 };
  // BatchCreateDevices issues credentials of the server's default kind only; a
  // requested kind is issued with one BatchIssueCredentials call per created batch.
  const kind = request.transport ? CREDENTIAL_KINDS[request.transport] : undefined;
  const issueEach = async (created: Device[], kind: CredentialKind): Promise<DeviceCredential[]> =>
    (await unary(credentialClient, credentialClient.batchIssueCredentials, { deviceIds: created.map((d) => d.id), kind }, options)).credentials;
  const identities: DeviceIdentity[] = [];
  let issueCredentials = true;
  try {
    for (let start = 0; start < request.count; start += BATCH_LIMIT) {
      const devices: Device[] = [];
      for (let i = start; i < Math.min(request.count, start + BATCH_LIMIT); i++) {
        const profile = request.profileOf(i);
        const id = `${prefix}-${i + 1}`;
        if (!isSubjectToken(id)) throw new Error(`device id ${JSON.stringify(id)} is not a valid id; choose another prefix`);
        devices.push(Device.fromPartial({ id, name: `Simulated ${DEVICE_TYPES[profile]} ${i + 1}`, type: DEVICE_TYPES[profile], labels: { simulator: 'true', profile, ...request.labels } }));
      }
      const noCredentials = (err: unknown): boolean => {
        if ((err as { code?: number }).code !== FAILED_PRECONDITION || start > 0) return false;
        request.onNoCredentials?.((err as Error).message);
        issueCredentials = false;
        return true;
      };
      const withDefaultKind = issueCredentials && kind === undefined;
      let response;
      try {
        response = await unary(client, client.batchCreateDevices, { devices, issueCredentials: withDefaultKind }, options);
      } catch (err) {
        if (!withDefaultKind || !noCredentials(err)) throw err;
        response = await unary(client, client.batchCreateDevices, { devices, issueCredentials: false }, options);
      }
      let credentials = response.credentials;
      if (issueCredentials && kind !== undefined) {
        try {
          credentials = await issueEach(response.devices, kind);
        } catch (err) {
          if (!noCredentials(err)) throw err;
        }
      }
      if (issueCredentials) identities.push(...credentials.map(identityOf));
      else identities.push(...response.devices.map((d) => ({ tenantId: d.tenantId, deviceId: d.id })));
      request.onProgress?.(identities.length);
    }
  } finally {
    client.close();
    credentialClient.close();
  }
  return identities;
}

/** A device credential from the API (or a credentials file) as the simulator's identity. */
export function identityOf(credential: DeviceCredential): DeviceIdentity {
  const { tenantId, deviceId, token, seed, natsUrl, mqttUrl } = credential;
  // proto3 leaves an unset string empty; the identity says "absent" instead (open server, the credential's URL).
  return { tenantId, deviceId, token: token || undefined, seed: seed || undefined, natsUrl: natsUrl || undefined, mqttUrl: mqttUrl || undefined };
}

/**
 * Reads a credentials file: a JSON array of credentials, an object holding
 * one under `credentials` or `devices`, or one JSON credential per line.
 * Each is an `iot.device.v1.DeviceCredential` in proto3 JSON, so field names may be camelCase
 * (`deviceId`) or proto snake_case (`device_id`).
 */
export function parseCredentials(text: string): DeviceIdentity[] {
  let items: unknown[];
  const trimmed = text.trim();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    try {
      const parsed = JSON.parse(trimmed) as unknown;
      items = Array.isArray(parsed) ? parsed : ((parsed as Record<string, unknown>).credentials ?? (parsed as Record<string, unknown>).devices) as unknown[];
    } catch {
      items = trimmed.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as unknown);
    }
  } else items = [];
  if (!Array.isArray(items)) throw new Error('credentials file: expected a list of credentials');
  return items.map((item, i) => {
    const o = (item ?? {}) as Record<string, unknown>;
    const nested = typeof o.credential === 'object' && o.credential ? (o.credential as Record<string, unknown>) : {};
    const all = { ...o, ...nested };
    // The file is DeviceCredential JSON (either field-name spelling); `id` and `jwt` are older exports' names.
    const credential = DeviceCredential.fromJSON(all);
    const identity = identityOf({
      ...credential,
      deviceId: credential.deviceId || (typeof all.id === 'string' ? all.id : ''),
      token: credential.token || (typeof all.jwt === 'string' ? all.jwt : ''),
    });
    if (!isSubjectToken(identity.tenantId) || !isSubjectToken(identity.deviceId)) {
      throw new Error(`credentials file: entry ${i + 1} lacks a valid tenant id and device id`);
    }
    return identity;
  });
}

/** Reads a credentials file from disk. */
export function readCredentialsFile(file: string): DeviceIdentity[] {
  return parseCredentials(fs.readFileSync(file, 'utf8'));
}

/** Writes identities as a credentials file (mode 0600: it holds secrets). */
export function writeCredentialsFile(file: string, identities: DeviceIdentity[]): void {
  const body = { credentials: identities.map((identity) => DeviceCredential.toJSON(DeviceCredential.fromPartial(identity))) };
  fs.writeFileSync(file, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
}
