-- es-sqlite schema version 2: fewer pages per commit, and business time.
--
-- Stored formats outlive code: never edit this file once released; add
-- 0003_*.sql instead, and raise SCHEMA_VERSION in schema.rs.
--
-- What changes, and why:
-- * `events.position` loses AUTOINCREMENT. AUTOINCREMENT exists so a rowid
--   is never reused after the row with the largest one is deleted, and costs
--   a write to `sqlite_sequence` (one more page) on every commit. Here rows
--   are never deleted or changed: the two triggers below refuse it. So the
--   next position, one more than the largest, is always larger than every
--   position ever committed. (The writer also refuses, as corruption, a
--   position that is not larger than the last one it saw: SQLite picks a
--   random rowid once the largest is 2^63 - 1.)
-- * `streams.version` goes: the UNIQUE (stream_pk, version) index already
--   knows a stream's last version (`max(version)` reads one index entry),
--   and updating the row cost another page on every commit.
-- * `events.occurred_at`: when the event happened in the business's world,
--   set by callers for imports and late facts; NULL means "when it was
--   recorded". Rows written by schema 1 have NULL, and their checksums stay
--   valid: the checksum covers occurred_at only when it is set.
--
-- The tables are rebuilt (SQLite cannot drop AUTOINCREMENT in place), keeping
-- every stream key and position, so every checksum still holds. The caller
-- runs this with foreign keys off and checks them before committing.

CREATE TABLE new_streams (
    stream_pk      INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL UNIQUE,
    aggregate_type TEXT    NOT NULL
) STRICT;

INSERT INTO new_streams (stream_pk, stream_id, aggregate_type)
    SELECT stream_pk, stream_id, aggregate_type FROM streams;

-- The log. `position` is the global order ($all), assigned inside the single
-- write transaction, so positions are in commit order and never filled in
-- late.
CREATE TABLE new_events (
    position       INTEGER PRIMARY KEY,
    stream_pk      INTEGER NOT NULL REFERENCES new_streams (stream_pk),
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_id       BLOB    NOT NULL UNIQUE CHECK (length(event_id) = 16),
    recorded_at    INTEGER NOT NULL,              -- microseconds since 1970-01-01 UTC, the store's clock
    occurred_at    INTEGER,                       -- microseconds, business time; NULL: recorded_at
    name           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version >= 0),
    payload        TEXT    NOT NULL,              -- JSON
    metadata       TEXT,                          -- JSON, NULL when empty
    checksum       INTEGER NOT NULL,              -- CRC-32 of the row, checked on every read
    UNIQUE (stream_pk, version)
) STRICT;

INSERT INTO new_events (position, stream_pk, version, event_id, recorded_at, occurred_at, name,
                        schema_version, payload, metadata, checksum)
    SELECT position, stream_pk, version, event_id, recorded_at, NULL, name,
           schema_version, payload, metadata, checksum
    FROM events ORDER BY position;

DROP TABLE events;
DROP TABLE streams;
DELETE FROM sqlite_sequence;
ALTER TABLE new_streams RENAME TO streams;
ALTER TABLE new_events RENAME TO events;

-- The log is append-only.
CREATE TRIGGER events_are_never_changed BEFORE UPDATE ON events
BEGIN
    SELECT RAISE (ABORT, 'events are append-only: an event is never changed');
END;

CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
BEGIN
    SELECT RAISE (ABORT, 'events are append-only: an event is never deleted');
END;
