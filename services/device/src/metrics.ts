import { GrpcCode, metrics, ServiceError } from '@iot-mesh/runtime';
import type { Credentials } from './domain/credentials';
import { CLAIM_REFUSALS, Provisioning } from './domain/provisioning';

/**
 * The device service's own metrics. Devices failing to use their credentials
 * show up in monitoring as dead letters with reasons `unknown_device`,
 * `revoked_device` and `device_mismatch` (the NATS server itself refuses bad
 * connections before any code of ours sees them).
 */
export function deviceMetrics() {
  return {
    /** Credential operations by kind (`issue`, `rotate`, `revoke`). */
    credentialOperations: metrics.counter('iot_device_credential_operations_total', 'Device credential operations by kind (issue, rotate, revoke).', ['operation']),
    /** Provisioning claims by outcome (`created`, `reclaimed`, `refused_*`, `invalid`, `error`). */
    claims: metrics.counter('iot_device_provisioning_claims_total', 'Provisioning claims by outcome (created, reclaimed, refused_unknown, refused_revoked, refused_expired, refused_exhausted, invalid, error).', ['outcome']),
  };
}

/**
 * Counts successful credential operations as
 * `iot_device_credential_operations_total{operation}` by wrapping the domain
 * object's methods on this instance (a decorator applied in `main.ts`, so the
 * domain stays free of counters). Every operation is exported at zero from the start.
 */
export function countCredentialOperations(credentials: Credentials): Credentials {
  const { credentialOperations } = deviceMetrics();
  for (const operation of ['issue', 'rotate', 'revoke'] as const) credentialOperations.inc({ operation }, 0);
  const issueFor = credentials.issueFor.bind(credentials);
  const issue = credentials.issue.bind(credentials);
  const rotate = credentials.rotate.bind(credentials);
  const revoke = credentials.revoke.bind(credentials);
  credentials.issueFor = async (...args) => {
    const issued = await issueFor(...args);
    credentialOperations.inc({ operation: 'issue' }, issued.credentials.length);
    return issued;
  };
  credentials.issue = async (...args) => {
    const issued = await issue(...args);
    credentialOperations.inc({ operation: 'issue' });
    return issued;
  };
  credentials.rotate = async (...args) => {
    const rotated = await rotate(...args);
    credentialOperations.inc({ operation: 'rotate' });
    return rotated;
  };
  credentials.revoke = async (...args) => {
    const revoked = await revoke(...args);
    credentialOperations.inc({ operation: 'revoke' });
    return revoked;
  };
  return credentials;
}

const REFUSAL_OUTCOMES = new Map<string, string>(Object.entries(CLAIM_REFUSALS).map(([outcome, reason]) => [reason, outcome === 'unknown' ? 'refused_unknown' : outcome]));

/**
 * Counts every ClaimDevice call as `iot_device_provisioning_claims_total{outcome}`
 * (a decorator like {@link countCredentialOperations}); refusals are counted
 * by their reason, malformed requests as `invalid`, anything else as `error`.
 */
export function countClaims(provisioning: Provisioning): Provisioning {
  const { claims } = deviceMetrics();
  for (const outcome of ['created', 'reclaimed', ...REFUSAL_OUTCOMES.values()]) claims.inc({ outcome }, 0);
  const claim = provisioning.claim.bind(provisioning);
  provisioning.claim = async (...args) => {
    try {
      const claimed = await claim(...args);
      claims.inc({ outcome: claimed.outcome });
      return claimed;
    } catch (err) {
      const reason = err instanceof ServiceError ? err.reason : undefined;
      const outcome = reason && REFUSAL_OUTCOMES.get(reason);
      claims.inc({ outcome: outcome ?? (err instanceof ServiceError && err.code === GrpcCode.INVALID_ARGUMENT ? 'invalid' : 'error') });
      throw err;
    }
  };
  return provisioning;
}
