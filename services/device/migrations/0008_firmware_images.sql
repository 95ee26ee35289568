-- Firmware images stored by the platform (issue 15): a firmware created with
-- `stored` gets its bytes by chunked upload into firmware_chunks, in the
-- service's own PostgreSQL (every replica sees every image, backups and
-- tenant deletion cover them, no shared volume is needed on Kubernetes).
-- Chunks are at most 1 MiB, keyed by their byte offset, so a download with
-- a Range reads only the chunks it needs.

ALTER TABLE firmware ADD COLUMN stored boolean NOT NULL DEFAULT false;
ALTER TABLE firmware ADD COLUMN uploaded_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE firmware ADD COLUMN upload_complete boolean NOT NULL DEFAULT true;

CREATE TABLE firmware_chunks (
  tenant_id   text   NOT NULL,
  firmware_id uuid   NOT NULL,
  byte_offset bigint NOT NULL,
  data        bytea  NOT NULL,
  PRIMARY KEY (tenant_id, firmware_id, byte_offset),
  FOREIGN KEY (tenant_id, firmware_id) REFERENCES firmware (tenant_id, id) ON DELETE CASCADE
);
