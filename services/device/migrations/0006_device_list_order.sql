-- ListDevices' order_by: one index per sortable column, ending in seq (the
-- tie-breaker and keyset position), so a sorted first page at 100,000
-- devices reads one page of index entries instead of sorting the tenant.
-- last_seen_time sorts NULL (never seen) as -infinity, which keeps the
-- keyset comparison a plain row comparison.
CREATE INDEX devices_order_name ON devices (tenant_id, name, seq);
CREATE INDEX devices_order_type ON devices (tenant_id, type, seq);
CREATE INDEX devices_order_status ON devices (tenant_id, status, seq);
CREATE INDEX devices_order_create_time ON devices (tenant_id, create_time, seq);
CREATE INDEX devices_order_last_seen ON devices (tenant_id, (COALESCE(last_seen_time, '-infinity'::timestamptz)), seq);
