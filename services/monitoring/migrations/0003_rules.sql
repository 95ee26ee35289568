-- Rules (issue 16): a CEL condition over a telemetry message and its actions.
-- Source and actions are JSON (their shape is the API's RuleSource and
-- RuleAction). The counters are summed by every replica's periodic flush, so
-- GetRule shows totals over the whole deployment.
CREATE TABLE rules (
  id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id             text        NOT NULL,
  name                  text        NOT NULL,
  source                jsonb       NOT NULL,
  condition             text        NOT NULL,
  actions               jsonb       NOT NULL,
  enabled               boolean     NOT NULL DEFAULT true,
  create_time           timestamptz NOT NULL DEFAULT now(),
  update_time           timestamptz NOT NULL DEFAULT now(),
  matched               bigint      NOT NULL DEFAULT 0,
  actions_ok            bigint      NOT NULL DEFAULT 0,
  actions_failed        bigint      NOT NULL DEFAULT 0,
  actions_dead_lettered bigint      NOT NULL DEFAULT 0,
  evaluation_errors     bigint      NOT NULL DEFAULT 0,
  latency_ms_sum        double precision NOT NULL DEFAULT 0,
  UNIQUE (tenant_id, name)
);
CREATE INDEX rules_tenant ON rules (tenant_id, create_time, id);

-- Where notify actions send to; the kind-specific part is JSON.
CREATE TABLE notification_channels (
  id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id             text        NOT NULL,
  name                  text        NOT NULL,
  kind                  jsonb       NOT NULL,
  retry                 jsonb       NOT NULL,
  rate_limit_per_minute integer     NOT NULL,
  create_time           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_channels_tenant ON notification_channels (tenant_id, create_time, id);

-- Final outcome of an action for one message: every webhook and notify
-- delivery, and every dead-lettered action with its reason. Kept when the
-- rule or channel is deleted (it is a log).
CREATE TABLE rule_deliveries (
  id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   text        NOT NULL,
  rule_id     uuid        NOT NULL,
  channel_id  uuid,
  action_kind text        NOT NULL,
  device_id   text        NOT NULL,
  message_id  text        NOT NULL,
  state       integer     NOT NULL,
  attempts    integer     NOT NULL,
  last_error  text        NOT NULL DEFAULT '',
  webhook_id  text        NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rule_deliveries_rule ON rule_deliveries (tenant_id, rule_id, create_time DESC, id DESC);
CREATE INDEX rule_deliveries_channel ON rule_deliveries (tenant_id, channel_id, create_time DESC, id DESC) WHERE channel_id IS NOT NULL;
