-- Exporters of a group of collectors: the log index each has delivered up to, so the collector
-- that sequences (the only one that delivers) goes on where the previous one stopped.
CREATE TABLE export_cursors (
    name TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
