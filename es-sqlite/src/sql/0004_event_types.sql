-- es-sqlite schema version 4: a summary of the event types stored.
--
-- Stored formats outlive code: never edit this file once released; add
-- 0005_*.sql instead, and raise SCHEMA_VERSION in schema.rs.
--
-- One row per (aggregate type, name, schema version) ever appended, with
-- how many events have it: what a deploy check compares with the event
-- types a program decodes, without reading a payload. The writer keeps it
-- in each append's transaction (one row per type a batch appends).

CREATE TABLE event_types (
    aggregate_type TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    count          INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (aggregate_type, name, schema_version)
) STRICT, WITHOUT ROWID;

INSERT INTO event_types (aggregate_type, name, schema_version, count)
    SELECT s.aggregate_type, e.name, e.schema_version, count(*)
    FROM events e JOIN streams s ON s.stream_pk = e.stream_pk
    GROUP BY s.aggregate_type, e.name, e.schema_version;
