-- es-sqlite read-model file, format version 1: the runner's tables beside
-- the model's own. One file per read model and version
-- (`<name>.v<version>.db`).
--
-- Stored formats outlive code: never edit this file once released; add
-- model_0002.sql instead, and raise MODEL_FORMAT in read_models.rs.

-- One row: which read model and version the file holds, and its checkpoint
-- (the position of the last event it has taken), committed in the same
-- transaction as the table changes of the events up to it.
CREATE TABLE _es_read_model (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    position   INTEGER NOT NULL CHECK (position >= 0),
    created_at INTEGER NOT NULL               -- microseconds since 1970-01-01 UTC
) STRICT;

-- Events a handler refused, parked by `OnError::Park`, until a retry takes
-- them.
CREATE TABLE _es_parked (
    position   INTEGER PRIMARY KEY,
    stream_id  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    attempts   INTEGER NOT NULL CHECK (attempts >= 1),
    parked_at  INTEGER NOT NULL
) STRICT;
