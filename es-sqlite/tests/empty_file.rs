//! Issue 11: an existing empty (0-byte) events file, perhaps a truncated
//! copy, never silently becomes a new, empty store. It is refused with
//! `OpenError::EmptyFile`, untouched, unless a new store is asked for
//! (`SqliteOptions::create_new`), which in turn refuses any file that holds
//! something. A missing file is still created, whole: a new store is made
//! beside it and moved into place, so threads or processes opening a
//! missing file at once never see the empty file a new database starts as.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Barrier};

use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
use es_sqlite::{OpenError, SqliteStore};

/// The names in `dir` and each file's bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).unwrap_or_default())
        })
        .collect();
    found.sort();
    found
}

fn names(dir: &Path) -> Vec<String> {
    files(dir).into_iter().map(|(name, _)| name).collect()
}

fn append_one(store: &SqliteStore, stream: &str) -> u64 {
    let stream = StreamId::new(stream).unwrap();
    block_on(store.append(
        &stream,
        ExpectedVersion::Any,
        vec![NewEvent::new("note", "noted", 1, "{}")],
    ))
    .unwrap()
    .version
}

#[test]
fn an_existing_empty_file_is_refused_untouched_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    std::fs::write(&db, b"").unwrap();
    let before = files(dir.path());
    let refused = SqliteStore::open(&db);
    let Err(error @ OpenError::EmptyFile { .. }) = &refused else {
        panic!("expected EmptyFile, got {refused:?}");
    };
    assert!(error.to_string().contains("truncated copy"), "{error}");
    assert_eq!(files(dir.path()), before, "nothing was written or created");
    // Read-only, the same.
    let refused = SqliteStore::options().read_only().open(&db);
    assert!(
        matches!(refused, Err(OpenError::EmptyFile { .. })),
        "{refused:?}"
    );
    assert_eq!(files(dir.path()), before);
}

#[test]
fn create_new_makes_a_store_of_a_missing_or_empty_file_and_refuses_any_other() {
    let dir = tempfile::tempdir().unwrap();

    // An empty file, asked for: a new store in it.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let store = SqliteStore::options().create_new().open(&empty).unwrap();
    assert_eq!(append_one(&store, "a-1"), 1);
    drop(store);
    // Then an ordinary open reads it.
    assert_eq!(append_one(&SqliteStore::open(&empty).unwrap(), "a-1"), 2);

    // A missing file, asked for: created.
    let missing = dir.path().join("missing.db");
    let store = SqliteStore::options().create_new().open(&missing).unwrap();
    assert_eq!(append_one(&store, "b-1"), 1);
    drop(store);

    // A store, or any other file that holds something, is left untouched.
    let other = dir.path().join("notes.db");
    std::fs::write(&other, b"not a store, but mine").unwrap();
    for path in [&empty, &missing, &other] {
        let before = files(dir.path());
        let refused = SqliteStore::options().create_new().open(path);
        assert!(
            matches!(&refused, Err(OpenError::AlreadyExists { path: p }) if p == path),
            "{refused:?}"
        );
        assert_eq!(files(dir.path()), before);
    }
}

#[test]
fn create_new_refuses_an_empty_file_beside_a_log_it_would_replay() {
    // A store's file truncated to nothing, its `-wal` still beside it:
    // SQLite would read the log's pages into the "new" store.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    append_one(&store, "a-1");
    let wal = dir.path().join("events.db-wal");
    let log = std::fs::read(&wal).unwrap();
    assert!(!log.is_empty());
    drop(store);
    std::fs::write(&db, b"").unwrap();
    std::fs::write(&wal, &log).unwrap();
    let before = files(dir.path());
    let refused = SqliteStore::options().create_new().open(&db);
    assert!(
        matches!(refused, Err(OpenError::AlreadyExists { .. })),
        "{refused:?}"
    );
    assert_eq!(files(dir.path()), before);
}

#[test]
fn a_missing_file_is_created_whole_with_nothing_left_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(append_one(&store, "a-1"), 1);
    drop(store);
    assert_eq!(names(dir.path()), ["events.db"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// Eight threads open one missing file at the same moment, 20 times: one
/// of them makes the store, every one opens it, none sees an empty file.
#[test]
fn threads_opening_a_missing_file_at_once_all_open_one_store() {
    const THREADS: usize = 8;
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(dir.path().join("events.db"));
        let start = Arc::new(Barrier::new(THREADS));
        let opened: Vec<_> = (0..THREADS)
            .map(|n| {
                let (db, start) = (db.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let store = SqliteStore::open(&*db)?;
                    append_one(&store, &format!("t-{n}"));
                    Ok::<_, OpenError>(())
                })
            })
            .collect();
        for thread in opened {
            if let Err(error) = thread.join().unwrap() {
                panic!("round {round}: {error:?}");
            }
        }
        let store = SqliteStore::open(&*db).unwrap();
        assert_eq!(block_on(store.last_position()).unwrap(), THREADS as u64);
        drop(store);
        assert_eq!(names(dir.path()), ["events.db"], "round {round}");
    }
}
