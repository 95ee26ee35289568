import crypto from 'node:crypto';
import { Random } from './random';

/** How a virtual device handles desired firmware. */
export interface FirmwarePlan {
  /** The version it runs at start. */
  version: string;
  /** How long an install takes, ms. */
  installMs: number;
  /** Share (0–1) of installs that fail after the download verified. */
  installFailShare: number;
  /** Share (0–1) of downloads the device reads corrupted (so the checksum does not match). */
  badChecksumShare: number;
}

export const DEFAULT_FIRMWARE_PLAN: FirmwarePlan = { version: 'iot-mesh-simulator/1', installMs: 200, installFailShare: 0, badChecksumShare: 0 };

/** The desired firmware a campaign sets: `firmware: {version, url, sha256}`. */
export interface DesiredFirmware {
  version: string;
  url: string;
  sha256: string;
}

/** The reported `firmware` object: the running version and how the last install went. */
export interface ReportedFirmware {
  version: string;
  status: 'idle' | 'downloading' | 'installing' | 'succeeded' | 'failed';
  reason?: string;
  target_version?: string;
}

/** Largest firmware image a virtual device downloads. */
const MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;

/**
 * A virtual device's firmware: on a desired `firmware` it has not installed,
 * it downloads the URL over http(s) (an image the platform stores with the
 * device's own credential, which is sent nowhere else), verifies the SHA-256, "installs"
 * (waits), and reports the new version or the failure and its reason. A
 * failed version is tried again on a new desired-state version (a new
 * campaign), not when the same one is re-sent.
 */
export class FirmwareAgent {
  private state: ReportedFirmware;
  private attempting?: string;

  constructor(
    private readonly plan: FirmwarePlan,
    private readonly random: Random,
    /** Publishes the device's reported state (which includes {@link reported}). */
    private readonly report: () => Promise<void>,
    /** The device's credential, for images the platform stores (`/v1/tenants/<tenant>/firmware/<id>/image`). */
    private readonly credential?: { tenantId: string; token: string },
  ) {
    this.state = { version: plan.version, status: 'idle' };
  }

  /** The `firmware` object of the reported state. */
  reported(): ReportedFirmware {
    return { ...this.state };
  }

  /**
   * A desired document arrived (`repeated`: the same desired version again,
   * as the platform re-sends it); resolves when an install it started ended
   * (at once when it started none).
   */
  async desired(doc: Record<string, unknown>, repeated = false): Promise<void> {
    const target = parseDesired(doc.firmware);
    if (!target || target.version === this.attempting) return;
    // Installed, or failed and asked again with the same desired version: the platform may have missed the report.
    const failedBefore = this.state.status === 'failed' && this.state.target_version === target.version;
    if (target.version === this.state.version || (failedBefore && repeated)) return this.report();
    this.attempting = target.version;
    try {
      await this.install(target);
    } finally {
      this.attempting = undefined;
    }
  }

  private async install(target: DesiredFirmware): Promise<void> {
    this.state = { version: this.state.version, status: 'downloading', target_version: target.version };
    await this.report();
    let image: Buffer;
    try {
      image = await download(target.url, this.credential);
    } catch (err) {
      return this.fail(target, `download failed: ${(err as Error).message}`);
    }
    if (this.random.next() < this.plan.badChecksumShare) image = Buffer.concat([image, Buffer.from([0])]);
    const sha256 = crypto.createHash('sha256').update(image).digest('hex');
    if (sha256 !== target.sha256.toLowerCase()) return this.fail(target, `checksum mismatch: expected ${target.sha256}, got ${sha256}`);
    this.state = { version: this.state.version, status: 'installing', target_version: target.version };
    await this.report();
    await new Promise((r) => setTimeout(r, this.plan.installMs));
    if (this.random.next() < this.plan.installFailShare) return this.fail(target, 'install failed: flash write error');
    this.state = { version: target.version, status: 'succeeded' };
    await this.report();
  }

  private async fail(target: DesiredFirmware, reason: string): Promise<void> {
    this.state = { version: this.state.version, status: 'failed', reason, target_version: target.version };
    await this.report();
  }
}

function parseDesired(value: unknown): DesiredFirmware | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const { version, url, sha256 } = value as Record<string, unknown>;
  if (typeof version !== 'string' || typeof url !== 'string' || typeof sha256 !== 'string' || !version) return undefined;
  return { version, url, sha256 };
}

/** The platform's download path of a tenant's stored images. */
function isPlatformImage(url: string, tenantId: string): boolean {
  return new URL(url).pathname.startsWith(`/v1/tenants/${encodeURIComponent(tenantId)}/firmware/`);
}

/**
 * The body at `url` (http or https), at most {@link MAX_DOWNLOAD_BYTES}; the
 * device credential goes only to the platform's own image route.
 */
async function download(url: string, credential?: { tenantId: string; token: string }): Promise<Buffer> {
  const headers: Record<string, string> = credential && isPlatformImage(url, credential.tenantId) ? { authorization: `Bearer ${credential.token}` } : {};
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > MAX_DOWNLOAD_BYTES) throw new Error(`larger than ${MAX_DOWNLOAD_BYTES} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/**
 * Parses `--firmware version=…,install-ms=…,install-fail=…,bad-checksum=…`
 * (every key optional) into a plan.
 */
export function parseFirmwarePlan(spec: string | undefined): FirmwarePlan {
  const plan = { ...DEFAULT_FIRMWARE_PLAN };
  if (!spec) return plan;
  for (const part of spec.split(',').filter(Boolean)) {
    const [key, raw] = part.split('=', 2);
    const share = () => {
      const n = Number(raw);
      if (!(n >= 0 && n <= 1)) throw new Error(`--firmware ${key}=${raw}: a share between 0 and 1`);
      return n;
    };
    if (key === 'version' && raw) plan.version = raw;
    else if (key === 'install-ms' && Number(raw) >= 0) plan.installMs = Number(raw);
    else if (key === 'install-fail') plan.installFailShare = share();
    else if (key === 'bad-checksum') plan.badChecksumShare = share();
    else throw new Error(`--firmware ${JSON.stringify(part)}: keys are version, install-ms, install-fail, bad-checksum`);
  }
  return plan;
}
