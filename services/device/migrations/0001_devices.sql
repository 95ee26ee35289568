-- The device registry: one row per device of a tenant, with its credential
-- state, connection status and twin.
-- Versions of device rows, global so a re-created device never reuses the
-- version of a deleted one that a cache may still hold.
CREATE SEQUENCE device_versions;

CREATE TABLE devices (
  tenant_id              text        NOT NULL,
  id                     text        NOT NULL,
  -- Keyset order of lists: rows inserted while a client pages appear after its cursor.
  seq                    bigserial   NOT NULL UNIQUE,
  name                   text        NOT NULL,
  type                   text        NOT NULL DEFAULT '',
  labels                 jsonb       NOT NULL DEFAULT '{}'::jsonb,
  credential_state       text        NOT NULL DEFAULT 'none' CHECK (credential_state IN ('none', 'active', 'revoked')),
  -- NATS user public key of the active credential (the token itself is never stored).
  credential_key         text        UNIQUE,
  credential_issue_time  timestamptz,
  credential_expire_time timestamptz,
  status                 text        NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
  -- Live connections the NATS server reported for the device's credential.
  connections            integer     NOT NULL DEFAULT 0,
  last_seen_time         timestamptz,
  last_connect_time      timestamptz,
  last_disconnect_time   timestamptz,
  desired                jsonb       NOT NULL DEFAULT '{}'::jsonb,
  desired_version        bigint      NOT NULL DEFAULT 0,
  desired_update_time    timestamptz,
  reported               jsonb       NOT NULL DEFAULT '{}'::jsonb,
  reported_version       bigint      NOT NULL DEFAULT 0,
  reported_update_time   timestamptz,
  -- Bumped by every change that a cached copy must not hide.
  version                bigint      NOT NULL DEFAULT nextval('device_versions'),
  create_time            timestamptz NOT NULL DEFAULT now(),
  update_time            timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

CREATE INDEX devices_tenant_seq ON devices (tenant_id, seq);
CREATE INDEX devices_labels ON devices USING gin (labels jsonb_path_ops);
CREATE INDEX devices_tenant_name ON devices (tenant_id, name text_pattern_ops);

-- Every credential ever revoked (rotated out, revoked, or of a deleted device):
-- the account JWT's revocation list is rebuilt from it.
CREATE TABLE revoked_credentials (
  public_key  text        PRIMARY KEY,
  tenant_id   text        NOT NULL,
  device_id   text        NOT NULL,
  revoke_time timestamptz NOT NULL DEFAULT now(),
  -- After this instant the token is dead anyway and the entry may be dropped.
  expire_time timestamptz
);

CREATE TABLE commands (
  id            uuid        PRIMARY KEY,
  tenant_id     text        NOT NULL,
  device_id     text        NOT NULL,
  seq           bigserial   NOT NULL UNIQUE,
  name          text        NOT NULL,
  payload       jsonb,
  status        text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'timed_out', 'device_offline')),
  result        jsonb,
  error         text        NOT NULL DEFAULT '',
  actor_id      text        NOT NULL DEFAULT '',
  create_time   timestamptz NOT NULL DEFAULT now(),
  complete_time timestamptz,
  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX commands_device_seq ON commands (tenant_id, device_id, seq);
