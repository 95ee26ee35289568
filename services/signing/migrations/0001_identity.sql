-- Identity: tenants, users, refresh tokens, API keys, signing keys, audit events.

CREATE TABLE tenants (
  id          uuid PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  -- The tenant created by bootstrap; its admins are platform admins.
  platform    boolean NOT NULL DEFAULT false,
  create_time timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_single_platform ON tenants (platform) WHERE platform;

CREATE TABLE users (
  id            uuid PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  email         text NOT NULL,
  display_name  text NOT NULL DEFAULT '',
  role          text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  -- scrypt$N$r$p$salt$hash; never the password.
  password_hash text NOT NULL,
  create_time   timestamptz NOT NULL DEFAULT now(),
  update_time   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, email)
);
CREATE INDEX users_tenant_page ON users (tenant_id, create_time, id);

-- Opaque refresh tokens, stored as SHA-256 of the token only. Every refresh
-- spends a token and issues the next of the same family; presenting a spent
-- one revokes the family.
CREATE TABLE refresh_tokens (
  id          uuid PRIMARY KEY,
  family_id   uuid NOT NULL,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  tenant_id   uuid NOT NULL,
  token_hash  bytea NOT NULL UNIQUE,
  create_time timestamptz NOT NULL DEFAULT now(),
  expire_time timestamptz NOT NULL,
  use_time    timestamptz,
  revoke_time timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE api_keys (
  id             uuid PRIMARY KEY,
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name           text NOT NULL,
  -- First characters of the secret, shown in lists.
  prefix         text NOT NULL,
  secret_hash    bytea NOT NULL UNIQUE,
  role           text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  created_by     text NOT NULL DEFAULT '',
  create_time    timestamptz NOT NULL DEFAULT now(),
  expire_time    timestamptz,
  revoke_time    timestamptz,
  last_used_time timestamptz
);
CREATE INDEX api_keys_tenant_page ON api_keys (tenant_id, create_time, id);

-- ES256 signing keys. A key is published from create_time, signs from
-- activate_time, and is withdrawn (and refused) from retire_time.
CREATE TABLE signing_keys (
  kid           text PRIMARY KEY,
  -- PKCS#8 DER, AES-256-GCM encrypted (iv | tag | ciphertext) when encryption = 'aes-256-gcm'.
  private_key   bytea NOT NULL,
  encryption    text NOT NULL CHECK (encryption IN ('none', 'aes-256-gcm')),
  public_jwk    jsonb NOT NULL,
  create_time   timestamptz NOT NULL DEFAULT now(),
  activate_time timestamptz NOT NULL,
  retire_time   timestamptz
);

CREATE TABLE audit_events (
  id             uuid PRIMARY KEY,
  -- Null when the tenant is unknown (a login to a tenant that does not exist).
  tenant_id      uuid,
  type           text NOT NULL,
  actor_id       text NOT NULL DEFAULT '',
  subject_kind   text NOT NULL DEFAULT '',
  subject_id     text NOT NULL DEFAULT '',
  source_address text NOT NULL DEFAULT '',
  details        jsonb NOT NULL DEFAULT '{}',
  time           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, time DESC, id DESC);
