//! RELIABILITY T6 on a real full volume: a small tmpfs, filled by another
//! file, as a disk fills in production (`disk_full.rs` uses SQLite's
//! `max_page_count`, which never fills the write-ahead log's volume).
//!
//! - Appends fail typed (`StorageFull`) and lose nothing acknowledged; once
//!   space is freed, the store recovers fully: 1,000 further appends go
//!   through (the log is checkpointed and truncated after a full disk).
//! - A batch whose commit fails for lack of space reports no conflict
//!   against its own events: a request refused inside it gets the batch's
//!   `StorageFull` too.
//!
//! Each test runs in a child process in a private mount namespace
//! (`unshare`; as an unprivileged user with a user namespace), so the
//! volume disappears with the child whatever happens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Held, enqueue};
use es_core::blocking::block_on;
use es_core::{Error, EventStore, ExpectedVersion, NewEvent, StreamId};
use es_sqlite::SqliteStore;
use fail::FailScenario;

/// The volume's size: room for the data of these tests, and for the
/// write-ahead log, which grows to about 4 MB between checkpoints.
const VOLUME: &str = "16m";

/// Runs `test` of this binary again in a private mount namespace, with a
/// tmpfs of `VOLUME` mounted at a new directory; returns there in the child.
/// In the parent, waits for the child and fails when it failed.
fn on_a_small_volume(test: &str) -> Option<PathBuf> {
    if common::role().as_deref() == Some("volume") {
        let dir = PathBuf::from(std::env::var(common::DB).unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={VOLUME},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(mounted.success(), "mounting a tmpfs at {}", dir.display());
        return Some(dir);
    }
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("volume");
    let exe = std::env::current_exe().unwrap();
    let mut unshare = Command::new("unshare");
    if rustix::process::geteuid().is_root() {
        unshare.args(["--mount", "--propagation", "private"]);
    } else {
        unshare.args([
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ]);
    }
    let status = unshare
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(common::ROLE, "volume")
        .env(common::DB, &dir)
        .status()
        .expect("`unshare` (util-linux) runs: this test needs a private mount namespace");
    assert!(
        status.success(),
        "the child running {test} failed: {status}"
    );
    None
}

/// Fills the volume of `dir` with a file, leaving about `left` bytes.
fn fill(dir: &Path, left: u64) -> PathBuf {
    let stat = rustix::fs::statvfs(dir).unwrap();
    let free = stat.f_bavail * stat.f_frsize;
    let ballast = dir.join("ballast");
    let size = free.saturating_sub(left);
    let chunk = vec![0xA5u8; 1 << 16];
    let mut file = std::fs::File::create(&ballast).unwrap();
    let mut written = 0u64;
    while written < size {
        let n = usize::try_from(size - written).map_or(chunk.len(), |left| left.min(chunk.len()));
        std::io::Write::write_all(&mut file, &chunk[..n]).unwrap();
        written += u64::try_from(n).unwrap();
    }
    file.sync_all().unwrap();
    ballast
}

fn message(n: u64, size: usize) -> NewEvent {
    NewEvent::new(
        "fill",
        "filled",
        1,
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(size)),
    )
}

#[test]
fn t6_a_full_volume_fails_typed_and_the_store_recovers_once_space_is_freed() {
    let Some(dir) = on_a_small_volume(
        "t6_a_full_volume_fails_typed_and_the_store_recovers_once_space_is_freed",
    ) else {
        return;
    };
    let db = dir.join("events.db");
    let wal = dir.join("events.db-wal");
    let pad = 1_000;
    // Something else fills the volume; it is deleted later to free space.
    let ballast = fill(&dir, 1 << 20);
    let store = SqliteStore::open(&db).unwrap();
    let stream = StreamId::new("fill-1").unwrap();
    block_on(store.append(&stream, ExpectedVersion::NoStream, vec![message(0, 10)])).unwrap();

    // Fill what is left: typed failures, nothing acknowledged lost.
    let mut acked = 1u64;
    let mut full = 0;
    for n in 1..1_000_000 {
        match block_on(store.append(
            &stream,
            ExpectedVersion::Exact(acked),
            vec![message(n, pad)],
        )) {
            Ok(done) => {
                assert_eq!(done.version, acked + 1);
                acked = done.version;
            }
            Err(Error::StorageFull) => {
                full += 1;
                if full == 20 {
                    break;
                }
            }
            Err(other) => panic!("expected StorageFull, got {other:?}"),
        }
    }
    assert_eq!(full, 20, "the volume filled up");
    assert_eq!(block_on(store.stream_version(&stream)).unwrap(), acked);
    assert_eq!(block_on(common::all_events(&store)).len() as u64, acked);
    let log_when_full = std::fs::metadata(&wal).unwrap().len();

    // Space is freed: the first commit that succeeds moves the log into the
    // database file and truncates it, so the space it took is free again.
    std::fs::remove_file(&ballast).unwrap();
    let done = block_on(store.append(
        &stream,
        ExpectedVersion::Exact(acked),
        vec![message(0, pad)],
    ));
    acked = done.unwrap().version;
    let log_after = std::fs::metadata(&wal).unwrap().len();
    assert!(
        log_after < 64 << 10 && log_after < log_when_full / 4,
        "the log is truncated: {log_when_full} bytes when full, {log_after} after"
    );
    // And every further append goes through.
    for n in 1..=1_000 {
        let done = block_on(store.append(
            &stream,
            ExpectedVersion::Exact(acked),
            vec![message(n, pad)],
        ))
        .unwrap_or_else(|e| {
            let wal = std::fs::metadata(dir.join("events.db-wal")).map(|m| m.len());
            let db = std::fs::metadata(dir.join("events.db")).map(|m| m.len());
            panic!("append {n} after freeing space: {e:?} (wal {wal:?}, db {db:?})")
        });
        acked = done.version;
    }
    eprintln!(
        "T6 volume: {acked} events stored, {full} appends refused while full; \
         log {log_when_full} bytes when full, {log_after} after the first commit"
    );
    assert_eq!(block_on(common::all_events(&store)).len() as u64, acked);
    drop(store);
    assert_eq!(common::check_integrity(&db, true), "ok");
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(block_on(common::all_events(&store)).len() as u64, acked);
}

#[test]
fn t6_a_batch_that_cannot_commit_for_lack_of_space_reports_no_conflict() {
    let Some(dir) =
        on_a_small_volume("t6_a_batch_that_cannot_commit_for_lack_of_space_reports_no_conflict")
    else {
        return;
    };
    let scenario = FailScenario::setup();
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    let stream = StreamId::new("race-1").unwrap();
    // The log has room for a few pages, not for a 600 KB event.
    let ballast = fill(&dir, 64 << 10);
    let held = Held::new(&store);
    let big = enqueue(store.append(
        &stream,
        ExpectedVersion::NoStream,
        vec![message(1, 600_000)],
    ));
    let small = enqueue(store.append(&stream, ExpectedVersion::NoStream, vec![message(2, 10)]));
    held.release().unwrap();
    // The big one's batch cannot commit; the small one, refused inside it
    // (it conflicts with the big one), gets the batch's error, not a
    // conflict with an event that was never stored.
    let (big, small) = (block_on(big), block_on(small));
    assert!(matches!(big, Err(Error::StorageFull)), "{big:?}");
    assert!(matches!(small, Err(Error::StorageFull)), "{small:?}");
    assert_eq!(block_on(store.stream_version(&stream)).unwrap(), 0);
    std::fs::remove_file(&ballast).unwrap();
    // With room, the same two: the first wins, the second conflicts with
    // what is stored.
    let first = block_on(store.append(
        &stream,
        ExpectedVersion::NoStream,
        vec![message(1, 600_000)],
    ));
    assert_eq!(first.unwrap().version, 1);
    let second = block_on(store.append(&stream, ExpectedVersion::NoStream, vec![message(2, 10)]));
    assert!(
        matches!(&second, Err(Error::Conflict(c)) if c.actual == 1),
        "{second:?}"
    );
    scenario.teardown();
}
