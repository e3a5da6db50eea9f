//! RELIABILITY T14 for es-sqlite: arbitrary inputs never panic.
//!
//! - Arbitrary bytes written as a file, then opened, give a typed
//!   `OpenError` (or open, when SQLite can read them as a database; then
//!   every read is `Ok` or a typed error).
//! - Arbitrary stream ids, event names, aggregate types, payload bytes and
//!   metadata text through `append` give `Ok` or typed errors, and what was
//!   accepted reads back exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use es_core::store::next;
use es_core::{Error, EventStore, ExpectedVersion, Metadata, NewEvent, ReadRange, StreamId, Uuid};
use es_sqlite::{OpenError, SqliteStore};
use proptest::prelude::*;

fn block<F: std::future::Future>(future: F) -> F::Output {
    es_core::blocking::block_on(future)
}

/// Reads everything a store holds; every item is an event or a typed error.
fn read_everything(store: &SqliteStore) {
    let mut all = store.read_all(0);
    while let Some(item) = block(next(&mut all)) {
        match item {
            Ok(_) => {}
            Err(e) => {
                assert!(!matches!(e, Error::Closed), "a store thread died");
                break;
            }
        }
    }
    if let Err(e) = block(store.last_position()) {
        assert!(!matches!(e, Error::Closed), "a store thread died");
    }
}

fn open_bytes(bytes: &[u8]) -> Result<SqliteStore, OpenError> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    std::fs::write(&db, bytes).unwrap();
    let result = SqliteStore::options().readers(1).open(&db);
    if let Ok(store) = &result {
        read_everything(store);
    }
    result
}

/// A real es database file (a quiescent copy): damaging it reaches
/// further into SQLite's parsing than plain noise.
fn es_database() -> &'static [u8] {
    static HEADER: OnceLock<Vec<u8>> = OnceLock::new();
    HEADER.get_or_init(|| {
        let store = SqliteStore::open_temporary().unwrap();
        let stream = StreamId::new("h-1").unwrap();
        block(store.append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("h", "e", 1, "{}")],
        ))
        .unwrap();
        let copy = tempfile::tempdir().unwrap();
        let path = copy.path().join("copy.db");
        rusqlite::Connection::open(store.path())
            .unwrap()
            .execute("VACUUM INTO ?1", [path.to_str().unwrap()])
            .unwrap();
        std::fs::read(path).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn t14_arbitrary_bytes_as_a_database_file_are_a_typed_open_error(
        // Zero and one byte are read by SQLite as an empty database (see
        // bad_data.rs); two bytes and more that are not SQLite's are refused.
        bytes in proptest::collection::vec(any::<u8>(), 2..8192),
    ) {
        prop_assume!(!bytes.starts_with(b"SQLite format 3\0"));
        let result = open_bytes(&bytes);
        prop_assert!(
            matches!(result, Err(OpenError::NotADatabase { .. })),
            "{} bytes: {result:?}", bytes.len()
        );
    }

    #[test]
    fn t14_damaged_es_database_files_open_or_fail_typed(
        cut in 0usize..40_000,
        flips in proptest::collection::vec((0usize..40_000, 1u8..=255), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        // A real database, cut short, with bytes flipped and noise appended.
        let header = es_database();
        let mut bytes = header[..cut.min(header.len())].to_vec();
        for (at, x) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= x;
            }
        }
        bytes.extend(tail);
        // Any OpenError is typed; an opened store reads without panicking.
        let _ = open_bytes(&bytes);
    }
}

/// Text of every kind, mostly (not always) valid as a stream id or name:
/// hostile printable text, then anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[%_*?'\"`;\\ \\-a-zA-Z0-9\u{202e}\u{200f}\u{e9}\u{1f4a5}]{1,40}",
        2 => "\\PC{1,60}",
        1 => any::<String>(),
        1 => Just("'; DROP TABLE events; --".to_owned()),
        1 => Just(String::new()),
        1 => Just("a\0b".to_owned()),
    ]
}

/// A name: mostly one the name rule takes, sometimes any text.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z][a-zA-Z0-9._-]{0,30}",
        1 => text(),
    ]
}

/// Payload text (payloads are UTF-8 by their type).
fn payload() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any::<String>(),
        1 => proptest::collection::vec(any::<u8>(), 0..256)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        1 => Just("{}".to_owned()),
    ]
}

fn store() -> &'static SqliteStore {
    static STORE: OnceLock<SqliteStore> = OnceLock::new();
    STORE.get_or_init(|| SqliteStore::options().readers(2).open_temporary().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn t14_arbitrary_appends_are_ok_or_typed_and_read_back_exactly(
        stream in text(),
        aggregate in name(),
        names in proptest::collection::vec(name(), 1..4),
        payloads in proptest::collection::vec(payload(), 4),
        schema_version in any::<u32>(),
        actor in proptest::option::of(text()),
        extra in proptest::option::of((text(), text())),
    ) {
        let store = store();
        let stream = match StreamId::new(&stream) {
            Ok(stream) => stream,
            // A typed refusal before anything reaches the store.
            Err(e) => {
                let _: Error = e.into();
                return Ok(());
            }
        };
        let mut metadata = Metadata::new();
        if let Some(actor) = actor {
            metadata = metadata.actor(actor);
        }
        if let Some((key, value)) = extra {
            metadata = metadata.with(key, value);
        }
        let events: Vec<NewEvent> = names
            .iter()
            .zip(&payloads)
            .map(|(name, payload)| {
                NewEvent::new(aggregate.clone(), name.clone(), schema_version, payload.clone())
                    .with_metadata(metadata.clone())
            })
            .collect();
        let before = block(store.stream_version(&stream)).unwrap();
        match block(store.append(&stream, ExpectedVersion::Any, events.clone())) {
            Ok(done) => {
                prop_assert!(!done.repeated);
                prop_assert_eq!(done.version, before + events.len() as u64);
                let mut stored = store.read_stream(&stream, ReadRange::starting_at(before + 1));
                let mut back = Vec::new();
                while let Some(e) = block(next(&mut stored)) {
                    back.push(e.unwrap());
                }
                prop_assert_eq!(back.len(), events.len());
                for (k, (sent, got)) in events.iter().zip(&back).enumerate() {
                    prop_assert_eq!(got.event_id, sent.event_id);
                    prop_assert_eq!(&got.stream_id, &stream);
                    prop_assert_eq!(&*got.aggregate_type, &*sent.aggregate_type);
                    prop_assert_eq!(&got.name, &*sent.name);
                    prop_assert_eq!(got.schema_version, schema_version);
                    prop_assert_eq!(got.payload(), &sent.payload);
                    prop_assert_eq!(&got.metadata, &sent.metadata);
                    prop_assert_eq!(got.version, before + 1 + k as u64);
                }
            }
            Err(
                Error::InvalidEvent { .. }
                | Error::InvalidName { .. }
                | Error::Limit(_)
                | Error::AggregateMismatch { .. },
            ) => {
                // Refused whole: the stream did not move.
                prop_assert_eq!(block(store.stream_version(&stream)).unwrap(), before);
            }
            Err(other) => prop_assert!(false, "an unexpected error {other:?}"),
        }
        // The id of an accepted event is never accepted twice.
        let id = Uuid::now_v7();
        let again = NewEvent::new("t", "e", 1, "{}").with_id(id);
        let s = StreamId::new(format!("again-{id}")).unwrap();
        block(store.append(&s, ExpectedVersion::Any, vec![again.clone()])).unwrap();
        let repeated = block(store.append(&s, ExpectedVersion::Any, vec![again])).unwrap();
        prop_assert!(repeated.repeated);
    }
}
