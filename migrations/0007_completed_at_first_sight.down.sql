-- Back to 0002's and 0006's rules: a row starts PENDING, without a pointer.
-- Rows inserted COMPLETED meanwhile stay as they are.
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

CREATE OR REPLACE FUNCTION ingestion_events_archive_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.archive_segment IS NOT NULL THEN
            RAISE EXCEPTION 'ingestion event % must start without an archive pointer', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ingestion_events_archive_pointer';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.archive_segment, NEW.archive_offset, NEW.archive_length, NEW.archive_sha256)
           IS DISTINCT FROM (OLD.archive_segment, OLD.archive_offset, OLD.archive_length, OLD.archive_sha256)
       AND NOT (OLD.status = 'PROCESSING' AND NEW.status = 'COMPLETED' AND OLD.archive_segment IS NULL) THEN
        RAISE EXCEPTION 'ingestion event %: the archive pointer is set only with PROCESSING -> COMPLETED, and never changes (% -> %)',
            OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ingestion_events_archive_pointer';
    END IF;
    RETURN NEW;
END;
$$;
