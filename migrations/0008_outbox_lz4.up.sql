-- An outbox row now carries a batch of log events (up to 128 KiB), which
-- Postgres compresses into TOAST: lz4 does it at a fraction of pglz's CPU
-- (PostgreSQL 14+, built --with-lz4, as Debian's, the postgres image and
-- RDS are). A server without it keeps pglz.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not supported here: outbox payloads stay compressed with pglz';
END
$$;
