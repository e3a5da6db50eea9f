//! Data already on disk that is wrong (RELIABILITY §5.2 and T14: "a
//! corrupted or hostile DB file is an input"). Rows are damaged with raw SQL
//! in a database that `SqliteStore::open` created, then read back through
//! the `Repository`, `read_stream` and `read_all`:
//!
//! - payloads that do not decode, unknown event names and schema versions
//!   newer than the code are `Error::Decode` naming the stream and version;
//! - columns that do not have the shape the schema promises are
//!   `Error::Corrupt`, never a panic;
//! - files that are not es event stores (random bytes, text, truncated
//!   databases, other applications' databases, newer schemas) are typed
//!   `OpenError`s and are left byte for byte unchanged;
//! - a read-only database file can still be read, and appends to it fail
//!   with `Error::ReadOnly`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use es_core::prelude::*;
use es_core::store::next;
use es_core::{DecodeError, Error, EventStream, NewEvent, ReadRange, RecordedEvent, Uuid};
use es_sqlite::{OpenError, SqliteStore};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The domain: a tally.
// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "added")]
struct Added {
    n: i64,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "tally", events(Added))]
struct Tally {
    total: i64,
    count: u32,
}

impl Apply<Added> for Tally {
    fn apply(&mut self, e: &Added) {
        self.total += e.n;
        self.count += 1;
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// A raw connection to a database file, outside the store, as a program
/// that damages it would have: not bound by the store's append-only
/// triggers.
fn raw(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).expect("a raw connection opens");
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    common::drop_append_only_triggers(&conn);
    conn
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

/// Every item of an event stream, stopping after the first error (and
/// checking that the stream ends after it).
async fn collect(mut events: EventStream) -> Vec<Result<RecordedEvent, Error>> {
    let mut out = Vec::new();
    while let Some(item) = next(&mut events).await {
        let failed = item.is_err();
        out.push(item);
        if failed {
            assert!(
                next(&mut events).await.is_none(),
                "a stream ends after its error"
            );
            break;
        }
        assert!(out.len() < 100_000, "runaway stream");
    }
    out
}

/// A store at `dir/events.db` with two good tallies: `tally-a` (1 event)
/// and `tally-b` (1 event). The store is dropped before returning.
async fn populated(dir: &Path) -> PathBuf {
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    let tallies = Repository::<Tally, _>::new(store);
    tallies.execute("a", |_| Added { n: 1 }).await.unwrap();
    tallies.execute("b", |_| Added { n: 10 }).await.unwrap();
    db
}

/// Opens a damaged file as the read paths see it. The default open checks
/// the file's structure (`Verify::Full`) and refuses some damage outright
/// (a `CHECK` broken, an index that disagrees with its table): then this
/// says so, and opens without the check, so the checks of the reads (the
/// checksums, versions and positions) are tested on every damage, as they
/// are when damage happens after a store is opened.
fn open_damaged(db: &Path) -> SqliteStore {
    match SqliteStore::open(db) {
        Ok(store) => store,
        Err(OpenError::Corrupt { detail, .. }) => {
            assert!(!detail.is_empty());
            SqliteStore::options()
                .verify(es_sqlite::Verify::Off)
                .open(db)
                .unwrap()
        }
        Err(other) => panic!("a damaged file gave {other:?}"),
    }
}

/// Appends one row to `stream` with raw SQL, bypassing every check of the
/// store; returns its version.
fn raw_append(
    conn: &rusqlite::Connection,
    stream: &str,
    name: &str,
    schema_version: i64,
    payload: &str,
) -> i64 {
    let (pk, version): (i64, i64) = conn
        .query_row(
            "SELECT s.stream_pk, (SELECT max(version) FROM events e WHERE e.stream_pk = s.stream_pk) \
             FROM streams s WHERE stream_id = ?1",
            [stream],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let version = version + 1;
    let id = Uuid::now_v7();
    let sum = common::row_checksum(
        pk,
        version,
        id.as_bytes(),
        0,
        name.as_bytes(),
        schema_version,
        payload.as_bytes(),
        None,
    );
    conn.execute(
        "INSERT INTO events (stream_pk, version, event_id, recorded_at, name, schema_version, payload, checksum) \
         VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            pk,
            version,
            id.as_bytes().as_slice(),
            name,
            schema_version,
            payload,
            sum
        ],
    )
    .unwrap();
    version
}

/// The position of the event at `version` of `stream`.
fn position_of(conn: &rusqlite::Connection, stream: &str, version: i64) -> i64 {
    conn.query_row(
        "SELECT e.position FROM events e JOIN streams s USING (stream_pk) \
         WHERE s.stream_id = ?1 AND e.version = ?2",
        rusqlite::params![stream, version],
        |r| r.get(0),
    )
    .unwrap()
}

/// Checks that `error` is a decode error of `tally-b` at version 2, and
/// returns its source.
fn decode_error_of_b2(error: Error) -> DecodeError {
    match error {
        Error::Decode {
            stream: s,
            version,
            source,
        } => {
            assert_eq!(s.as_str(), "tally-b", "the error names the damaged stream");
            assert_eq!(version, 2, "the error names the damaged version");
            source
        }
        other => panic!("expected Error::Decode of tally-b@2, got {other:?}"),
    }
}

/// Appends a raw second event to `tally-b`, then checks every way of reading
/// it: the repository, `read_stream` and `read_all` (decoding each event),
/// while `tally-a` still loads. Returns the decode errors seen (repository
/// load, history, read_stream, read_all).
async fn second_event_of_b_fails_to_decode(
    name: &str,
    schema_version: i64,
    payload: &str,
    damage: Option<&str>,
) -> Vec<DecodeError> {
    let dir = tempfile::tempdir().unwrap();
    let db = populated(dir.path()).await;
    {
        let conn = raw(&db);
        let version = raw_append(&conn, "tally-b", name, schema_version, payload);
        assert_eq!(version, 2);
        if let Some(sql) = damage {
            // Written so by a program, not damaged: the checksum matches.
            let position = position_of(&conn, "tally-b", 2);
            conn.execute(sql, [position]).unwrap();
            common::reseal(&conn, position);
        }
    }
    let store = open_damaged(&db);
    let tallies = Repository::<Tally, _>::new(store.clone());
    let mut errors = Vec::new();

    // The clean stream is unaffected.
    let a = tallies.load("a").await.unwrap();
    assert_eq!((a.total, a.version), (1, 1));

    // The repository: load, history, execute, all name tally-b@2; reading
    // back to before the bad event still works.
    errors.push(decode_error_of_b2(tallies.load("b").await.unwrap_err()));
    // The history keeps the trail: the event it cannot decode is there
    // with its stored payload and the reason.
    let mut history = tallies.history("b").await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].event.event().is_some());
    match history.pop().map(|e| (e.version, e.event)) {
        Some((
            2,
            Decoded::Undecodable {
                payload: stored,
                error,
            },
        )) => {
            assert_eq!(stored.as_str(), payload);
            errors.push(std::sync::Arc::try_unwrap(error).unwrap());
        }
        other => panic!("expected the raw second event, got {other:?}"),
    }
    match tallies.execute("b", |_| Added { n: 1 }).await {
        Err(ExecuteError::Store(e)) => drop(decode_error_of_b2(e)),
        other => panic!("execute over a bad event: {other:?}"),
    }
    assert_eq!(tallies.load_at("b", 1).await.unwrap().total, 10);
    assert_eq!(store.stream_version(&stream("tally-b")).await.unwrap(), 2);

    // The store hands the stored bytes out as they are; decoding them is
    // the typed error.
    let read = collect(store.read_stream(&stream("tally-b"), ReadRange::all())).await;
    assert_eq!(read.len(), 2);
    let second = read[1].as_ref().unwrap();
    assert_eq!((second.version, second.name.as_str()), (2, name));
    assert!(read[0].as_ref().unwrap().decode::<TallyEvent>().is_ok());
    errors.push(decode_error_of_b2(
        second.decode::<TallyEvent>().unwrap_err(),
    ));

    let all = collect(store.read_all(0)).await;
    assert_eq!(all.len(), 3);
    let mut failures = 0;
    for event in all {
        let event = event.unwrap();
        match event.decode::<TallyEvent>() {
            Ok(_) => assert_ne!((event.stream_id.as_str(), event.version), ("tally-b", 2)),
            Err(e) => {
                failures += 1;
                errors.push(decode_error_of_b2(e));
            }
        }
    }
    assert_eq!(failures, 1, "exactly the damaged event fails to decode");
    errors
}

// ---------------------------------------------------------------------------
// Events that do not decode: Error::Decode with the stream and version.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn t14_payload_that_does_not_match_its_type_is_a_decode_error() {
    for payload in [r#"{"n":"one"}"#, "not json at all", "{", "", r#"{"n":1"#] {
        let errors = second_event_of_b_fails_to_decode("added", 1, payload, None).await;
        for error in errors {
            assert!(
                matches!(
                    error,
                    DecodeError::Payload {
                        name: "added",
                        version: 1,
                        ..
                    }
                ),
                "payload {payload:?}: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn t14_payload_that_is_not_utf8_is_corrupt() {
    // A TEXT column may hold bytes that are not UTF-8 (CAST of a blob), even
    // with a matching checksum. A payload is UTF-8 text by its type, so the
    // store refuses to hand it out: `Error::Corrupt` naming the stream and
    // version on every way of reading, after the events before it.
    let dir = tempfile::tempdir().unwrap();
    let db = populated(dir.path()).await;
    {
        let conn = raw(&db);
        assert_eq!(raw_append(&conn, "tally-b", "added", 1, "{}"), 2);
        let position = position_of(&conn, "tally-b", 2);
        conn.execute(
            "UPDATE events SET payload = CAST(X'7B226E223AFF7D' AS TEXT) WHERE position = ?1",
            [position],
        )
        .unwrap();
        common::reseal(&conn, position);
    }
    let store = open_damaged(&db);
    let tallies = Repository::<Tally, _>::new(store.clone());
    let what = "a payload that is not UTF-8";
    for detail in [
        expect_corrupt(what, "load", tallies.load("b").await),
        expect_corrupt(what, "history", tallies.history("b").await),
    ] {
        assert!(
            detail.contains("version 2") && detail.contains("tally-b"),
            "{detail}"
        );
    }
    let read = collect(store.read_stream(&stream("tally-b"), ReadRange::all())).await;
    check_good_then_corrupt(what, "read_stream", read, &[("tally-b", 1)]);
    let all = collect(store.read_all(0)).await;
    check_good_then_corrupt(what, "read_all", all, &[("tally-a", 1), ("tally-b", 1)]);
    assert_eq!(tallies.load_at("b", 1).await.unwrap().total, 10);
}

#[tokio::test]
async fn t14_unknown_event_name_is_a_decode_error() {
    let errors = second_event_of_b_fails_to_decode("subtracted", 1, r#"{"n":1}"#, None).await;
    for error in errors {
        match error {
            DecodeError::UnknownEvent { name, version: 1 } => assert_eq!(name, "subtracted"),
            other => panic!("expected an unknown event, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn t14_schema_version_newer_than_the_code_is_a_decode_error() {
    let errors = second_event_of_b_fails_to_decode("added", 7, r#"{"n":1}"#, None).await;
    for error in errors {
        assert!(
            matches!(
                error,
                DecodeError::VersionTooNew {
                    name: "added",
                    version: 7,
                    known: 1
                }
            ),
            "{error:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Damaged columns: Error::Corrupt, never a panic.
// ---------------------------------------------------------------------------

/// One way to damage the event at version 2 of `tally-b` (at position `?1`),
/// with raw SQL (CHECK constraints off).
struct Damage {
    what: &'static str,
    sql: &'static str,
}

const DAMAGES: &[Damage] = &[
    Damage {
        what: "business time set by hand (back-dated)",
        sql: "UPDATE events SET occurred_at = 12345 WHERE position = ?1",
    },
    Damage {
        what: "recorded time changed by hand",
        sql: "UPDATE events SET recorded_at = recorded_at - 1 WHERE position = ?1",
    },
    Damage {
        what: "event id of 15 bytes",
        sql: "UPDATE events SET event_id = zeroblob(15) WHERE position = ?1",
    },
    Damage {
        what: "event id of 17 bytes",
        sql: "UPDATE events SET event_id = X'0102030405060708090A0B0C0D0E0F1011' WHERE position = ?1",
    },
    Damage {
        what: "empty event id",
        sql: "UPDATE events SET event_id = X'' WHERE position = ?1",
    },
    Damage {
        what: "metadata that is not JSON",
        sql: r#"UPDATE events SET metadata = '{"actor":' WHERE position = ?1"#,
    },
    Damage {
        what: "metadata JSON of the wrong shape",
        sql: "UPDATE events SET metadata = '[1,2,3]' WHERE position = ?1",
    },
    Damage {
        what: "metadata with a field of the wrong type",
        sql: r#"UPDATE events SET metadata = '{"actor":5}' WHERE position = ?1"#,
    },
    Damage {
        what: "metadata that is not UTF-8",
        sql: "UPDATE events SET metadata = CAST(X'7B22616374F72223227D' AS TEXT) WHERE position = ?1",
    },
    Damage {
        what: "schema version over u32",
        sql: "UPDATE events SET schema_version = 1 << 40 WHERE position = ?1",
    },
    Damage {
        what: "huge schema version",
        sql: "UPDATE events SET schema_version = 9223372036854775807 WHERE position = ?1",
    },
    Damage {
        what: "negative schema version",
        sql: "UPDATE events SET schema_version = -1 WHERE position = ?1",
    },
    Damage {
        what: "event name that is not UTF-8",
        sql: "UPDATE events SET name = CAST(X'6164C364FF' AS TEXT) WHERE position = ?1",
    },
];

/// Stores three events in `tally-b`, damages the second with `damage`, and
/// returns the opened store.
async fn damaged(dir: &Path, damage: &Damage) -> SqliteStore {
    let db = populated(dir).await;
    {
        let conn = raw(&db);
        raw_append(&conn, "tally-b", "added", 1, r#"{"n":2}"#);
        raw_append(&conn, "tally-b", "added", 1, r#"{"n":3}"#);
        conn.pragma_update(None, "ignore_check_constraints", true)
            .unwrap();
        let position = position_of(&conn, "tally-b", 2);
        let changed = conn.execute(damage.sql, [position]).unwrap();
        assert_eq!(changed, 1, "{}", damage.what);
    }
    open_damaged(&db)
}

fn expect_corrupt<T: std::fmt::Debug>(what: &str, way: &str, result: Result<T, Error>) -> String {
    match result {
        Err(Error::Corrupt { detail }) => detail,
        other => panic!("{what}, {way}: expected Error::Corrupt, got {other:?}"),
    }
}

/// `items` is a prefix of the good events `before` (stream, version), then
/// one `Error::Corrupt`.
fn check_good_then_corrupt(
    what: &str,
    way: &str,
    mut items: Vec<Result<RecordedEvent, Error>>,
    before: &[(&str, u64)],
) {
    let last = items
        .pop()
        .unwrap_or_else(|| panic!("{what}, {way}: no error"));
    expect_corrupt(what, way, last);
    assert!(items.len() <= before.len(), "{what}, {way}: {items:?}");
    for (item, (id, version)) in items.into_iter().zip(before) {
        let event = item.unwrap();
        assert_eq!((event.stream_id.as_str(), event.version), (*id, *version));
    }
}

/// Every damage of `DAMAGES` in its own database: the events stored before
/// the damaged one are delivered before the error.
#[tokio::test]
async fn t14_events_before_a_damaged_row_are_delivered() {
    for damage in DAMAGES {
        let dir = tempfile::tempdir().unwrap();
        let store = damaged(dir.path(), damage).await;
        let what = damage.what;
        let read = collect(store.read_stream(&stream("tally-b"), ReadRange::all())).await;
        assert_eq!(read.len(), 2, "{what}, read_stream: {read:?}");
        check_good_then_corrupt(what, "read_stream", read, &[("tally-b", 1)]);
        let all = collect(store.read_all(0)).await;
        assert_eq!(all.len(), 3, "{what}, read_all: {all:?}");
        check_good_then_corrupt(what, "read_all", all, &[("tally-a", 1), ("tally-b", 1)]);
    }
}

#[tokio::test]
async fn t14_damaged_columns_are_corrupt_errors() {
    for damage in DAMAGES {
        let dir = tempfile::tempdir().unwrap();
        let store = damaged(dir.path(), damage).await;
        let what = damage.what;
        let tallies = Repository::<Tally, _>::new(store.clone());

        // read_stream and read_all: good events (at most those before the
        // damage), then the typed error, then the end.
        let read = collect(store.read_stream(&stream("tally-b"), ReadRange::all())).await;
        check_good_then_corrupt(what, "read_stream", read, &[("tally-b", 1)]);
        let all = collect(store.read_all(0)).await;
        check_good_then_corrupt(what, "read_all", all, &[("tally-a", 1), ("tally-b", 1)]);

        // The repository.
        expect_corrupt(what, "load", tallies.load("b").await);
        expect_corrupt(what, "history", tallies.history("b").await);
        assert_eq!(tallies.load("a").await.unwrap().total, 1, "{what}");
        assert_eq!(tallies.load_at("b", 1).await.unwrap().total, 10, "{what}");

        // Reading from past the damage works; having met damage, the store
        // refuses appends, to other streams too (`damage.rs`).
        let after = collect(store.read_stream(&stream("tally-b"), ReadRange::starting_at(3))).await;
        assert_eq!(after.len(), 1, "{what}");
        assert!(after[0].is_ok(), "{what}: {after:?}");
        let refused = tallies.execute("c", |_| Added { n: 5 }).await;
        assert!(
            matches!(
                refused,
                Err(ExecuteError::Store(Error::WritesRefused { .. }))
            ),
            "{what}: {refused:?}"
        );
    }
}

/// The doc of the reader's `event` function promises that a damaged row
/// is an `Error::Corrupt` naming the stream and version.
#[tokio::test]
async fn t14_corrupt_errors_name_the_stream_and_version() {
    let mut anonymous = Vec::new();
    for damage in DAMAGES {
        let dir = tempfile::tempdir().unwrap();
        let store = damaged(dir.path(), damage).await;
        let mut read = collect(store.read_stream(&stream("tally-b"), ReadRange::all())).await;
        let detail = expect_corrupt(damage.what, "read_stream", read.pop().unwrap());
        if !(detail.contains("tally-b") && detail.contains("version 2")) {
            anonymous.push(format!("{}: {detail:?}", damage.what));
        }
    }
    assert!(
        anonymous.is_empty(),
        "details naming neither the stream nor the version: {anonymous:#?}"
    );
}

#[tokio::test]
async fn t14_damaged_stream_rows_are_corrupt_errors() {
    // A stream id that `StreamId::new` refuses, and an aggregate type that
    // is not UTF-8: `read_all` reports them.
    for (what, sql) in [
        (
            "empty stream id",
            "UPDATE streams SET stream_id = '' WHERE stream_id = 'tally-b'",
        ),
        (
            "stream id with a control character",
            "UPDATE streams SET stream_id = 'tally-' || char(10) || 'b' WHERE stream_id = 'tally-b'",
        ),
        (
            "stream id over 256 bytes",
            "UPDATE streams SET stream_id = 'tally-' || hex(zeroblob(200)) WHERE stream_id = 'tally-b'",
        ),
        (
            "aggregate type that is not UTF-8",
            "UPDATE streams SET aggregate_type = CAST(X'74616C6CFF' AS TEXT) WHERE stream_id = 'tally-b'",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = populated(dir.path()).await;
        assert_eq!(raw(&db).execute(sql, []).unwrap(), 1, "{what}");
        let store = open_damaged(&db);
        let all = collect(store.read_all(0)).await;
        check_good_then_corrupt(what, "read_all", all, &[("tally-a", 1)]);
    }

    // A negative stream version (its last event's): stream_version reports
    // it, and an append to the stream fails typed without writing.
    let dir = tempfile::tempdir().unwrap();
    let db = populated(dir.path()).await;
    {
        let conn = raw(&db);
        conn.pragma_update(None, "ignore_check_constraints", true)
            .unwrap();
        let changed = conn
            .execute(
                "UPDATE events SET version = -3 WHERE stream_pk = \
                 (SELECT stream_pk FROM streams WHERE stream_id = 'tally-b')",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let store = open_damaged(&db);
    let b = stream("tally-b");
    let before = store.last_position().await.unwrap();
    let added = || vec![NewEvent::new("tally", "added", 1, r#"{"n":1}"#)];
    let appended = store.append(&b, ExpectedVersion::Any, added()).await;
    assert!(
        matches!(appended, Err(Error::Corrupt { .. })),
        "an append to a stream with a negative version: {appended:?}"
    );
    expect_corrupt(
        "negative stream version",
        "stream_version",
        store.stream_version(&b).await,
    );
    // The writer met the damage: every later write is refused.
    let appended = store.append(&b, ExpectedVersion::Any, added()).await;
    assert!(
        matches!(appended, Err(Error::WritesRefused { .. })),
        "{appended:?}"
    );
    assert_eq!(store.last_position().await.unwrap(), before);
}

#[tokio::test]
async fn t14_damaged_versions_and_positions_are_typed_errors() {
    // The middle event of three moved to a version or position the schema
    // allows (with CHECKs off) but the contract does not: folding notices
    // the gap.
    for (what, sql) in [
        (
            "version 0",
            "UPDATE events SET version = 0 WHERE position = ?1",
        ),
        (
            "negative version",
            "UPDATE events SET version = -2 WHERE position = ?1",
        ),
        (
            "huge version",
            "UPDATE events SET version = 9223372036854775807 WHERE position = ?1",
        ),
        (
            "negative position",
            "UPDATE events SET position = -7 WHERE position = ?1",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = damaged(dir.path(), &Damage { what, sql }).await;
        let tallies = Repository::<Tally, _>::new(store.clone());
        let load = tallies.load("b").await;
        if what == "negative position" {
            // Folding follows versions, not positions: the state is whole.
            // Reading the events (below) reports the damage.
            let loaded = load.unwrap();
            assert_eq!((loaded.total, loaded.version), (15, 3), "{what}");
        } else {
            assert!(
                matches!(load, Err(Error::Corrupt { .. })),
                "{what}: load gave {load:?}"
            );
        }
        // read_all and read_stream give Ok events or typed errors.
        for item in collect(store.read_all(0)).await {
            if let Err(e) = item {
                assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e:?}");
            }
        }
        let read = collect(store.read_stream(&stream("tally-b"), ReadRange::all())).await;
        for item in &read {
            if let Err(e) = item {
                assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e:?}");
            }
        }
        if what == "negative position" {
            assert!(
                read.iter().any(Result::is_err),
                "{what}: reading the stream reports the damage"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Files that are not es event stores: typed OpenError, file untouched.
// ---------------------------------------------------------------------------

/// The names and contents of every file in `dir`, sorted.
fn snapshot_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Opens `db` with the store; the directory must be byte for byte the same
/// afterwards (no file changed, created or removed).
fn open_untouched(db: &Path) -> Result<SqliteStore, OpenError> {
    let dir = db.parent().unwrap();
    let before = snapshot_dir(dir);
    let result = SqliteStore::open(db);
    if result.is_err() {
        assert_eq!(
            snapshot_dir(dir),
            before,
            "a refused file and its directory are left untouched"
        );
    }
    result
}

/// A quiescent copy of a populated es database at `dir/name`, with no
/// connection open on it: the store's file copied by `VACUUM INTO`.
async fn es_database_copy(dir: &Path, name: &str) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let db = populated(work.path()).await;
    let copy = dir.join(name);
    raw(&db)
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    // `VACUUM INTO` writes a rollback-journal file; the store's files are in
    // WAL mode (recorded in the header), so switch the copy back.
    let mode: String = raw(&copy)
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(!dir.join(format!("{name}-wal")).exists());
    copy
}

/// A small deterministic generator for file contents.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

#[test]
fn t14_random_bytes_are_not_a_database() {
    for (seed, len) in [
        (1u64, 100usize),
        (2, 4096),
        (3, 65_536),
        (4, 2),
        (5, 99),
        (6, 513),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        std::fs::write(&db, noise(seed, len)).unwrap();
        let result = open_untouched(&db);
        assert!(
            matches!(result, Err(OpenError::NotADatabase { ref path }) if path == &db),
            "{len} random bytes: {result:?}"
        );
    }
}

#[test]
fn t14_one_byte_file_is_not_a_database() {
    for byte in [b'x', b'\n', 0, 0xff] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        std::fs::write(&db, [byte]).unwrap();
        let result = open_untouched(&db);
        assert!(
            matches!(result, Err(OpenError::NotADatabase { .. })),
            "the one-byte file {byte:#04x}: {result:?}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), [byte]);
    }
}

#[test]
fn t14_text_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    std::fs::write(
        &db,
        "# my notes\nthis file is not a database, it is a text file\n".repeat(20),
    )
    .unwrap();
    let result = open_untouched(&db);
    assert!(
        matches!(result, Err(OpenError::NotADatabase { .. })),
        "{result:?}"
    );
}

#[test]
fn t14_sqlite_header_followed_by_garbage_is_refused() {
    // The right 16-byte magic string, then noise: the header is damaged.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(noise(9, 8192 - 16));
    std::fs::write(&db, bytes).unwrap();
    let result = open_untouched(&db);
    assert!(
        matches!(
            result,
            Err(OpenError::NotADatabase { .. } | OpenError::Corrupt { .. })
        ),
        "{result:?}"
    );
}

#[test]
fn t14_an_empty_file_is_refused_unless_a_new_store_is_asked_for() {
    // SQLite treats an empty file as an empty database, and a truncated
    // copy is one: it is refused, untouched, unless a new store is asked
    // for (`empty_file.rs` has the rest).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    std::fs::write(&db, b"").unwrap();
    let result = open_untouched(&db);
    assert!(
        matches!(result, Err(OpenError::EmptyFile { .. })),
        "{result:?}"
    );
    let store = SqliteStore::options().create_new().open(&db).unwrap();
    let s = stream("x-1");
    let done = es_core::blocking::block_on(store.append(
        &s,
        ExpectedVersion::NoStream,
        vec![NewEvent::new("x", "y", 1, "{}")],
    ))
    .unwrap();
    assert_eq!(done.version, 1);
}

#[tokio::test]
async fn t14_truncated_database_is_refused_or_reads_fail_typed() {
    let dir = tempfile::tempdir().unwrap();
    let original = es_database_copy(dir.path(), "original.db").await;
    let bytes = std::fs::read(&original).unwrap();
    assert!(bytes.len() >= 3 * 4096, "the fixture has several pages");
    let mut refused = 0;
    for cut in [
        10,
        50,
        99,
        100,
        1000,
        4096,
        bytes.len() / 2,
        bytes.len() - 4096,
        bytes.len() - 1,
    ] {
        let case = tempfile::tempdir().unwrap();
        let db = case.path().join("events.db");
        std::fs::write(&db, &bytes[..cut]).unwrap();
        match open_untouched(&db) {
            Err(
                OpenError::NotADatabase { .. }
                | OpenError::Corrupt { .. }
                | OpenError::ForeignDatabase { .. },
            ) => refused += 1,
            Err(other) => panic!("cut at {cut}: an unexpected open error {other:?}"),
            Ok(store) => {
                // Whatever survived reads as events or typed errors.
                for item in collect(store.read_all(0)).await {
                    if let Err(e) = item {
                        assert!(matches!(e, Error::Corrupt { .. }), "cut at {cut}: {e:?}");
                    }
                }
                for id in ["tally-a", "tally-b"] {
                    let loaded = Repository::<Tally, _>::new(store.clone())
                        .load(&id[6..])
                        .await;
                    if let Err(e) = loaded {
                        assert!(matches!(e, Error::Corrupt { .. }), "cut at {cut}: {e:?}");
                    }
                }
            }
        }
    }
    eprintln!("truncated databases refused at open: {refused} of 9");
    assert!(refused >= 5, "short files are refused at open");
}

#[test]
fn t14_database_of_another_application_is_refused() {
    let cases: [(&str, &str); 4] = [
        (
            "a table of its own",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');",
        ),
        (
            "a table named like ours",
            "CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT);",
        ),
        ("another application id", "PRAGMA application_id = 1234;"),
        ("a user version and no tables", "PRAGMA user_version = 3;"),
    ];
    for (what, sql) in cases {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        {
            let conn = raw(&db);
            conn.execute_batch(sql).unwrap();
        }
        std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let result = open_untouched(&db);
        assert!(
            matches!(result, Err(OpenError::ForeignDatabase { ref path }) if path == &db),
            "{what}: {result:?}"
        );
    }
}

#[tokio::test]
async fn t14_schema_newer_than_the_code_is_refused_and_untouched() {
    // A fresh store carries the es identity.
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStore::open(&fresh).unwrap());
    let (app, version): (i64, i64) = {
        let conn = raw(&fresh);
        (
            conn.query_row("PRAGMA application_id", [], |r| r.get(0))
                .unwrap(),
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap(),
        )
    };
    assert_eq!(app, 0x6573_5351, "application id \"esSQ\"");
    assert_eq!(version, es_sqlite::SCHEMA_VERSION);

    // A populated es database whose schema version is raised.
    let dir = tempfile::tempdir().unwrap();
    let db = es_database_copy(dir.path(), "events.db").await;

    for newer in [es_sqlite::SCHEMA_VERSION + 1, 1000, i64::from(i32::MAX)] {
        raw(&db).pragma_update(None, "user_version", newer).unwrap();
        let result = open_untouched(&db);
        match result {
            Err(OpenError::SchemaTooNew {
                path,
                found,
                supported,
            }) => {
                assert_eq!(path, db);
                assert_eq!(found, newer);
                assert_eq!(supported, es_sqlite::SCHEMA_VERSION);
            }
            other => panic!("user_version {newer}: {other:?}"),
        }
    }

    // A negative user version with the es application id is damage.
    raw(&db).pragma_update(None, "user_version", -1).unwrap();
    let result = open_untouched(&db);
    assert!(
        matches!(result, Err(OpenError::Corrupt { .. })),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------
// A read-only file.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn s4_read_only_database_file_reads_work_and_appends_fail_typed() {
    use std::os::unix::fs::PermissionsExt;

    // Root writes through file modes: the test runs as `nobody` then.
    if common::rerun_unprivileged("s4_read_only_database_file_reads_work_and_appends_fail_typed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = es_database_copy(dir.path(), "events.db").await;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();

    let store = match SqliteStore::open(&db) {
        Ok(store) => store,
        Err(e) => panic!("a read-only es database should open for reading: {e:?}"),
    };
    let tallies = Repository::<Tally, _>::new(store.clone());
    assert_eq!(tallies.load("a").await.unwrap().total, 1);
    assert_eq!(tallies.load("b").await.unwrap().total, 10);
    let all = collect(store.read_all(0)).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(store.last_position().await.unwrap(), 2);

    let appended = store
        .append(
            &stream("tally-c"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("tally", "added", 1, r#"{"n":1}"#)],
        )
        .await;
    assert!(
        matches!(appended, Err(Error::ReadOnly)),
        "an append to a read-only file: {appended:?}"
    );
    let executed = tallies.execute("a", |_| Added { n: 1 }).await;
    assert!(
        matches!(executed, Err(ExecuteError::Store(Error::ReadOnly))),
        "{executed:?}"
    );
    // Nothing was written, and reads still work after the failed writes.
    assert_eq!(store.last_position().await.unwrap(), 2);
    assert_eq!(tallies.load("a").await.unwrap().total, 1);
}

#[tokio::test]
async fn s4_read_only_rollback_journal_database_can_be_read() {
    use std::os::unix::fs::PermissionsExt;

    // Root writes through file modes: the test runs as `nobody` then.
    if common::rerun_unprivileged("s4_read_only_rollback_journal_database_can_be_read") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = es_database_copy(dir.path(), "events.db").await;
    let mode: String = raw(&db)
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
    let before = std::fs::read(&db).unwrap();
    let store = SqliteStore::open(&db);
    let store = match store {
        Ok(store) => store,
        Err(e) => panic!("a read-only es database in rollback mode should open for reading: {e:?}"),
    };
    let tallies = Repository::<Tally, _>::new(store.clone());
    assert_eq!(tallies.load("b").await.unwrap().total, 10);
    drop((tallies, store));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}
