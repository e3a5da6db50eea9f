-- es-sqlite schema version 3: inline read models.
--
-- Stored formats outlive code: never edit this file once released; add
-- 0004_*.sql instead, and raise SCHEMA_VERSION in schema.rs.
--
-- An inline read model keeps its tables in this file and is updated inside
-- the append's own transaction. One row per model: the version its tables
-- were built by, the position of the last event it has taken (moved in the
-- same transaction as its tables), and the schema objects its `create`
-- made (a JSON array of [type, name] pairs), dropped when a new version
-- rebuilds it.

CREATE TABLE inline_read_models (
    name     TEXT    PRIMARY KEY,
    version  INTEGER NOT NULL CHECK (version >= 1),
    position INTEGER NOT NULL CHECK (position >= 0),
    objects  TEXT    NOT NULL
) STRICT, WITHOUT ROWID;
