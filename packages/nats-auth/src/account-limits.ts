import type { OperatorLimits } from '@nats-io/jwt';

/**
 * Account limits written explicitly: nats-server refuses every connection of an
 * account whose JWT leaves them unset, and MQTT needs JetStream enabled
 * through the flat JetStream limits.
 */
export const UNLIMITED_ACCOUNT_LIMITS: OperatorLimits = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
};
