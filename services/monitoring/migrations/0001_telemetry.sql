-- Stored samples: one row per point, partitioned by day on the sample time.
-- The primary key is also the query index (device + metric + time) and makes
-- ingest idempotent: a redelivered message carries the same message id, point
-- index and time, so INSERT ... ON CONFLICT DO NOTHING stores it once.
CREATE TABLE points (
  tenant_id    text             NOT NULL,
  device_id    text             NOT NULL,
  metric       text             NOT NULL,
  time         timestamptz      NOT NULL,
  message_id   text             NOT NULL,
  point_index  integer          NOT NULL,
  number_value double precision,
  bool_value   boolean,
  string_value text,
  PRIMARY KEY (tenant_id, device_id, metric, time, message_id, point_index)
) PARTITION BY RANGE (time);

-- Newest sample per device and metric, upserted once per batch, so "latest"
-- never touches the big table.
CREATE TABLE latest_points (
  tenant_id    text             NOT NULL,
  device_id    text             NOT NULL,
  metric       text             NOT NULL,
  time         timestamptz      NOT NULL,
  number_value double precision,
  bool_value   boolean,
  string_value text,
  PRIMARY KEY (tenant_id, device_id, metric)
);

-- Alert rules per tenant; the condition (threshold or no-data) is JSON.
CREATE TABLE alert_rules (
  id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   text        NOT NULL,
  name        text        NOT NULL,
  metric      text        NOT NULL,
  device_ids  text[]      NOT NULL DEFAULT '{}',
  labels      jsonb       NOT NULL DEFAULT '{}',
  condition   jsonb       NOT NULL,
  severity    integer     NOT NULL,
  enabled     boolean     NOT NULL DEFAULT true,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id, create_time, id);

-- Alerts raised by rules; at most one open (raised) alert per rule and device,
-- which also makes evaluation by several replicas raise it once.
CREATE TABLE alerts (
  id               uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        text             NOT NULL,
  rule_id          uuid             NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
  device_id        text             NOT NULL,
  metric           text             NOT NULL,
  state            integer          NOT NULL,
  severity         integer          NOT NULL,
  value            double precision,
  message          text             NOT NULL DEFAULT '',
  raise_time       timestamptz      NOT NULL,
  resolve_time     timestamptz,
  acknowledge_time timestamptz,
  acknowledged_by  text
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, device_id) WHERE state = 1;
CREATE INDEX alerts_tenant_recent ON alerts (tenant_id, raise_time DESC, id DESC);
