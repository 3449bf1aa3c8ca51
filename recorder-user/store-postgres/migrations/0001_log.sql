-- The log in PostgreSQL. Plain SQL that CockroachDB and YugabyteDB also accept, except where
-- a comment says otherwise. Applied once, in a transaction, by the first collector to start.

-- Every record as an agent sent it, inserted by ingest and committed before the agent is
-- acknowledged, and never updated afterwards (grant the collectors INSERT and SELECT only).
-- The unique (host, boot, seq) is the deduplication across every collector of the group.
CREATE TABLE records (
    id         BIGSERIAL PRIMARY KEY,
    host       TEXT NOT NULL,
    boot       TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    line       BYTEA NOT NULL,
    session    TEXT NOT NULL,
    identity   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    time_ns    BIGINT NOT NULL,
    namespace  TEXT NOT NULL,
    pod        TEXT NOT NULL,
    UNIQUE (host, boot, seq)
);
-- A session's records (replay).
CREATE INDEX records_session ON records (host, session, id);

-- Records stored but not yet placed in the log, oldest first: written in the same statement as
-- the record, deleted by the sequencer in the transaction that places it. Small: it holds what
-- arrived since the last round.
CREATE TABLE waiting (
    id BIGINT PRIMARY KEY
);

-- The log: each placed record's index, its hash-chain link (the leaf hash of its stream's
-- previous record) and its Merkle leaf hash, written once by the sequencer.
CREATE TABLE placed (
    log_index BIGINT PRIMARY KEY,
    record_id BIGINT NOT NULL UNIQUE,
    prev      BYTEA NOT NULL,
    leaf      BYTEA NOT NULL
);

-- The Merkle tree's nodes above the leaves (level >= 1; level 0 is placed.leaf): node
-- (level, idx) is the tree head of leaves idx*2^level .. (idx+1)*2^level - 1, written once both
-- children exist. A proof reads O(log n) of them.
CREATE TABLE tree_nodes (
    level SMALLINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Each (host, boot) stream's end: the sequencer's hash-chain state.
CREATE TABLE streams (
    host      TEXT NOT NULL,
    boot      TEXT NOT NULL,
    last_seq  BIGINT NOT NULL,
    last_leaf BYTEA NOT NULL,
    PRIMARY KEY (host, boot)
);

-- One row: the log's size, its frontier (the peaks, concatenated) and the tree head signed by
-- the sequencer in the same transaction that placed the records, so no record can be added
-- after the signed head without the signing key.
CREATE TABLE log_head (
    id        SMALLINT PRIMARY KEY CHECK (id = 1),
    tree_size BIGINT NOT NULL,
    peaks     BYTEA NOT NULL,
    root      TEXT NOT NULL,
    time      TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- The published checkpoints (the same as checkpoints.jsonl of the embedded store).
CREATE TABLE checkpoints (
    tree_size BIGINT PRIMARY KEY,
    root      TEXT NOT NULL,
    time      TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- The group's signing key, public half: a collector with another key refuses to start.
CREATE TABLE signing_key (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    public_key TEXT NOT NULL
);

-- Who sequences: a lease renewed by its holder. Correctness never depends on it (each round
-- locks log_head), it only keeps the collectors from contending.
CREATE TABLE sequencer_lease (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    holder  TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);

-- Session summaries, kept by the sequencer as it places records.
CREATE TABLE sessions (
    host       TEXT NOT NULL,
    session    TEXT NOT NULL,
    identity   TEXT NOT NULL,
    first_ns   BIGINT NOT NULL,
    last_ns    BIGINT NOT NULL,
    commands   BIGINT NOT NULL,
    records    BIGINT NOT NULL,
    namespace  TEXT NOT NULL,
    pod        TEXT NOT NULL,
    PRIMARY KEY (host, session)
);
CREATE INDEX sessions_recent ON sessions (last_ns DESC);
