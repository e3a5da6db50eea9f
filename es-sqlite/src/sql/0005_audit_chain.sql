-- es-sqlite schema version 5: the audit chain.
--
-- Stored formats outlive code: never edit this file once released; add
-- 0006_*.sql instead, and raise SCHEMA_VERSION in schema.rs.
--
-- Every event carries `hash`: SHA-256 of its stored bytes and of the hash
-- of the event before it in position order ($all), so an edited, deleted,
-- inserted or reordered row breaks the chain where it was changed. The
-- hashed input (version 1: a tag, the previous hash, then the position,
-- stream id, version, event id, aggregate type, name, schema version,
-- recorded-at, occurred-at, metadata and payload, fixed-size or
-- length-prefixed) is documented in src/chain.rs and in the README. The
-- first event chains from 32 zero bytes.
--
-- SQLite adds a NOT NULL column only with a default: 32 zero bytes, the
-- genesis value, which is no event's hash, so a row that got the default
-- instead of its hash fails verification. The writer always sets
-- the hash, inside the append's transaction.
--
-- Existing events get their hashes here, in position order: SQL has no
-- SHA-256, so before this file runs, in the same transaction, the migration
-- code reads every event and writes each hash into the temporary table
-- `temp.audit_chain (position, hash)`. An event without a row there would
-- get NULL and fail the NOT NULL constraint: the migration fails whole.
-- The update trigger is dropped for the fill and created again as before.

ALTER TABLE events ADD COLUMN hash BLOB NOT NULL
    DEFAULT x'0000000000000000000000000000000000000000000000000000000000000000'
    CHECK (length(hash) = 32);

DROP TRIGGER events_are_never_changed;

UPDATE events SET hash = (SELECT c.hash FROM temp.audit_chain c WHERE c.position = events.position);

CREATE TRIGGER events_are_never_changed BEFORE UPDATE ON events
BEGIN
    SELECT RAISE (ABORT, 'events are append-only: an event is never changed');
END;

DROP TABLE temp.audit_chain;
