import fs from 'node:fs';
import path from 'node:path';
import { DeviceCredential } from '../../gen/ts/iot/device/v1/device';
import { ProvisioningServiceClient } from '../../gen/ts/iot/device/v1/provisioning';
import { insecureClient, unary } from '@iot-mesh/runtime';
import { DeviceIdentity } from './device';
import { Transport } from './links';
import { identityOf } from './provision';

/** What a fleet in provisioning mode claims. */
export interface ClaimRequest {
  /** The device service, `host:port` (ClaimDevice is public: no login). */
  deviceAddress: string;
  /** The provisioning key's secret (`iotpk_…`). */
  provisioningKey: string;
  /** One serial number per device, in fleet order. */
  serials: string[];
  /**
   * Where claimed credentials are kept (mode 0600). A serial found here with
   * a credential that has not expired is not claimed again.
   */
  stateFile: string;
  /** How the devices will connect: a claimed credential of the other kind is refused here, with the reason. */
  transport?: Transport;
  /** Claims in flight at once (claims of one key queue on its row anyway). */
  concurrency?: number;
  onProgress?: (done: number) => void;
}

/** The fleet's identities, in `serials` order, and how many were claimed now or reused from the state file. */
export interface ClaimedFleet {
  identities: DeviceIdentity[];
  claimed: number;
  reused: number;
}

/** A refused claim: the serial, the gRPC code name and the service's reason. */
export class ClaimRefused extends Error {
  constructor(
    readonly serial: string,
    readonly code: string,
    readonly reason: string,
  ) {
    super(`claim of serial ${JSON.stringify(serial)} refused (${code}): ${reason}`);
  }
}

/** A credential kept this much longer is reused; one expiring sooner is claimed afresh. */
const REUSE_MARGIN_MS = 10 * 60_000;

const GRPC_CODE_NAMES: Record<number, string> = { 3: 'INVALID_ARGUMENT', 7: 'PERMISSION_DENIED', 8: 'RESOURCE_EXHAUSTED', 9: 'FAILED_PRECONDITION', 14: 'UNAVAILABLE', 16: 'UNAUTHENTICATED' };

/** The claims state file: serial → the DeviceCredential the claim returned (proto3 JSON). */
interface ClaimState {
  devices: Record<string, unknown>;
}

function readState(file: string): ClaimState {
  if (!fs.existsSync(file)) return { devices: {} };
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<ClaimState>;
  return { devices: parsed.devices && typeof parsed.devices === 'object' ? parsed.devices : {} };
}

function writeState(file: string, state: ClaimState): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(temporary, file);
}

function reusable(credential: DeviceCredential, now: number): boolean {
  return !!credential.token && !!credential.deviceId && (!credential.expireTime || credential.expireTime.getTime() - now > REUSE_MARGIN_MS);
}

/** The connection types a NATS user JWT allows (empty when the token says nothing or is not a JWT). */
function allowedConnectionTypes(token: string): string[] {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { nats?: { allowed_connection_types?: string[] } };
    return claims.nats?.allowed_connection_types ?? [];
  } catch {
    return [];
  }
}

function checkKind(credential: DeviceCredential, transport: Transport | undefined): void {
  const allowed = allowedConnectionTypes(credential.token);
  if (!transport || allowed.length === 0) return;
  const needed = transport === 'mqtt' ? 'MQTT' : 'STANDARD';
  if (!allowed.includes(needed)) {
    throw new Error(
      `the device service issues claimed devices ${allowed.includes('MQTT') ? 'MQTT' : 'NATS'} credentials (DEVICE_CREDENTIAL_DEFAULT_KIND), which cannot connect over ${transport}; run with --transport ${transport === 'mqtt' ? 'nats' : 'mqtt'}`,
    );
  }
}

/**
 * Claims one device per serial with a provisioning key through the public
 * ClaimDevice RPC and keeps each credential in the state file, so a restart
 * runs the same devices: a kept credential is reused while it is valid, and
 * a serial claimed again (credential expired, state file lost) is the same
 * device with a fresh credential (the service revokes the previous one).
 * A refused claim (revoked, expired or exhausted key) throws
 * {@link ClaimRefused} with the service's reason.
 */
export async function claimDevices(request: ClaimRequest): Promise<ClaimedFleet> {
  const state = readState(request.stateFile);
  const now = Date.now();
  const kept = new Map<string, DeviceCredential>();
  for (const serial of request.serials) {
    const stored = state.devices[serial];
    if (!stored) continue;
    const credential = DeviceCredential.fromJSON(stored);
    if (reusable(credential, now)) kept.set(serial, credential);
  }
  const toClaim = request.serials.filter((s) => !kept.has(s));
  const client = insecureClient(ProvisioningServiceClient, request.deviceAddress);
  const claimedNow = new Map<string, DeviceCredential>();
  let done = kept.size;
  try {
    let next = 0;
    const worker = async () => {
      while (next < toClaim.length) {
        const serial = toClaim[next++];
        let credential: DeviceCredential | undefined;
        try {
          credential = (await unary(client, client.claimDevice, { provisioningKey: request.provisioningKey, serialNumber: serial, name: '' }, { deadlineMs: 60_000 })).credential;
        } catch (err) {
          const e = err as { code?: number; details?: string; message: string };
          if (e.code !== undefined && GRPC_CODE_NAMES[e.code]) throw new ClaimRefused(serial, GRPC_CODE_NAMES[e.code], e.details || e.message);
          throw err;
        }
        if (!credential) throw new Error(`claim of serial ${JSON.stringify(serial)} returned no credential`);
        checkKind(credential, request.transport);
        claimedNow.set(serial, credential);
        request.onProgress?.(++done);
      }
    };
    await Promise.all(Array.from({ length: Math.min(request.concurrency ?? 8, toClaim.length) }, worker));
  } finally {
    client.close();
    // What was claimed before a refusal is kept too: those credentials are live and the previous ones revoked.
    if (claimedNow.size > 0) {
      for (const [serial, credential] of claimedNow) state.devices[serial] = DeviceCredential.toJSON(credential);
      writeState(request.stateFile, state);
    }
  }
  const identities = request.serials.map((serial) => identityOf((kept.get(serial) ?? claimedNow.get(serial))!));
  return { identities, claimed: claimedNow.size, reused: kept.size };
}

/** The serial numbers of a fleet: `<prefix>-0001`… (at least four digits, so they sort). */
export function fleetSerials(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i + 1).padStart(4, '0')}`);
}
