//! RELIABILITY S4 for `SqliteStore::open_temporary`: under umask 000 the
//! directory it creates for the database is readable, writable and
//! searchable by its owner only (0700), so no other user can replace or
//! remove the database, its `-wal` or its `-shm`.
//!
//! One test only, in its own binary: it sets the process-wide umask.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use es_sqlite::SqliteStore;
use rustix::fs::Mode;

#[test]
fn s4_temporary_store_directory_is_private_under_umask_000() {
    let previous = rustix::process::umask(Mode::empty());
    let store = SqliteStore::open_temporary();
    rustix::process::umask(previous);
    let store = store.unwrap();
    let dir = store.path().parent().unwrap();
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
}
