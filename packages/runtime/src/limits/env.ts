import { env } from '../config';

/**
 * Limits every service enforces on its callers (see README "Limits"). Part
 * of every service's configuration.
 */
export const limitsEnv = {
  /** Calls per second a tenant may make to one service kind (a token bucket in Redis shared by the replicas). */
  API_RATE_PER_TENANT: env.positiveInt(200),
  /** Calls a quiet tenant may make at once above that rate. */
  API_BURST_PER_TENANT: env.positiveInt(400),
  /** Server streams (StreamLive, WatchDevices, StreamAlerts) one principal may hold open over every replica and service together (a lease per stream in Redis; counted per process while Redis does not answer). */
  STREAMS_PER_PRINCIPAL: env.positiveInt(20),
  /**
   * Server streams one client connection may hold open. Generous: the
   * gateway relays every dashboard over a few connections.
   */
  STREAMS_PER_CONNECTION: env.positiveInt(500),
};
