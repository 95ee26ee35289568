import { z } from 'zod';
import { env, signingAddressEnv } from '@iot-mesh/runtime';
import { isPublicNKey, nkeyFromSeed } from '@iot-mesh/nats-auth';

/** A seed variable: absent, or a seed of `kind` (checked at start, so a typo fails with this message, not at first use). */
function seed(kind: 'O' | 'A', what: string) {
  return z
    .string()
    .optional()
    .refine((value) => {
      if (value === undefined) return true;
      try {
        nkeyFromSeed(value.trim(), kind);
        return true;
      } catch {
        return false;
      }
    }, `must be an ${what} seed (S${kind}…), as written by npm run setup:nats`);
}

/** The device service's own variables. */
export const deviceEnv = {
  ...signingAddressEnv,
  /** An operator signing key's seed (not the operator identity): signs the tenant accounts and the platform account. */
  DEVICE_NATS_OPERATOR_SIGNING_SEED: seed('O', 'operator signing key'),
  /** Public key of the platform account (where the services connect). */
  DEVICE_NATS_PLATFORM_ACCOUNT: z
    .string()
    .optional()
    .refine((value) => value === undefined || isPublicNKey(value.trim(), 'A'), 'must be an account public key (A…), as written by npm run setup:nats'),
  /** Secret the tenant accounts' keys are derived from; keep it stable (changing it orphans every device credential). */
  DEVICE_NATS_TENANT_KEY_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Creds file of a system-account user: pushes account claims, receives connect events. */
  DEVICE_NATS_SYSTEM_CREDS: env.optional(),
  /**
   * Start without the four DEVICE_NATS_* variables: NATS then runs without device
   * auth, so any client can publish as any device and read any tenant's subjects.
   * Development only; without it the service refuses to start.
   */
  DEVICE_ALLOW_INSECURE_NATS: env.bool(false),
  /** Lifetime of a credential whose request names no expire time (default 90 days). */
  DEVICE_CREDENTIAL_TTL_SECONDS: env.positiveInt(90 * 86_400),
  /** Longest lifetime a request may ask for (default 366 days): bounds how long a revocation stays in the account JWT. */
  DEVICE_CREDENTIAL_MAX_TTL_SECONDS: env.positiveInt(366 * 86_400),
  /** Kind of credentials whose request names none, and of BatchCreateDevices' credentials. */
  DEVICE_CREDENTIAL_DEFAULT_KIND: env.oneOf(['mqtt', 'nats'] as const, 'mqtt'),
  /** Devices one tenant may have (CreateDevice, BatchCreateDevices, provisioning claims); more is RESOURCE_EXHAUSTED with a QuotaFailure. */
  DEVICE_MAX_PER_TENANT: env.positiveInt(100_000),
  /** Active device credentials per tenant. */
  DEVICE_TENANT_MAX_CREDENTIALS: env.positiveInt(100_000),
  /** Live device connections per tenant (the tenant account's `conn` limit, enforced by nats-server). */
  DEVICE_TENANT_MAX_CONNECTIONS: env.positiveInt(100_000),
  /** JetStream file storage per tenant for MQTT sessions and retained messages, bytes. */
  DEVICE_TENANT_MQTT_STORAGE_BYTES: env.positiveInt(1024 * 1024 * 1024),
  /** NATS URL put into device credentials (default: the first NATS_URL). */
  DEVICE_NATS_PUBLIC_URL: env.optional(),
  /** MQTT URL put into device credentials. */
  DEVICE_MQTT_PUBLIC_URL: env.url(['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss'], 'mqtt://127.0.0.1:1883'),
  /** How long a cached device lookup lives. */
  DEVICE_CACHE_TTL_MS: env.positiveInt(60_000),
  /** Replicas of the device and group directory buckets (IOT_DEVICES, IOT_GROUPS) when this service creates them: 3 on a NATS cluster. */
  DEVICE_DIRECTORY_REPLICAS: env.positiveInt(1),
  /** Largest firmware image the platform stores, bytes. */
  DEVICE_FIRMWARE_MAX_IMAGE_BYTES: env.positiveInt(64 * 1024 * 1024),
  /** Bytes all of a tenant's stored firmware images may hold together. */
  DEVICE_FIRMWARE_MAX_TENANT_BYTES: env.positiveInt(1024 * 1024 * 1024),
  /** Where devices reach the edge (gateway or Envoy): a stored image's download URL starts with it. */
  DEVICE_FIRMWARE_DOWNLOAD_URL: env.url(['http', 'https'], 'http://127.0.0.1:8080'),
};
