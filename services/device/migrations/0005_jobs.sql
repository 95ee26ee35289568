-- Jobs (issue 15): one command or desired-state change applied to many
-- devices, with each device's state. The runner claims device rows with
-- FOR UPDATE SKIP LOCKED, so replicas never run the same device's step twice.

CREATE TABLE jobs (
  tenant_id               text        NOT NULL,
  id                      uuid        NOT NULL,
  seq                     bigserial   UNIQUE,
  description             text        NOT NULL DEFAULT '',
  kind                    text        NOT NULL CHECK (kind IN ('command', 'desired')),
  command_name            text        NOT NULL DEFAULT '',
  params                  jsonb,
  timeout_ms              integer     NOT NULL,
  desired_patch           jsonb,
  group_id                text        NOT NULL DEFAULT '',
  max_in_flight           integer     NOT NULL,
  max_per_second          integer     NOT NULL,
  abort_threshold_percent integer     NOT NULL,
  abort_min_finished      integer     NOT NULL,
  expire_time             timestamptz NOT NULL,
  state                   text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed', 'aborted', 'cancelled')),
  reason                  text        NOT NULL DEFAULT '',
  actor_id                text        NOT NULL DEFAULT '',
  create_time             timestamptz NOT NULL DEFAULT now(),
  update_time             timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX jobs_running ON jobs (seq) WHERE state = 'running';

CREATE TABLE job_devices (
  tenant_id    text        NOT NULL,
  job_id       uuid        NOT NULL,
  device_id    text        NOT NULL,
  seq          bigserial   UNIQUE,
  state        text        NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'succeeded', 'failed', 'timed_out', 'cancelled')),
  reason       text        NOT NULL DEFAULT '',
  result       jsonb,
  -- The replica that sent the step and until when it waits for the answer.
  claimed_by   text        NOT NULL DEFAULT '',
  deadline     timestamptz,
  sent_time    timestamptz,
  finish_time  timestamptz,
  PRIMARY KEY (tenant_id, job_id, device_id),
  FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX job_devices_open ON job_devices (tenant_id, job_id, seq) WHERE state IN ('queued', 'sent');
CREATE INDEX job_devices_sent ON job_devices (tenant_id, job_id, sent_time) WHERE sent_time IS NOT NULL;
CREATE INDEX job_devices_list ON job_devices (tenant_id, job_id, state, seq);
