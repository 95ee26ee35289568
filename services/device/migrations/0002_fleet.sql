-- Fleet operations (issue 15): device types, provisioning keys and their
-- claims, groups (saved selectors); devices gain a type and a serial number.

CREATE TABLE device_types (
  tenant_id             text        NOT NULL,
  id                    uuid        NOT NULL,
  seq                   bigserial   NOT NULL UNIQUE,
  name                  text        NOT NULL,
  display_name          text        NOT NULL DEFAULT '',
  description           text        NOT NULL DEFAULT '',
  -- [{name, displayName, unit, kind, min?, max?}]
  metrics               jsonb       NOT NULL DEFAULT '[]'::jsonb,
  -- [{name, description, parametersSchema?}]
  commands              jsonb       NOT NULL DEFAULT '[]'::jsonb,
  desired_schema        jsonb,
  reported_schema       jsonb,
  -- DefaultAlertRule messages as proto3 JSON (monitoring applies them).
  default_alert_rules   jsonb       NOT NULL DEFAULT '[]'::jsonb,
  firmware_version      text        NOT NULL DEFAULT '',
  unknown_metric_policy text        NOT NULL DEFAULT 'accept' CHECK (unknown_metric_policy IN ('accept', 'dead_letter')),
  create_time           timestamptz NOT NULL DEFAULT now(),
  update_time           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

ALTER TABLE devices ADD COLUMN device_type_id uuid;
ALTER TABLE devices ADD COLUMN serial_number text;
-- A type in use cannot be deleted (RESTRICT): DeleteDeviceType says so.
ALTER TABLE devices ADD FOREIGN KEY (tenant_id, device_type_id) REFERENCES device_types (tenant_id, id) ON DELETE RESTRICT;
-- One device per serial in a tenant: concurrent claims of one serial meet here.
CREATE UNIQUE INDEX devices_tenant_serial ON devices (tenant_id, serial_number) WHERE serial_number IS NOT NULL;
CREATE INDEX devices_tenant_type ON devices (tenant_id, device_type_id) WHERE device_type_id IS NOT NULL;

CREATE TABLE provisioning_keys (
  tenant_id      text        NOT NULL,
  id             uuid        NOT NULL,
  seq            bigserial   NOT NULL UNIQUE,
  name           text        NOT NULL,
  -- SHA-256 of the secret (256 random bits, so no slow hash is needed); the secret itself is never stored.
  secret_hash    bytea       NOT NULL UNIQUE,
  secret_prefix  text        NOT NULL,
  device_type_id uuid,
  labels         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  expire_time    timestamptz,
  -- 0: no limit.
  usage_limit    bigint      NOT NULL DEFAULT 0 CHECK (usage_limit >= 0),
  device_count   bigint      NOT NULL DEFAULT 0,
  claim_count    bigint      NOT NULL DEFAULT 0,
  create_time    timestamptz NOT NULL DEFAULT now(),
  revoke_time    timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, device_type_id) REFERENCES device_types (tenant_id, id) ON DELETE RESTRICT
);

-- Every claim of a key, refused ones included: the audit trail.
CREATE TABLE provisioning_claims (
  seq           bigserial   PRIMARY KEY,
  tenant_id     text        NOT NULL,
  key_id        uuid        NOT NULL,
  serial_number text        NOT NULL,
  device_id     text        NOT NULL DEFAULT '',
  outcome       text        NOT NULL CHECK (outcome IN ('created', 'reclaimed', 'refused_revoked', 'refused_expired', 'refused_exhausted')),
  peer          text        NOT NULL DEFAULT '',
  claim_time    timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, key_id) REFERENCES provisioning_keys (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX provisioning_claims_key ON provisioning_claims (tenant_id, key_id, seq);

CREATE TABLE device_groups (
  tenant_id      text        NOT NULL,
  id             uuid        NOT NULL,
  seq            bigserial   NOT NULL UNIQUE,
  name           text        NOT NULL,
  description    text        NOT NULL DEFAULT '',
  match_labels   jsonb       NOT NULL DEFAULT '{}'::jsonb,
  device_type_id uuid,
  create_time    timestamptz NOT NULL DEFAULT now(),
  update_time    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  FOREIGN KEY (tenant_id, device_type_id) REFERENCES device_types (tenant_id, id) ON DELETE RESTRICT
);
