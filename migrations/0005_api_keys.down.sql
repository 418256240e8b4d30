DROP INDEX dead_letters_event_id;
ALTER TABLE transfers DROP COLUMN api_key_id;
ALTER TABLE accounts DROP COLUMN api_key_id;
ALTER TABLE ingestion_events DROP COLUMN api_key_id;
DROP TABLE api_keys;
