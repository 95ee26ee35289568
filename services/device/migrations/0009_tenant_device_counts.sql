-- How many devices each tenant has, kept by statement-level triggers in the
-- transaction that inserts or deletes them, so the device quota
-- (DEVICE_MAX_PER_TENANT) reads one row instead of counting the tenant's
-- devices on every creation (a count(*) of 100,000 index entries, under the
-- tenant's creation lock). The trigger functions keep the search path of this
-- migration (the device schema), so rows written from any session count.
CREATE TABLE tenant_device_counts (
  tenant_id text   PRIMARY KEY,
  devices   bigint NOT NULL CHECK (devices >= 0)
);

INSERT INTO tenant_device_counts (tenant_id, devices)
SELECT tenant_id, count(*) FROM devices GROUP BY tenant_id;

CREATE FUNCTION tenant_device_counts_add() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  INSERT INTO tenant_device_counts (tenant_id, devices)
  SELECT tenant_id, count(*) FROM added GROUP BY tenant_id
  ON CONFLICT (tenant_id) DO UPDATE SET devices = tenant_device_counts.devices + EXCLUDED.devices;
  RETURN NULL;
END $$;

CREATE FUNCTION tenant_device_counts_remove() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE tenant_device_counts c SET devices = c.devices - r.n
    FROM (SELECT tenant_id, count(*) AS n FROM removed GROUP BY tenant_id) r
   WHERE c.tenant_id = r.tenant_id;
  RETURN NULL;
END $$;

CREATE FUNCTION tenant_device_counts_clear() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  DELETE FROM tenant_device_counts;
  RETURN NULL;
END $$;

CREATE TRIGGER devices_counted_insert AFTER INSERT ON devices
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tenant_device_counts_add();
CREATE TRIGGER devices_counted_delete AFTER DELETE ON devices
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tenant_device_counts_remove();
CREATE TRIGGER devices_counted_truncate AFTER TRUNCATE ON devices
  FOR EACH STATEMENT EXECUTE FUNCTION tenant_device_counts_clear();
