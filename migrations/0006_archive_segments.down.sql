DROP TRIGGER ingestion_events_archive_pointer ON ingestion_events;
DROP FUNCTION ingestion_events_archive_guard();

-- Dropping the columns drops their checks; the pointers are lost (the
-- segments stay in the archive).
ALTER TABLE ingestion_events
    DROP COLUMN archive_sha256,
    DROP COLUMN archive_length,
    DROP COLUMN archive_offset,
    DROP COLUMN archive_segment;
