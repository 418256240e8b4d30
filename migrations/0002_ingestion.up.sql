-- One row per accepted event, keyed by its idempotency key: the exact second
-- layer of duplicate rejection behind the Redis fast path.
CREATE TABLE ingestion_events (
    id              uuid        PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    source          text        NOT NULL CHECK (length(source) BETWEEN 1 AND 100),
    type            text        NOT NULL CHECK (length(type) BETWEEN 1 AND 100),
    order_id        text        CHECK (length(order_id) <= 100),
    payload         jsonb       NOT NULL,
    occurred_at     timestamptz,
    received_at     timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'PENDING'
                    CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    replays         integer     NOT NULL DEFAULT 0 CHECK (replays >= 0),
    last_error      text,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Ids are UUIDv7 (time-ordered), so (status, id) serves keyset pages in arrival order.
CREATE INDEX ingestion_events_status_id ON ingestion_events (status, id);
-- The stuck-event rescuer looks only at PROCESSING rows.
CREATE INDEX ingestion_events_processing ON ingestion_events (updated_at) WHERE status = 'PROCESSING';

-- The state machine, held by the database:
--   PENDING -> PROCESSING -> COMPLETED | FAILED   (each claim is one more attempt)
--   PROCESSING -> PENDING  (a failed attempt that will be retried, or a rescued stuck event)
--   PENDING -> PENDING     (the rescuer re-enqueues an event whose message was lost)
--   FAILED -> PENDING      (replay: attempts start again at 0, replays counts up)
-- A new row starts PENDING with no attempts; a COMPLETED row never changes again.
CREATE FUNCTION ingestion_events_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'PENDING' OR NEW.attempts <> 0 OR NEW.replays <> 0 THEN
            RAISE EXCEPTION 'ingestion event % must start PENDING with 0 attempts', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;

    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'DELETE on ingestion_events is refused' USING ERRCODE = 'insufficient_privilege';
    END IF;

    IF NEW.replays <> OLD.replays AND NOT (OLD.status = 'FAILED' AND NEW.status = 'PENDING') THEN
        RAISE EXCEPTION 'ingestion event %: replays change only on replay', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.idempotency_key <> OLD.idempotency_key
       OR NEW.source <> OLD.source OR NEW.type <> OLD.type
       OR NEW.payload <> OLD.payload OR NEW.received_at <> OLD.received_at THEN
        RAISE EXCEPTION 'ingestion event % is immutable apart from its state', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT (
           (OLD.status = 'PENDING'    AND NEW.status = 'PROCESSING' AND NEW.attempts = OLD.attempts + 1)
        OR (OLD.status = 'PROCESSING' AND NEW.status IN ('COMPLETED', 'FAILED', 'PENDING') AND NEW.attempts = OLD.attempts)
        OR (OLD.status = 'PENDING'    AND NEW.status = 'PENDING' AND NEW.attempts = OLD.attempts)
        OR (OLD.status = 'FAILED'     AND NEW.status = 'PENDING' AND NEW.attempts = 0 AND NEW.replays = OLD.replays + 1)
    ) THEN
        RAISE EXCEPTION 'ingestion event %: transition % -> % (attempts % -> %) is not allowed',
            OLD.id, OLD.status, NEW.status, OLD.attempts, NEW.attempts
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ingestion_events_state_machine';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER ingestion_events_state_machine
    BEFORE INSERT OR UPDATE OR DELETE ON ingestion_events
    FOR EACH ROW EXECUTE FUNCTION ingestion_events_guard();

-- Messages that could not be processed: decoded or not, with why.
CREATE TABLE dead_letters (
    id            uuid        PRIMARY KEY,
    message_uuid  text        NOT NULL UNIQUE,
    event_id      uuid,
    topic         text        NOT NULL,
    reason        text        NOT NULL,
    payload       bytea       NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    replayed_at   timestamptz,
    replay_count  integer     NOT NULL DEFAULT 0
);

CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_at IS NULL;

-- Latest known status per order. (occurred_at, event id) decides: a late, older
-- update never overwrites a newer one, and a rebuild in any order agrees.
CREATE TABLE orders (
    order_id      text        PRIMARY KEY,
    status        text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    last_event_id uuid        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
