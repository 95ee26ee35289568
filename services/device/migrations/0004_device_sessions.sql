-- Connection history (issue 15): every NATS/MQTT session of a device as the
-- NATS server reported it, the server's reason for its end, and the last
-- time telemetry arrived (last_seen_time also moves on connects and state).

ALTER TABLE devices ADD COLUMN last_data_time timestamptz;
ALTER TABLE devices ADD COLUMN last_disconnect_reason text NOT NULL DEFAULT '';

CREATE TABLE device_sessions (
  seq               bigserial   PRIMARY KEY,
  tenant_id         text        NOT NULL,
  device_id         text        NOT NULL,
  -- The connection as the server names it: its server id (new on every server start) and client id.
  server_id         text        NOT NULL,
  client_id         bigint      NOT NULL,
  -- Unset when only the end of the session was reported.
  connect_time      timestamptz,
  -- Unset while the session is open.
  disconnect_time   timestamptz,
  -- The server's reason ("Client Closed", "Authentication Revoked", "Stale Connection", …) or ours when it went unreported.
  disconnect_reason text        NOT NULL DEFAULT '',
  remote_address    text        NOT NULL DEFAULT '',
  client_name       text        NOT NULL DEFAULT '',
  UNIQUE (server_id, client_id),
  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX device_sessions_device ON device_sessions (tenant_id, device_id, seq);
CREATE INDEX device_sessions_open ON device_sessions (server_id, client_id) WHERE disconnect_time IS NULL;
