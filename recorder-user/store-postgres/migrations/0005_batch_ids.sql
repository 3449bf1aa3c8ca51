-- Ingest gives each batch a run of record ids of its own: the batch number from
-- `record_batches` times 65,536, plus the line's place in the batch. The batch then waits for
-- the sequencer as one `waiting` row, its first id and the length of its run (`count`),
-- instead of one row per record: a waiting row was a quarter of ingest's work in the database.
-- Rows written before this migration wait with a count of 1; ids given by `records`' own
-- sequence (rows inserted by hand) stay below the batches'.
ALTER TABLE waiting ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
CREATE SEQUENCE record_batches;
SELECT setval('record_batches', (SELECT coalesce(max(id), 0) FROM records) / 65536 + 1);
