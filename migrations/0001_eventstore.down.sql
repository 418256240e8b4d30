DROP TABLE outbox;
DROP TABLE event_log;
DROP FUNCTION daybook_refuse_change();
