//! `SqliteOptions::read_only`: a store opened for reading reads as usual,
//! refuses every write, and leaves the file exactly as it was.

use std::path::Path;

use es_core::blocking::block_on;
use es_core::{Error, EventStore, ExpectedVersion, NewEvent, StreamId};
use es_sqlite::{OpenError, SqliteStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn write_store(path: &Path) -> TestResult {
    let store = SqliteStore::open(path)?;
    let stream = StreamId::new("ticket-1")?;
    let events = (0..3)
        .map(|n| NewEvent::new("ticket", "noted", 1, format!(r#"{{"n":{n}}}"#)))
        .collect();
    block_on(store.append(&stream, ExpectedVersion::NoStream, events))?;
    Ok(())
}

#[test]
fn reads_refuses_writes_and_changes_no_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.db");
    write_store(&path)?;
    let before = std::fs::read(&path)?;
    {
        let store = SqliteStore::options().read_only().open(&path)?;
        let stream = StreamId::new("ticket-1")?;
        assert_eq!(block_on(store.stream_version(&stream))?, 3);
        assert_eq!(block_on(store.verify_chain())?.events, 3);
        let refused = block_on(store.append(
            &stream,
            ExpectedVersion::Exact(3),
            vec![NewEvent::new("ticket", "noted", 1, "{}")],
        ));
        assert!(matches!(refused, Err(Error::ReadOnly)), "{refused:?}");
        assert_eq!(block_on(store.stream_version(&stream))?, 3);
    }
    assert_eq!(std::fs::read(&path)?, before);
    Ok(())
}

#[test]
fn never_creates_a_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("missing.db");
    let refused = SqliteStore::options().read_only().open(&path);
    assert!(matches!(refused, Err(OpenError::Io { .. })), "{refused:?}");
    assert!(!path.exists());
}

#[test]
fn an_empty_file_is_refused_untouched() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"")?;
    let refused = SqliteStore::options().read_only().open(&path);
    assert!(
        matches!(refused, Err(OpenError::EmptyFile { .. })),
        "{refused:?}"
    );
    assert_eq!(std::fs::metadata(&path)?.len(), 0);
    Ok(())
}

#[test]
fn an_older_schema_is_not_migrated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("schema-2.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-2.db"),
        &path,
    )?;
    let before = std::fs::read(&path)?;
    let refused = SqliteStore::options().read_only().open(&path);
    match refused {
        Err(error @ OpenError::SchemaTooOld { found: 2, .. }) => {
            assert!(error.to_string().contains("left untouched"), "{error}");
        }
        other => panic!("expected SchemaTooOld, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path)?, before);
    Ok(())
}
