-- API keys. Only a SHA-256 of each key is kept: keys are 256-bit random
-- secrets, so a fast hash is as safe as a slow one and costs nothing per
-- request. id is the key's public part (also written inside the key), used
-- to find the row before the hashes are compared in constant time.
CREATE TABLE api_keys (
    id            text        PRIMARY KEY CONSTRAINT api_keys_id_format CHECK (id ~ '^[a-z0-9]{1,32}$'),
    name          text        NOT NULL CONSTRAINT api_keys_name_length CHECK (length(name) BETWEEN 1 AND 100),
    scopes        text[]      NOT NULL CONSTRAINT api_keys_scopes_known CHECK (
                      cardinality(scopes) >= 1
                      AND scopes <@ ARRAY['events:write', 'events:read', 'ledger:read', 'ledger:write', 'admin']::text[]),
    secret_sha256 bytea       NOT NULL UNIQUE CONSTRAINT api_keys_secret_sha256_length CHECK (length(secret_sha256) = 32),
    -- Events (or requests) per second for this key; NULL means DAYBOOK_RATE_LIMIT.
    rate_limit    double precision CONSTRAINT api_keys_rate_limit_positive CHECK (rate_limit > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- Who did it: the key that created each event, account and transfer (NULL
-- when authentication was off or the API was open on loopback). No foreign
-- key: a key is never deleted, and the hot insert paths should not pay for
-- a lookup.
ALTER TABLE ingestion_events ADD COLUMN api_key_id text;
ALTER TABLE accounts ADD COLUMN api_key_id text;
ALTER TABLE transfers ADD COLUMN api_key_id text;

-- GET /events/{id} of an event dead-lettered before it was ever stored
-- answers from its letter.
CREATE INDEX dead_letters_event_id ON dead_letters (event_id) WHERE event_id IS NOT NULL;
