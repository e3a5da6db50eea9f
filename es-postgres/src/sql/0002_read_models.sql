-- es-postgres schema version 2: read models.
--
-- Stored formats outlive code: never edit this file once released.

-- One row per read model: the version of its tables, the position of the
-- last event it took (committed in the transaction that changed its
-- tables), and whether it ever took an event with personal data.
CREATE TABLE es_read_models (
    name     text    PRIMARY KEY,
    version  integer NOT NULL CHECK (version >= 1),
    position bigint  NOT NULL CHECK (position >= 0),
    personal boolean NOT NULL DEFAULT false
);
