-- Firmware campaigns (issue 15): firmware artefacts, and campaigns that run
-- on the job engine. A campaign's stages are jobs (desired-state jobs that
-- set `firmware`); their device rows stay sent until the device reports the
-- version (or a failure) in its reported state, so the job engine's claims,
-- concurrency and abort threshold are the campaign's.

ALTER TABLE jobs ADD COLUMN await_firmware text NOT NULL DEFAULT '';

CREATE TABLE firmware (
  tenant_id      text        NOT NULL,
  id             uuid        NOT NULL,
  seq            bigserial   UNIQUE,
  version        text        NOT NULL,
  device_type_id text        NOT NULL,
  size_bytes     bigint      NOT NULL,
  sha256         text        NOT NULL,
  url            text        NOT NULL,
  description    text        NOT NULL DEFAULT '',
  create_time    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, device_type_id, version)
);

CREATE TABLE firmware_campaigns (
  tenant_id                 text        NOT NULL,
  id                        uuid        NOT NULL,
  seq                       bigserial   UNIQUE,
  firmware_id               uuid        NOT NULL,
  description               text        NOT NULL DEFAULT '',
  group_id                  text        NOT NULL DEFAULT '',
  canary_percent            integer     NOT NULL,
  max_concurrent            integer     NOT NULL,
  failure_threshold_percent integer     NOT NULL,
  expire_time               timestamptz NOT NULL,
  state                     text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed', 'aborted', 'cancelled')),
  stage                     text        NOT NULL CHECK (stage IN ('canary', 'rollout')),
  reason                    text        NOT NULL DEFAULT '',
  canary_job_id             uuid,
  -- Chosen at creation, so starting the rollout stage twice (two replicas, a restart) inserts one job.
  rollout_job_id            uuid        NOT NULL,
  rollout_device_ids        text[]      NOT NULL,
  rollout_started           boolean     NOT NULL DEFAULT false,
  actor_id                  text        NOT NULL DEFAULT '',
  create_time               timestamptz NOT NULL DEFAULT now(),
  update_time               timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, firmware_id) REFERENCES firmware (tenant_id, id)
);
CREATE INDEX firmware_campaigns_running ON firmware_campaigns (seq) WHERE state = 'running';
