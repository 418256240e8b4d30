-- The event log: the book of original entry. Rows are appended, never changed.
CREATE TABLE event_log (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    stream_version bigint      NOT NULL CHECK (stream_version > 0),
    event_type     text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 200),
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- Optimistic concurrency: two writers cannot both append version N of a stream.
    UNIQUE (stream_id, stream_version)
);

CREATE INDEX event_log_type_position ON event_log (event_type, position);

-- Shared by every append-only table: UPDATE, DELETE and TRUNCATE are refused.
CREATE FUNCTION daybook_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is refused: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER event_log_append_only
    BEFORE UPDATE OR DELETE ON event_log
    FOR EACH ROW EXECUTE FUNCTION daybook_refuse_change();

CREATE TRIGGER event_log_no_truncate
    BEFORE TRUNCATE ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION daybook_refuse_change();

-- The transactional outbox, in the layout of watermill-sql's PostgreSQLQueueSchema
-- (messages are deleted once the forwarder has published them).
CREATE TABLE outbox (
    "offset"   bigserial PRIMARY KEY,
    uuid       varchar(36) NOT NULL,
    payload    json DEFAULT NULL,
    metadata   json DEFAULT NULL,
    acked      boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);
