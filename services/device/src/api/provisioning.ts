import { callerTenant, defineService, errors, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { Claim, ClaimOutcome, ProvisioningKey, ProvisioningKeyState, ProvisioningServiceService } from '../../../../gen/ts/iot/device/v1/provisioning';
import { ClaimOutcome as Outcome, ClaimRecord, ProvisioningKeyRecord } from '../domain/model';
import { Provisioning } from '../domain/provisioning';
import { checkLabels, decodeSeqToken, encodeSeqToken, toCredentialMessage, toDeviceMessage } from './devices';

const OUTCOMES: Record<Outcome, ClaimOutcome> = {
  created: ClaimOutcome.CLAIM_OUTCOME_CREATED,
  reclaimed: ClaimOutcome.CLAIM_OUTCOME_RECLAIMED,
  refused_revoked: ClaimOutcome.CLAIM_OUTCOME_REFUSED_REVOKED,
  refused_expired: ClaimOutcome.CLAIM_OUTCOME_REFUSED_EXPIRED,
  refused_exhausted: ClaimOutcome.CLAIM_OUTCOME_REFUSED_EXHAUSTED,
};

/** Whether a key still admits claims, as of now. */
function keyState(k: ProvisioningKeyRecord): ProvisioningKeyState {
  if (k.revokeTime) return ProvisioningKeyState.PROVISIONING_KEY_STATE_REVOKED;
  if (k.expireTime && k.expireTime.getTime() <= Date.now()) return ProvisioningKeyState.PROVISIONING_KEY_STATE_EXPIRED;
  if (k.usageLimit > 0 && k.deviceCount >= k.usageLimit) return ProvisioningKeyState.PROVISIONING_KEY_STATE_EXHAUSTED;
  return ProvisioningKeyState.PROVISIONING_KEY_STATE_ACTIVE;
}

/** A key record as the `iot.device.v1.ProvisioningKey` message (never with its secret). */
function toKeyMessage(k: ProvisioningKeyRecord): ProvisioningKey {
  return {
    id: k.id,
    tenantId: k.tenantId,
    name: k.name,
    deviceTypeId: k.deviceTypeId ?? '',
    labels: k.labels,
    expireTime: k.expireTime,
    usageLimit: BigInt(k.usageLimit),
    deviceCount: BigInt(k.deviceCount),
    claimCount: BigInt(k.claimCount),
    state: keyState(k),
    secretPrefix: k.secretPrefix,
    createTime: k.createTime,
    revokeTime: k.revokeTime,
  };
}

function toClaimMessage(c: ClaimRecord): Claim {
  return { keyId: c.keyId, serialNumber: c.serialNumber, deviceId: c.deviceId, outcome: OUTCOMES[c.outcome], peer: c.peer, claimTime: c.claimTime };
}

/** `iot.device.v1.ProvisioningService`: provisioning keys of the caller's tenant, and the public claim devices make with one. */
export function provisioningApi(provisioning: Provisioning): ServiceRegistration {
  return defineService(ProvisioningServiceService, {
    async createProvisioningKey(request, ctx) {
      const input = request.provisioningKey;
      if (!input) throw errors.invalidArgument([{ field: 'provisioning_key', description: 'is required' }]);
      const v = new Violations();
      checkLabels(input.labels, 'provisioning_key.labels', v);
      v.throwIfAny();
      const { key, secret } = await provisioning.createKey(callerTenant(ctx), {
        name: input.name,
        deviceTypeId: input.deviceTypeId || undefined,
        labels: input.labels,
        expireTime: input.expireTime,
        usageLimit: Number(input.usageLimit),
      });
      return { provisioningKey: toKeyMessage(key), secret };
    },
    async listProvisioningKeys(request, ctx) {
      const page = await provisioning.listKeys(callerTenant(ctx), pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { provisioningKeys: page.keys.map(toKeyMessage), page: { nextPageToken: encodeSeqToken(page.nextAfter) } };
    },
    async revokeProvisioningKey(request, ctx) {
      return { provisioningKey: toKeyMessage(await provisioning.revokeKey(callerTenant(ctx), request.id)) };
    },
    async listClaims(request, ctx) {
      const page = await provisioning.listClaims(callerTenant(ctx), request.keyId, pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { claims: page.claims.map(toClaimMessage), page: { nextPageToken: encodeSeqToken(page.nextBefore) } };
    },
    async claimDevice(request, ctx) {
      const claimed = await provisioning.claim(request.provisioningKey, request.serialNumber, request.name, ctx.peer);
      return { device: toDeviceMessage(claimed.device), credential: toCredentialMessage(claimed.credential), outcome: OUTCOMES[claimed.outcome] };
    },
  });
}
