-- Where each event's record is archived: a line of a segment (one gzip of
-- NDJSON per processed batch), as its byte range in the uncompressed NDJSON
-- and the SHA-256 of those bytes. Events completed before this migration
-- have none. The columns are new and NULL in every row, so the checks need
-- not scan the table (NOT VALID); they hold for every write from now on.
ALTER TABLE ingestion_events
    ADD COLUMN archive_segment text,
    ADD COLUMN archive_offset  bigint,
    ADD COLUMN archive_length  integer,
    ADD COLUMN archive_sha256  bytea,
    ADD CONSTRAINT ingestion_events_archive_pointer_whole CHECK (
        num_nonnulls(archive_segment, archive_offset, archive_length, archive_sha256) IN (0, 4)) NOT VALID,
    ADD CONSTRAINT ingestion_events_archive_pointer_valid CHECK (
        length(archive_segment) BETWEEN 1 AND 1024 AND archive_offset >= 0 AND archive_length > 0
        AND length(archive_sha256) = 32) NOT VALID;

-- The archive pointer is set only by the UPDATE that moves PROCESSING ->
-- COMPLETED (the commit of the attempt that archived those bytes), and never
-- changes after; a row starts without one. A trigger of its own beside 0002's
-- state machine, which stays as it is.
CREATE FUNCTION ingestion_events_archive_guard() RETURNS trigger
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

CREATE TRIGGER ingestion_events_archive_pointer
    BEFORE INSERT OR UPDATE ON ingestion_events
    FOR EACH ROW EXECUTE FUNCTION ingestion_events_archive_guard();
