import { roleFromName } from '@iot-mesh/runtime';
import { AuditEvent } from '../../../../gen/ts/iot/signing/v1/audit';
import { Tenant, User } from '../../../../gen/ts/iot/signing/v1/auth';
import type { AuditEventRecord } from '../store/audit-events';
import type { TenantRecord } from '../store/tenants';
import type { UserRecord } from '../store/users';

/** A tenant as the API shows it. */
export function tenantMessage(t: TenantRecord): Tenant {
  return { id: t.id, name: t.name, createTime: t.createTime };
}

/** A user as the API shows it (never the password hash). */
export function userMessage(u: UserRecord): User {
  return { id: u.id, tenantId: u.tenantId, email: u.email, displayName: u.displayName, role: roleFromName(u.role)!, createTime: u.createTime, updateTime: u.updateTime };
}

/** An audit event as listed by AuditService and published on NATS. */
export function auditEventMessage(e: AuditEventRecord): AuditEvent {
  return {
    id: e.id,
    tenantId: e.tenantId ?? '',
    type: e.type,
    actorId: e.actorId,
    subject: { tenantId: e.tenantId ?? '', kind: e.subject.kind, id: e.subject.id },
    sourceAddress: e.sourceAddress,
    details: e.details,
    time: e.time,
  };
}
