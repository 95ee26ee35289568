import type { NatsConnection, Subscription } from 'nats';
import { Alert } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import { ALL_ALERT_RULES_CHANGED, alertEventsOf, alertEventSubject, AlertEventKind, alertRulesChangedSubject, eventSubjectTenant } from '@iot-mesh/runtime';

/** Publishes an alert event; the body is the binary Protobuf `iot.monitoring.v1.Alert`. */
export function publishAlertEvent(nc: NatsConnection, kind: AlertEventKind, alert: Alert): void {
  nc.publish(alertEventSubject(alert.tenantId, kind), Alert.encode(alert).finish());
}

/** Calls `onAlert` with every alert event of the tenant until unsubscribed; bodies that are not an `Alert` are skipped. */
export function subscribeAlertEvents(nc: NatsConnection, tenantId: string, onAlert: (alert: Alert) => void): Subscription {
  return nc.subscribe(alertEventsOf(tenantId), {
    callback: (err, msg) => {
      if (err) return;
      let alert: Alert;
      try {
        alert = Alert.decode(msg.data);
      } catch {
        return; // not an alert event
      }
      onAlert(alert);
    },
  });
}

/**
 * Tells every replica that a tenant's alert rules changed. The body is empty:
 * the binary Protobuf encoding of an empty message (`google.protobuf.Empty`);
 * the subject alone says which tenant.
 */
export function publishRulesChanged(nc: NatsConnection, tenantId: string): void {
  nc.publish(alertRulesChangedSubject(tenantId), new Uint8Array(0));
}

/** Calls `onChanged` with the tenant whenever any replica changed that tenant's alert rules. */
export function subscribeRulesChanged(nc: NatsConnection, onChanged: (tenantId: string) => void): Subscription {
  return nc.subscribe(ALL_ALERT_RULES_CHANGED, {
    callback: (err, msg) => {
      const tenantId = err ? undefined : eventSubjectTenant(msg.subject);
      if (tenantId) onChanged(tenantId);
    },
  });
}
