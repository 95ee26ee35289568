-- Issue 13: one NATS account per tenant. A tenant's account is recorded here
-- before its JWT is first pushed, so every replica's push of the platform
-- account (which imports each tenant's commands and desired state) names it.
-- The keys themselves are derived from DEVICE_NATS_TENANT_KEY_SECRET and
-- never stored.
CREATE TABLE tenant_accounts (
  tenant_id   text        PRIMARY KEY,
  account     text        NOT NULL UNIQUE,
  create_time timestamptz NOT NULL DEFAULT now()
);

-- Each push reads one tenant's live revocations; expired ones stay on record
-- but are left out of the account JWT.
CREATE INDEX revoked_credentials_tenant_expire ON revoked_credentials (tenant_id, expire_time);
