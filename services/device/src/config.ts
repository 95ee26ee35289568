import { z } from 'zod';
import { env, signingAddressEnv } from '@iot-mesh/runtime';
import { nkeyFromSeed } from '@iot-mesh/nats-auth';

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
  /** Operator seed: signs the account JWT re-issued with revocations. */
  DEVICE_NATS_OPERATOR_SEED: seed('O', 'operator'),
  /** Application account seed: signs device credentials. */
  DEVICE_NATS_ACCOUNT_SEED: seed('A', 'account'),
  /** Creds file of a system-account user: pushes account claims, receives connect events. */
  DEVICE_NATS_SYSTEM_CREDS: env.optional(),
  /** NATS URL put into device credentials (default: the first NATS_URL). */
  DEVICE_NATS_PUBLIC_URL: env.optional(),
  /** MQTT URL put into device credentials. */
  DEVICE_MQTT_PUBLIC_URL: env.url(['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss'], 'mqtt://127.0.0.1:1883'),
  /** How long a cached device lookup lives. */
  DEVICE_CACHE_TTL_MS: env.positiveInt(60_000),
};
