-- es-sqlite read-model file, format version 2: generations, and what the
-- runner needs to forget a data subject.
--
-- Stored formats outlive code: never edit this file once released; add
-- model_0003.sql instead, and raise MODEL_FORMAT in read_models.rs.
--
-- `generation`: a read model version is rebuilt from the first event into
-- a file of a new generation (`<name>.v<version>.g<generation>.db`; 0 is
-- `<name>.v<version>.db`) when it must forget a subject it cannot forget
-- in place, then swapped in like a new version.
--
-- `created_at_head`: the last position of the log when the file was
-- created. Every subject forgotten up to it had lost its keys before the
-- file read its first event: the file never held their data, and the
-- runner passes their `es.subject-forgotten` events by.
--
-- `personal_at`: the position of the first event with personal data the
-- model took (an opened payload holding a `$personal` value); NULL while it
-- has taken none, so a model without personal data is never rebuilt for a
-- forgetting. A file of format 1 gets 0 (unknown: it may hold some).
--
-- `rebuild_for`: set (to the position of the forgetting) when the file is
-- to be replaced by a new generation; it then takes no more events.

ALTER TABLE _es_read_model ADD COLUMN generation INTEGER NOT NULL DEFAULT 0
    CHECK (generation >= 0);
ALTER TABLE _es_read_model ADD COLUMN created_at_head INTEGER NOT NULL DEFAULT 0
    CHECK (created_at_head >= 0);
ALTER TABLE _es_read_model ADD COLUMN personal_at INTEGER
    CHECK (personal_at >= 0);
ALTER TABLE _es_read_model ADD COLUMN rebuild_for INTEGER
    CHECK (rebuild_for >= 1);
