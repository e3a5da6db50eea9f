//! RELIABILITY S1 (injection) and S2 (limits) on `SqliteStore`: hostile
//! stream ids, names and aggregate types are bound values that round-trip
//! exactly and leave the schema alone; inputs at a limit pass and one past
//! it fail with typed errors, writing nothing; deeply nested JSON is a
//! decode error, never a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use es_core::prelude::*;
use es_core::store::next;
use es_core::{DecodeError, Error, LimitError, Limits, NewEvent, ReadRange, StreamIdError};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "noted")]
struct Noted {
    tree: serde_json::Value,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "note", events(Noted))]
struct Note {
    count: u32,
}

impl Apply<Noted> for Note {
    fn apply(&mut self, _: &Noted) {
        self.count += 1;
    }
}

fn raw(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).expect("a raw connection opens")
}

/// `sqlite_schema`, every row.
fn schema(db: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = raw(db);
    let mut query = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY name")
        .unwrap();
    query
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count(db: &Path, table: &str) -> i64 {
    raw(db)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn event(payload: impl Into<es_core::Payload>) -> NewEvent {
    NewEvent::new("test", "e", 1, payload)
}

/// A JSON string of exactly `len` bytes.
fn json_of_len(len: usize) -> String {
    format!("\"{}\"", "x".repeat(len - 2))
}

/// A store in `dir` and its database path.
fn store_in(dir: &Path, limits: Limits) -> (SqliteStore, std::path::PathBuf) {
    let db = dir.join("events.db");
    let store = SqliteStore::options().limits(limits).open(&db).unwrap();
    (store, db)
}

// ---------------------------------------------------------------------------
// S1: injection.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn s1_one_mebibyte_stream_id_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_in(dir.path(), Limits::default());
    let huge = "x".repeat(1 << 20);

    let refused = StreamId::new(&huge).unwrap_err();
    assert_eq!(refused, StreamIdError::TooLong { len: 1 << 20 });
    assert!(matches!(
        Error::from(refused),
        Error::InvalidStreamId(StreamIdError::TooLong { len: 1_048_576 })
    ));
    for almost in [
        "y".repeat(257),
        "é".repeat(129),
        format!("a\0{}", "b".repeat(10)),
    ] {
        assert!(StreamId::new(&almost).is_err(), "{} bytes", almost.len());
    }

    // Through the repository: the id is checked before anything is read or
    // written.
    let notes = Repository::<Note, _>::new(store.clone());
    assert!(matches!(
        notes.load(&huge).await,
        Err(Error::InvalidStreamId(StreamIdError::TooLong { .. }))
    ));
    let executed = notes
        .execute(&huge, |_| Noted {
            tree: serde_json::Value::Null,
        })
        .await;
    assert!(
        matches!(
            executed,
            Err(ExecuteError::Store(Error::InvalidStreamId(
                StreamIdError::TooLong { .. }
            )))
        ),
        "{executed:?}"
    );
    let nul = notes.execute("a\0b", |_| Noted {
        tree: serde_json::Value::Null,
    });
    assert!(matches!(
        nul.await,
        Err(ExecuteError::Store(Error::InvalidStreamId(
            StreamIdError::ControlCharacter { found: '\0', .. }
        )))
    ));

    assert_eq!(store.last_position().await.unwrap(), 0);
    drop((notes, store));
    assert_eq!(count(&db, "events"), 0);
    assert_eq!(count(&db, "streams"), 0);
}

/// Stream ids an attacker would try: quotes, SQL, wildcards, escapes,
/// bidirectional and invisible characters, and the longest ids allowed.
fn hostile_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "'",
        "''",
        "\"",
        "`",
        "'; DROP TABLE events; --",
        "\"; DROP TABLE streams; --",
        "x' OR '1'='1",
        "); DELETE FROM events; --",
        "%",
        "_",
        "%%",
        "a%",
        "a_",
        "ab",
        "aB",
        "AB",
        "*",
        "?",
        "[a-z]",
        "\\",
        "\\%",
        "$all",
        "\u{202e}rtl\u{202c}",
        "\u{200f}\u{05d0}\u{05d1}",
        "\u{feff}bom",
        "emoji-\u{1f4a5}",
        "e\u{301}",
        "\u{e9}",
        " ",
        "trailing ",
        "ｆｕｌｌ",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    ids.push("m".repeat(256));
    ids.push("é".repeat(128)); // 256 bytes
    ids.push(format!("'{}", "%".repeat(255)));
    ids
}

#[tokio::test]
async fn s1_hostile_stream_ids_round_trip_and_leave_the_schema_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_in(dir.path(), Limits::default());
    let before = schema(&db);
    assert!(before.iter().any(|(_, name, _)| name == "events"));

    let ids = hostile_ids();

    // Names cannot carry hostile text: the name rule refuses it before any
    // SQL, and nothing is written.
    for (aggregate, name) in [("'; DROP TABLE snapshots; --", "e"), ("t", "e'%_\"")] {
        let stream = StreamId::new("names").unwrap();
        let event = NewEvent::new(aggregate, name, 1, "{}");
        assert!(matches!(
            store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await,
            Err(Error::InvalidName { .. })
        ));
    }

    // Every hostile id is its own stream, and part of the payload and the
    // metadata.
    for (i, id) in ids.iter().enumerate() {
        let stream = StreamId::new(id).unwrap();
        let events = (0..=i % 3)
            .map(|k| {
                NewEvent::new(
                    "hostile",
                    format!("e{k}"),
                    1,
                    format!(r#"{{"id":{},"k":{k}}}"#, serde_json::json!(id)),
                )
                .with_metadata(Metadata::new().actor(id.clone()).reason(id.clone()))
            })
            .collect();
        let done = store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        assert_eq!(done.version, (i % 3) as u64 + 1);
    }
    // NUL and other control characters are refused before any SQL.
    for bad in ["a\0b", "\0", "line\nbreak", "tab\t", "\u{7f}", "\u{9b}"] {
        assert!(matches!(
            StreamId::new(bad),
            Err(StreamIdError::ControlCharacter { .. })
        ));
    }

    for (i, id) in ids.iter().enumerate() {
        let stream = StreamId::new(id).unwrap();
        let events = common::stream_events(&store, &stream).await;
        assert_eq!(events.len(), i % 3 + 1, "{id:?} reads only its own events");
        for (k, e) in events.iter().enumerate() {
            assert_eq!(e.stream_id.as_str(), id);
            assert_eq!(&*e.aggregate_type, "hostile");
            assert_eq!(e.name, format!("e{k}"));
            assert_eq!(e.metadata.actor.as_deref(), Some(id.as_str()));
            assert_eq!(e.metadata.reason.as_deref(), Some(id.as_str()));
            let payload = e.payload().to_json().unwrap();
            assert_eq!(payload["id"], serde_json::json!(id));
        }
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            (i % 3) as u64 + 1
        );
    }
    // Ids that differ only in case, or in a wildcard's place, are other streams.
    for absent in ["A%", "a", "b", "AB ", "%a", "x", "$ALL"] {
        let stream = StreamId::new(absent).unwrap();
        assert!(
            common::stream_events(&store, &stream).await.is_empty(),
            "{absent:?}"
        );
        assert_eq!(store.stream_version(&stream).await.unwrap(), 0);
    }
    let all = common::all_events(&store).await;
    let expected: usize = (0..ids.len()).map(|i| i % 3 + 1).sum();
    assert_eq!(all.len(), expected);

    drop(store);
    assert_eq!(schema(&db), before, "sqlite_schema is unchanged");
    let stored: Vec<String> = {
        let conn = raw(&db);
        let mut q = conn
            .prepare("SELECT stream_id FROM streams ORDER BY stream_pk")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(stored, ids, "stream ids are stored byte for byte");
    assert_eq!(
        i64::try_from(expected).unwrap(),
        count(&db, "events"),
        "no event lost or added"
    );
}

// ---------------------------------------------------------------------------
// S2: limits.
// ---------------------------------------------------------------------------

fn expect_limit<T: std::fmt::Debug>(
    result: Result<T, Error>,
    what: &str,
    size: usize,
    limit: usize,
) {
    match result {
        Err(Error::Limit(LimitError {
            what: w,
            size: s,
            limit: l,
        })) => {
            assert_eq!((w, s, l), (what, size, limit));
        }
        other => panic!("expected Error::Limit on {what}, got {other:?}"),
    }
}

#[tokio::test]
async fn s2_payload_at_the_limit_passes_and_one_byte_more_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = store_in(dir.path(), Limits::default());
    let limit = Limits::default().max_payload_bytes;
    let s = StreamId::new("big").unwrap();

    let at = json_of_len(limit);
    let done = store
        .append(&s, ExpectedVersion::NoStream, vec![event(at.clone())])
        .await
        .unwrap();
    assert_eq!(done.version, 1);
    let stored = common::stream_events(&store, &s).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].payload().as_str(),
        at,
        "the payload reads back byte for byte"
    );

    let before = store.last_position().await.unwrap();
    expect_limit(
        store
            .append(
                &s,
                ExpectedVersion::Any,
                vec![event(json_of_len(limit + 1))],
            )
            .await,
        "event payload bytes",
        limit + 1,
        limit,
    );
    // In a batch with a good event: the whole append is refused.
    expect_limit(
        store
            .append(
                &s,
                ExpectedVersion::Any,
                vec![event("{}"), event(json_of_len(limit + 1))],
            )
            .await,
        "event payload bytes",
        limit + 1,
        limit,
    );
    assert_eq!(store.last_position().await.unwrap(), before);
    assert_eq!(store.stream_version(&s).await.unwrap(), 1);
}

#[tokio::test]
async fn s2_configured_limits_at_and_over() {
    let limits = Limits {
        max_payload_bytes: 100,
        max_metadata_bytes: 80,
        max_events_per_append: 5,
        max_append_bytes: 300,
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_in(dir.path(), limits);
    let s = StreamId::new("limited").unwrap();
    let append = |events: Vec<NewEvent>| store.append(&s, ExpectedVersion::Any, events);

    // Payload.
    append(vec![event(json_of_len(100))]).await.unwrap();
    expect_limit(
        append(vec![event(json_of_len(101))]).await,
        "event payload bytes",
        101,
        100,
    );

    // Events per append.
    append((0..5).map(|_| event("1")).collect()).await.unwrap();
    expect_limit(
        append((0..6).map(|_| event("1")).collect()).await,
        "events in one append",
        6,
        5,
    );

    // Bytes per append: 3 x 100 = 300 passes, 301 fails.
    append((0..3).map(|_| event(json_of_len(100))).collect())
        .await
        .unwrap();
    let mut over: Vec<NewEvent> = (0..3).map(|_| event(json_of_len(100))).collect();
    over.push(event("1"));
    expect_limit(append(over).await, "bytes in one append", 301, 300);

    // Metadata: its serialized JSON is measured.
    let meta_of_len = |len: usize| {
        let meta = Metadata::new().reason("r".repeat(len - r#"{"reason":""}"#.len()));
        assert_eq!(meta.to_json().unwrap().len(), len);
        meta
    };
    let at = event("{}").with_metadata(meta_of_len(80));
    let done = append(vec![at.clone()]).await.unwrap();
    let back = common::stream_events(&store, &s).await;
    assert_eq!(back.last().unwrap().metadata, at.metadata);
    assert_eq!(back.last().unwrap().version, done.version);
    expect_limit(
        append(vec![event("{}").with_metadata(meta_of_len(81))]).await,
        "event metadata bytes",
        81,
        80,
    );

    // Names: 128 bytes pass, 129 break the name rule (a fixed limit: names
    // are part of the stored format, not a setting).
    let named =
        |aggregate: &str, name: &str| NewEvent::new(aggregate.to_owned(), name.to_owned(), 1, "{}");
    append(vec![named("test", &"n".repeat(128))]).await.unwrap();
    assert!(matches!(
        append(vec![named("test", &"n".repeat(129))]).await,
        Err(Error::InvalidName { .. })
    ));
    let t = StreamId::new("other").unwrap();
    store
        .append(&t, ExpectedVersion::Any, vec![named(&"a".repeat(128), "e")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .append(&t, ExpectedVersion::Any, vec![named(&"a".repeat(129), "e")])
            .await,
        Err(Error::InvalidName { .. })
    ));

    // Nothing of the refused appends was written.
    let version = store.stream_version(&s).await.unwrap();
    assert_eq!(version, 1 + 5 + 3 + 1 + 1);
    assert_eq!(store.last_position().await.unwrap(), version + 1);
    drop(store);
    assert_eq!(count(&db, "events"), i64::try_from(version + 1).unwrap());
}

/// `depth` nested JSON arrays around `0`.
fn nested(depth: usize) -> String {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn s2_deeply_nested_payloads_are_decode_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = store_in(dir.path(), Limits::default());
    let notes = Repository::<Note, _>::new(store.clone());
    let append = |id: &str, payload: String| {
        let stream = StreamId::new(format!("note-{id}")).unwrap();
        let store = store.clone();
        async move {
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new("note", "noted", 1, payload)],
                )
                .await
                .unwrap();
        }
    };

    // serde_json's recursion limit (128) lets 127 levels through; the
    // event's own object `{"tree": ...}` is one of them.
    append("d100", format!(r#"{{"tree":{}}}"#, nested(99))).await;
    append("d127", format!(r#"{{"tree":{}}}"#, nested(126))).await;
    assert_eq!(notes.load("d100").await.unwrap().count, 1);
    assert_eq!(notes.load("d127").await.unwrap().count, 1);
    let history = notes.history("d100").await.unwrap();
    let Some(NoteEvent::Noted(Noted { tree })) = history[0].event.event() else {
        panic!("the event decodes");
    };
    assert_eq!(tree.to_string(), nested(99));

    // 128 deep, 129 deep and 10,000 deep: a decode error of the stream's
    // event 1.
    for (id, depth) in [("d128", 127), ("d129", 128), ("d10k", 9_999)] {
        append(id, format!(r#"{{"tree":{}}}"#, nested(depth))).await;
        match notes.load(id).await {
            Err(Error::Decode {
                stream,
                version: 1,
                source: DecodeError::Payload { name: "noted", .. },
            }) => assert_eq!(stream.as_str(), format!("note-{id}")),
            other => panic!("{id}: expected a decode error, got {other:?}"),
        }
        // The store itself hands the bytes out unchanged.
        let stream = StreamId::new(format!("note-{id}")).unwrap();
        let stored = common::stream_events(&store, &stream).await;
        assert_eq!(
            stored[0].payload().len(),
            2 * depth + 1 + r#"{"tree":}"#.len()
        );
    }
    // Nesting that is not arrays: objects.
    let objects = format!("{}0{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    append("o10k", format!(r#"{{"tree":{objects}}}"#)).await;
    assert!(matches!(
        notes.load("o10k").await,
        Err(Error::Decode { version: 1, .. })
    ));
    // Everything else still reads.
    assert_eq!(common::all_events(&store).await.len(), 6);
}

#[tokio::test]
async fn s2_metadata_nested_past_the_decoder_limit_is_refused_or_reads_back() {
    // Metadata is serialized by the store and parsed again on every read;
    // an append whose metadata the store cannot read back must not be
    // accepted, or it poisons its stream and `$all`.
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = store_in(dir.path(), Limits::default());
    let s = StreamId::new("meta").unwrap();
    let mut tree = serde_json::json!(0);
    for _ in 0..200 {
        tree = serde_json::json!([tree]);
    }
    let meta = Metadata::new().with("tree", tree);
    assert!(meta.to_json().unwrap().len() < Limits::default().max_metadata_bytes);
    let appended = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![event("{}").with_metadata(meta.clone())],
        )
        .await;
    match appended {
        Err(Error::Limit(_) | Error::InvalidEvent { .. }) => {}
        Ok(_) => {
            let mut events = store.read_stream(&s, ReadRange::all());
            let back = next(&mut events).await.unwrap();
            match back {
                Ok(e) => assert_eq!(e.metadata, meta),
                Err(e) => panic!("accepted metadata does not read back: {e:?}"),
            }
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}
