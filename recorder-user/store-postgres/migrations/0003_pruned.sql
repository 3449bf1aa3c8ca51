-- Segments of the log deleted by retention (fixed runs of log indexes): the signed ledger entry
-- of each, as JSON. Their records' rows are deleted; their places in `placed` (log index, chain
-- link, leaf hash) stay, so the tree, the chains and every proof of the other records hold.
CREATE TABLE pruned (
    segment     BIGINT PRIMARY KEY,
    first_index BIGINT NOT NULL UNIQUE,
    end_index   BIGINT NOT NULL,
    entry       TEXT NOT NULL
);
