//! RELIABILITY S4: file permissions. Under umask 000 the database, its
//! `-wal` and its `-shm` are still created readable and writable by their
//! owner only (0600), and an existing database file that every user may
//! write is refused, untouched.
//!
//! One test only: it sets the process-wide umask.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
use es_sqlite::{OpenError, SqliteStore};
use rustix::fs::Mode;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn append_one(store: &SqliteStore) {
    let stream = StreamId::new("p-1").unwrap();
    es_core::blocking::block_on(store.append(
        &stream,
        ExpectedVersion::Any,
        vec![NewEvent::new("p", "e", 1, "{}")],
    ))
    .unwrap();
}

#[test]
fn s4_files_are_private_under_umask_000_and_world_writable_files_are_refused() {
    let previous = rustix::process::umask(Mode::empty());

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    append_one(&store);
    // While the store is open, all three files exist.
    for path in [
        db.clone(),
        dir.path().join("events.db-wal"),
        dir.path().join("events.db-shm"),
    ] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    drop(store);

    // A temporary store too, in its own directory.
    let temporary = SqliteStore::open_temporary().unwrap();
    append_one(&temporary);
    assert_eq!(mode(temporary.path()), 0o600);
    // (Its directory's mode is checked in `permissions_temporary.rs`.)
    for suffix in ["-wal", "-shm"] {
        let mut side = temporary.path().as_os_str().to_owned();
        side.push(suffix);
        assert_eq!(mode(Path::new(&side)), 0o600, "{suffix}");
    }
    drop(temporary);

    // A database every user may write is refused and left as it is.
    for insecure in [0o666, 0o602, 0o777] {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(insecure)).unwrap();
        let before = std::fs::read(&db).unwrap();
        let result = SqliteStore::open(&db);
        assert!(
            matches!(result, Err(OpenError::InsecurePermissions { ref path }) if path == &db),
            "mode {insecure:o}: {result:?}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), before);
        assert_eq!(
            mode(&db),
            insecure,
            "the mode is not changed behind the user's back"
        );
    }
    // Readable by others, or writable by the group, is the user's choice.
    for allowed in [0o644, 0o660, 0o600] {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(allowed)).unwrap();
        let store = SqliteStore::open(&db).unwrap_or_else(|e| panic!("mode {allowed:o}: {e:?}"));
        append_one(&store);
    }

    rustix::process::umask(previous);
}
