-- es-postgres schema version 1.
--
-- Stored formats outlive code: never edit this file once released; add
-- 0002_*.sql instead and list it in schema.rs.

-- One row per stream: its aggregate type and current version (its number
-- of events), so the version check of an append is one indexed lookup.
CREATE TABLE es_streams (
    stream_id      text   PRIMARY KEY,
    aggregate_type text   NOT NULL,
    version        bigint NOT NULL CHECK (version >= 0)
);

-- The log. `position` is the global order ($all). Positions are not a
-- sequence (a rolled-back sequence value leaves a gap): each write
-- transaction takes the next ones from `es_head`, whose row it holds
-- locked until it commits, so positions are gapless and in commit order.
CREATE TABLE es_events (
    position       bigint  PRIMARY KEY CHECK (position >= 1),
    stream_id      text    NOT NULL REFERENCES es_streams (stream_id),
    version        bigint  NOT NULL CHECK (version >= 1),
    event_id       uuid    NOT NULL UNIQUE,
    recorded_at    bigint  NOT NULL,            -- microseconds since 1970-01-01 UTC
    occurred_at    bigint,                      -- the same; NULL when equal to recorded_at
    name           text    NOT NULL,
    schema_version integer NOT NULL CHECK (schema_version >= 0),
    payload        text    NOT NULL,            -- JSON, byte for byte as appended
    metadata       text,                        -- JSON, NULL when empty
    correlation_id uuid,                        -- the metadata's, for read_correlated
    UNIQUE (stream_id, version)
);
CREATE INDEX es_events_correlation ON es_events (correlation_id, position)
    WHERE correlation_id IS NOT NULL;

-- The last position written: one row, locked by each write transaction.
CREATE TABLE es_head (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    position bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO es_head (one, position) VALUES (true, 0);

-- How many events of each kind are stored: what a deploy check reads.
CREATE TABLE es_event_types (
    aggregate_type text    NOT NULL,
    name           text    NOT NULL,
    schema_version integer NOT NULL,
    count          bigint  NOT NULL CHECK (count >= 0),
    PRIMARY KEY (aggregate_type, name, schema_version)
);

-- The latest snapshot per stream.
CREATE TABLE es_snapshots (
    stream_id      text    PRIMARY KEY,
    aggregate_type text    NOT NULL,
    version        bigint  NOT NULL,
    schema_version integer NOT NULL,
    state          bytea   NOT NULL,
    taken_at       bigint  NOT NULL
);

-- Projection checkpoints: the last position each projection handled.
CREATE TABLE es_checkpoints (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);
