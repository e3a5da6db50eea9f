-- es-sqlite read-model registry, format version 2: the generation that
-- serves. A read model version rebuilt to forget a data subject is a new
-- generation of it (see model_0002.sql), swapped in as a new version is.
--
-- Stored formats outlive code: never edit this file once released; add
-- registry_0003.sql instead, and raise REGISTRY_FORMAT in read_models.rs.

ALTER TABLE serving ADD COLUMN generation INTEGER NOT NULL DEFAULT 0
    CHECK (generation >= 0);
