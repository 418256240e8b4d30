-- The guard of 0002, without the archive pointer's rule.
CREATE OR REPLACE FUNCTION ingestion_events_guard() RETURNS trigger
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

-- Dropping the columns drops their checks; the pointers are lost (the
-- segments stay in the archive).
ALTER TABLE ingestion_events
    DROP COLUMN archive_sha256,
    DROP COLUMN archive_length,
    DROP COLUMN archive_offset,
    DROP COLUMN archive_segment;
