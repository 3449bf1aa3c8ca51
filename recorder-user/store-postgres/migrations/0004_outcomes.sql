-- What the console and `recorder sessions` filter on: each record's outcome (bit 1: a failed
-- action, bit 2: a gap it reports; see recorder-record's `completeness`), summed per session,
-- and the gaps reported for no session, which may concern every session of their host (and
-- identity) running at their time. Records stored before this migration count as neither.
ALTER TABLE records ADD COLUMN outcome SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN gaps BIGINT NOT NULL DEFAULT 0;
CREATE TABLE host_gaps (
    log_index BIGINT PRIMARY KEY,
    host      TEXT NOT NULL,
    identity  TEXT NOT NULL,
    time_ns   BIGINT NOT NULL
);
CREATE INDEX host_gaps_at ON host_gaps (host, time_ns);
