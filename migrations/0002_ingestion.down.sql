DROP TABLE orders;
DROP TABLE dead_letters;
DROP TABLE ingestion_events;
DROP FUNCTION ingestion_events_guard();
