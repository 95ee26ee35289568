import { RetentionPolicy, RetentionServiceService } from '../../../../gen/ts/iot/monitoring/v1/retention';
import { callerTenant, defineService, isSubjectToken, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { MAX_RETENTION_DAYS, ResolvedRetention, TelemetryRetention } from '../domain/retention';

function policyOf(r: ResolvedRetention): RetentionPolicy {
  return { ...r };
}

function checkDeviceType(v: Violations, field: string, deviceType: string): void {
  if (deviceType) v.check(isSubjectToken(deviceType), field, 'is not a device type name');
}

/** RetentionService: validate → the retention domain, scoped to the caller's tenant. */
export function retentionService({ retention }: { retention: TelemetryRetention }): ServiceRegistration {
  return defineService(RetentionServiceService, {
    async getRetentionPolicy(request, ctx) {
      const v = new Violations();
      checkDeviceType(v, 'device_type', request.deviceType);
      v.throwIfAny();
      return { policy: policyOf(await retention.get(callerTenant(ctx), request.deviceType)) };
    },

    async setRetentionPolicy(request, ctx) {
      const v = new Violations();
      const p = request.policy;
      if (!p) v.add('policy', 'is required');
      else {
        checkDeviceType(v, 'policy.device_type', p.deviceType);
        v.check(Number.isInteger(p.rawDays) && p.rawDays >= 0 && p.rawDays <= MAX_RETENTION_DAYS, 'policy.raw_days', `must be between 0 (inherit) and ${MAX_RETENTION_DAYS}`);
        v.check(Number.isInteger(p.rollupDays) && p.rollupDays >= 0 && p.rollupDays <= MAX_RETENTION_DAYS, 'policy.rollup_days', `must be between 0 (inherit) and ${MAX_RETENTION_DAYS}`);
      }
      v.throwIfAny();
      return { policy: policyOf(await retention.set(callerTenant(ctx), p!.deviceType, p!.rawDays, p!.rollupDays)) };
    },

    async listRetentionPolicies(_request, ctx) {
      return { policies: (await retention.list(callerTenant(ctx))).map(policyOf) };
    },
  });
}
