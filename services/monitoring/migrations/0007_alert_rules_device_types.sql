-- A device type's default alert rules (issue 15) become alert rules owned by
-- the type: device_type_id set (the device service's type id), applied only
-- to devices of that type, kept by monitoring from the device directory and
-- refused to UpdateAlertRule/DeleteAlertRule. One row per rule name in a type,
-- so every replica may upsert them (INSERT ... ON CONFLICT) without doubles.
ALTER TABLE alert_rules ADD COLUMN device_type_id text;
CREATE UNIQUE INDEX alert_rules_device_type_name ON alert_rules (tenant_id, device_type_id, name) WHERE device_type_id IS NOT NULL;
