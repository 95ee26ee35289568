import { callerPrincipal, defineService, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { AuditServiceService } from '../../../../gen/ts/iot/signing/v1/audit';
import type { AuditTrail } from '../domain/audit';
import { auditEventMessage } from './messages';
import { checkPage } from './requests';

const AUDIT_TYPE = /^[a-z_]+(\.[a-z_]+)*$/;

/** `iot.signing.v1.AuditService`: the security events of the caller's tenant. */
export function auditService(audit: AuditTrail): ServiceRegistration {
  return defineService(AuditServiceService, {
    async listAuditEvents(req, ctx) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      const { start, end } = req.timeRange ?? {};
      if (start && end) v.check(start.getTime() < end.getTime(), 'time_range', 'start must be before end');
      if (req.type) v.matches(req.type, AUDIT_TYPE, 'type', 'must look like login.failed');
      v.throwIfAny();
      const result = await audit.list(callerPrincipal(ctx), { ...page, start, end, type: req.type || undefined });
      return { events: result.items.map(auditEventMessage), page: { nextPageToken: result.nextPageToken } };
    },
  });
}
