-- es-sqlite schema version 1.
--
-- Stored formats outlive code: never edit this file once released; add
-- 0002_*.sql instead, and raise SCHEMA_VERSION in schema.rs.

-- One row per stream: its aggregate type and current version (its number of
-- events), so the version check of an append is one indexed lookup.
CREATE TABLE streams (
    stream_pk      INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL UNIQUE,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 0)
) STRICT;

-- The log. `position` is the global order ($all): AUTOINCREMENT never reuses
-- a value, and it is assigned inside the single write transaction, so
-- positions are in commit order and never filled in late.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_pk      INTEGER NOT NULL REFERENCES streams (stream_pk),
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_id       BLOB    NOT NULL UNIQUE CHECK (length(event_id) = 16),
    recorded_at    INTEGER NOT NULL,              -- microseconds since 1970-01-01 UTC
    name           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version >= 0),
    payload        TEXT    NOT NULL,              -- JSON
    metadata       TEXT,                          -- JSON, NULL when empty
    checksum       INTEGER NOT NULL,              -- CRC-32 of the row, checked on every read
    UNIQUE (stream_pk, version)
) STRICT;

-- The latest snapshot per stream.
CREATE TABLE snapshots (
    stream_id      TEXT    PRIMARY KEY,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    state          BLOB    NOT NULL,
    taken_at       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Projection checkpoints: the last position each projection handled.
CREATE TABLE checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
