-- Alert notifications (issue 16): an alert rule names channels, a repeat
-- interval and quiet hours (JSON: the API's AlertNotification); an open alert
-- remembers when it was last notified, so any replica can send its repeats
-- (the one that claims it with UPDATE ... RETURNING).
ALTER TABLE alert_rules ADD COLUMN notification jsonb NOT NULL DEFAULT '{}';
ALTER TABLE alerts ADD COLUMN last_notify_time timestamptz;
CREATE INDEX alerts_repeat_due ON alerts (last_notify_time) WHERE state = 1;

-- The delivery log carries alert notifications too (rule_id is then the alert rule).
ALTER TABLE rule_deliveries ADD COLUMN alert_id uuid;
ALTER TABLE rule_deliveries ADD COLUMN alert_event text NOT NULL DEFAULT '';
CREATE INDEX rule_deliveries_alert ON rule_deliveries (tenant_id, alert_id, create_time DESC, id DESC) WHERE alert_id IS NOT NULL;
-- Delivery-log retention deletes by age.
CREATE INDEX rule_deliveries_age ON rule_deliveries (create_time);

-- Queued rule actions and alert notifications, durable: a row is written
-- before the telemetry message is acked and deleted once the action reached
-- its final outcome (delivered, dead-lettered, rate limited). The replica
-- working on it renews its lease; rows whose lease ran out (a crashed or
-- stopped replica) are claimed by another and resume at their attempt.
CREATE TABLE rule_action_queue (
  id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   text        NOT NULL,
  rule_id     uuid        NOT NULL,
  job         jsonb       NOT NULL,
  attempt     integer     NOT NULL DEFAULT 1,
  owner       text        NOT NULL,
  lease_until timestamptz NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rule_action_queue_lease ON rule_action_queue (lease_until, create_time);
CREATE INDEX rule_action_queue_owner ON rule_action_queue (owner);

-- Retention policies per tenant (device_type '') and per device type; 0 days inherits.
CREATE TABLE retention_policies (
  tenant_id   text        NOT NULL,
  device_type text        NOT NULL DEFAULT '',
  raw_days    integer     NOT NULL DEFAULT 0,
  rollup_days integer     NOT NULL DEFAULT 0,
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, device_type)
);
