-- es-sqlite read-model registry (`serving.db` in the directory of read
-- models), format version 1: which version of each read model serves
-- queries. A rebuild swaps it in one transaction.
--
-- Stored formats outlive code: never edit this file once released; add
-- registry_0002.sql instead, and raise REGISTRY_FORMAT in read_models.rs.

CREATE TABLE serving (
    name    TEXT    PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 1),
    since   INTEGER NOT NULL                   -- microseconds since 1970-01-01 UTC
) STRICT, WITHOUT ROWID;
