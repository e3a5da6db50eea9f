//! The VFS under plain SQLite: connections work through it, its images are
//! what a power cut leaves, and its faults reach SQLite's callers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use es_test_vfs::{Fault, Kind, Op, TestVfs, Unsynced};
use rusqlite::{Connection, OpenFlags};

fn open(path: &Path, vfs: &TestVfs) -> Connection {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let db = Connection::open_with_flags_and_vfs(path, flags, vfs.name()).expect("opens");
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .expect("pragmas");
    db
}

fn rows(path: &Path) -> Vec<i64> {
    let db = Connection::open(path).expect("the image opens");
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("checked");
    assert_eq!(ok, "ok");
    let table: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 't'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    if table == 0 {
        return Vec::new();
    }
    let mut q = db.prepare("SELECT x FROM t ORDER BY x").expect("query");
    q.query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn every_image_holds_the_commits_acknowledged_before_its_cut() {
    let vfs = TestVfs::register("test-images").unwrap();
    assert!(matches!(
        TestVfs::register("test-images"),
        Err(es_test_vfs::RegisterError::Taken(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let db = open(&path, &vfs);
    // A reader on its own connection sees the writer's commits.
    let reader = open(&path, &vfs);
    db.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY, pad BLOB)")
        .unwrap();
    let mut acked = Vec::new();
    for x in 0..300_i64 {
        db.execute("INSERT INTO t VALUES (?1, randomblob(700))", [x])
            .unwrap();
        acked.push((vfs.ops(), x));
    }
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 300);
    drop(reader);
    drop(db);

    let log = vfs.log();
    let syncs = log.syncs();
    assert!(syncs.len() >= 300, "a sync a commit: {}", syncs.len());
    assert!(
        log.ops().iter().any(|op| matches!(op, Op::Delete { .. })),
        "the log is deleted on close"
    );
    let mut replay = log.replay();
    let mut cuts: Vec<usize> = syncs.iter().step_by(7).copied().collect();
    cuts.push(log.len());
    for (n, cut) in cuts.into_iter().enumerate() {
        for unsynced in [
            Unsynced::Dropped,
            Unsynced::Kept,
            Unsynced::Random(n as u64),
        ] {
            let image = replay.image(cut, unsynced);
            let copy = tempfile::tempdir().unwrap();
            image.write_to(copy.path()).unwrap();
            let found = rows(&copy.path().join("a.db"));
            let must = acked.iter().filter(|(at, _)| *at <= cut).count();
            assert!(
                found.len() >= must,
                "cut {cut}: {} rows, {must} acknowledged",
                found.len()
            );
            assert_eq!(
                found,
                (0..).take(found.len()).collect::<Vec<i64>>(),
                "a prefix"
            );
            if unsynced == Unsynced::Dropped {
                // Exactly: a commit is on disk once its sync is.
                assert_eq!(found.len(), must, "cut {cut}");
            }
        }
    }
}

#[test]
fn faults_fail_the_nth_operation_of_their_kind() {
    let vfs = TestVfs::register("test-faults").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let db = open(&path, &vfs);
    db.execute_batch("CREATE TABLE t (x)").unwrap();

    let write = |db: &Connection| db.execute("INSERT INTO t VALUES (1)", []);
    let code = |e: rusqlite::Error| e.sqlite_extended_error_code();

    vfs.inject(Fault::transient(Kind::Sync, 1));
    assert_eq!(
        write(&db).map_err(code),
        Err(Some(rusqlite::ffi::SQLITE_IOERR_FSYNC))
    );
    assert_eq!(vfs.fired(), 1);
    assert_eq!(write(&db).map_err(code), Ok(1), "transient: once");
    assert!(
        vfs.log()
            .ops()
            .iter()
            .any(|op| matches!(op, Op::FailedSync { .. }))
    );

    vfs.inject(Fault::persistent(Kind::Write, 1));
    for _ in 0..3 {
        assert_eq!(
            write(&db).map_err(code),
            Err(Some(rusqlite::ffi::SQLITE_IOERR_WRITE))
        );
    }
    vfs.heal();
    assert_eq!(write(&db).map_err(code), Ok(1));

    drop(db);
    let counts = vfs.counts();
    assert!(counts.writes > 0 && counts.syncs > 0, "{counts:?}");
    let reads_before = counts.reads;
    // Reads: a new connection's first query reads the header and schema.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE;
    let db = Connection::open_with_flags_and_vfs(&path, flags, vfs.name()).unwrap();
    vfs.inject(Fault::transient(Kind::Read, 1));
    let count =
        |db: &Connection| db.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0));
    assert_eq!(
        count(&db).map_err(code),
        Err(Some(rusqlite::ffi::SQLITE_IOERR_READ))
    );
    assert_eq!(vfs.fired(), 5, "1 sync, 3 writes, 1 read");
    assert_eq!(count(&db).map_err(code), Ok(2));
    assert!(vfs.counts().reads > reads_before);
}
