//! RELIABILITY T7: I/O errors. A fixed small workload (open, appends, a
//! snapshot, reads, a checkpoint, more appends, the audit chain, close)
//! runs once on the test VFS to count its reads, writes and syncs (K of
//! each); then, for every N in 1..=K of each kind, transient and
//! persistent, again with the Nth operation failing. Each run: no panic;
//! every call Ok or a typed error (never `Error::Backend`); after a failed
//! sync every write refused with `Error::SyncFailed`; and once the fault is
//! gone, the ★ invariants hold and nothing acknowledged is lost, both in
//! the files as the run left them (a process restart) and in the files a
//! power cut right after the run would leave (where a failed sync lost its
//! writes for good).

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::too_many_lines)]
mod common;

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use common::oracle::{self, Attempt};
use common::{all_events, check_integrity, scratch_dir, stream_events};
use es_core::blocking::block_on;
use es_core::{
    CheckpointStore, Error, EventStore, ExpectedVersion, Snapshot, SnapshotStore, StreamId,
    Timestamp,
};
use es_sqlite::{ChainError, SqliteStore};
use es_test_vfs::{Fault, Kind, TestVfs, Unsynced};

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics anywhere in the process so far, the store's threads included.
fn panics() -> u64 {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// A store's error as the sweep sees it: `Backend` is the one a caller
/// cannot match on.
fn typed(e: &Error) -> bool {
    !matches!(e, Error::Backend(_))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Append,
    SaveSnapshot,
    SaveCheckpoint,
    Read,
}

/// One call of the workload: what it was, whether a fault had fired before
/// it started, and its error.
struct Outcome {
    call: Call,
    fired_before: bool,
    error: Option<Error>,
}

/// What a run did.
struct Run {
    opened: bool,
    /// Why the store did not open.
    open_error: Option<es_sqlite::OpenError>,
    /// A fault fired while the store opened, and it opened anyway.
    fired_in_open: bool,
    attempts: Vec<Attempt>,
    /// The snapshot saved, if its save returned Ok.
    snapshot: Option<Snapshot>,
    /// The checkpoint saved, if its save returned Ok.
    checkpoint: Option<u64>,
    outcomes: Vec<Outcome>,
}

const SIZES: [usize; 8] = [1, 3, 5, 2, 4, 6, 1, 2];

fn snapshot_of(stream: &StreamId, version: u64) -> Snapshot {
    Snapshot {
        stream_id: stream.clone(),
        aggregate_type: "oracle".into(),
        version,
        schema_version: 1,
        state: format!(r#"{{"seen":{version}}}"#).into_bytes(),
        taken_at: Timestamp::now(),
    }
}

/// The workload, every call in turn (no concurrency, so the Nth operation
/// is the same one in every run).
fn workload(vfs: &TestVfs, db: &Path) -> Run {
    let mut run = Run {
        opened: false,
        open_error: None,
        fired_in_open: false,
        attempts: Vec::new(),
        snapshot: None,
        checkpoint: None,
        outcomes: Vec::new(),
    };
    let store = match SqliteStore::options().vfs(vfs.name()).open(db) {
        Ok(store) => store,
        Err(e) => {
            run.open_error = Some(e);
            return run;
        }
    };
    run.opened = true;
    run.fired_in_open = vfs.fired() > 0;
    let note = |run: &mut Run, call: Call, fired_before: bool, result: Result<(), Error>| {
        run.outcomes.push(Outcome {
            call,
            fired_before,
            error: result.err(),
        });
    };
    let streams: Vec<StreamId> = (0..3)
        .map(|s| StreamId::new(format!("s-{s}")).expect("valid"))
        .collect();
    let append = |run: &mut Run, i: usize| {
        let mut attempt = Attempt::new(format!("b{i}"), streams[i % 3].as_str(), SIZES[i]);
        let fired = vfs.fired() > 0;
        let result =
            block_on(store.append(&attempt.stream, ExpectedVersion::Any, attempt.events()));
        if let Ok(r) = &result {
            attempt.acked(r, vfs.ops());
        }
        run.attempts.push(attempt);
        (fired, result.map(drop))
    };
    for i in 0..6 {
        let (fired, result) = append(&mut run, i);
        note(&mut run, Call::Append, fired, result);
    }

    let version = block_on(store.stream_version(&streams[0]));
    let fired = vfs.fired() > 0;
    note(
        &mut run,
        Call::Read,
        fired,
        version.as_ref().map(drop).map_err(clone_error),
    );
    let snapshot = snapshot_of(&streams[0], version.unwrap_or(0).max(1));
    let fired = vfs.fired() > 0;
    let saved = block_on(store.save_snapshot(snapshot.clone()));
    run.snapshot = saved.is_ok().then_some(snapshot);
    note(&mut run, Call::SaveSnapshot, fired, saved);

    let fired = vfs.fired() > 0;
    let read = read_stream(&store, &streams[1]);
    note(&mut run, Call::Read, fired, read);
    let fired = vfs.fired() > 0;
    let all = read_all(&store);
    note(
        &mut run,
        Call::Read,
        fired,
        all.as_ref().map(drop).map_err(clone_error),
    );
    let fired = vfs.fired() > 0;
    let loaded = block_on(store.load_snapshot(&streams[0])).map(drop);
    note(&mut run, Call::Read, fired, loaded);

    let position = all.map_or(1, |n| n.max(1));
    let fired = vfs.fired() > 0;
    let saved = block_on(store.save_checkpoint("t7-model", position));
    run.checkpoint = saved.is_ok().then_some(position);
    note(&mut run, Call::SaveCheckpoint, fired, saved);
    let fired = vfs.fired() > 0;
    let loaded = block_on(store.load_checkpoint("t7-model")).map(drop);
    note(&mut run, Call::Read, fired, loaded);

    for i in 6..SIZES.len() {
        let (fired, result) = append(&mut run, i);
        note(&mut run, Call::Append, fired, result);
    }
    let fired = vfs.fired() > 0;
    let verified = match block_on(store.verify_chain()) {
        Ok(_) => Ok(()),
        Err(ChainError::Store(e)) => Err(e),
        Err(other) => panic!("the chain of a store with I/O errors is broken: {other}"),
    };
    note(&mut run, Call::Read, fired, verified);
    drop(store);
    run
}

/// The errors the sweep keeps are compared, not shared: a copy good enough
/// to match on.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Io { detail } => Error::Io {
            detail: detail.clone(),
        },
        Error::SyncFailed => Error::SyncFailed,
        Error::Busy => Error::Busy,
        Error::StorageFull => Error::StorageFull,
        Error::ReadOnly => Error::ReadOnly,
        Error::Closed => Error::Closed,
        Error::Corrupt { detail } => Error::Corrupt {
            detail: detail.clone(),
        },
        other => Error::backend(other.to_string()),
    }
}

fn read_stream(store: &SqliteStore, stream: &StreamId) -> Result<(), Error> {
    use es_core::store::next;
    block_on(async {
        let mut events = store.read_stream(stream, es_core::ReadRange::all());
        while let Some(e) = next(&mut events).await {
            e?;
        }
        Ok(())
    })
}

/// Reads `$all`; its last position.
fn read_all(store: &SqliteStore) -> Result<u64, Error> {
    use es_core::store::next;
    block_on(async {
        let mut events = store.read_all(0);
        let mut last = 0;
        while let Some(e) = next(&mut events).await {
            last = e?.position;
        }
        Ok(last)
    })
}

/// The ★ invariants of the files in `dir`, opened without the test VFS:
/// nothing acknowledged lost, the snapshot and checkpoint that were
/// acknowledged there, the chain verifying, the file intact.
fn verify(what: &str, db: &Path, run: &Run) {
    let store =
        SqliteStore::open(db).unwrap_or_else(|e| panic!("{what}: the store reopens: {e:?}"));
    let events = block_on(all_events(&store));
    oracle::check(what, &run.attempts, &events, |_| true);
    if let Some(snapshot) = &run.snapshot {
        let loaded = block_on(store.load_snapshot(&snapshot.stream_id))
            .unwrap_or_else(|e| panic!("{what}: the snapshot loads: {e}"));
        let loaded = loaded.unwrap_or_else(|| panic!("{what}: the acknowledged snapshot is lost"));
        assert_eq!(
            (loaded.version, &loaded.state),
            (snapshot.version, &snapshot.state),
            "{what}: the snapshot"
        );
    }
    if run.checkpoint.is_some() {
        let loaded = block_on(store.load_checkpoint("t7-model"))
            .unwrap_or_else(|e| panic!("{what}: the checkpoint loads: {e}"));
        assert_eq!(
            loaded, run.checkpoint,
            "{what}: the acknowledged checkpoint"
        );
    }
    let report = block_on(store.verify_chain())
        .unwrap_or_else(|e| panic!("{what}: the audit chain verifies: {e}"));
    assert_eq!(report.events, events.len() as u64, "{what}: chain length");
    // The store still writes.
    let stream = StreamId::new("after").expect("valid");
    let after = Attempt::new("after".into(), stream.as_str(), 1);
    block_on(store.append(&stream, ExpectedVersion::Any, after.events()))
        .unwrap_or_else(|e| panic!("{what}: an append after reopening: {e}"));
    assert_eq!(block_on(stream_events(&store, &stream)).len(), 1);
    drop(store);
    assert_eq!(check_integrity(db, true), "ok", "{what}: integrity");
}

/// One case: the workload with `fault`, then every check.
fn case(vfs: &TestVfs, fault: Option<Fault>) -> Run {
    let what = format!("{fault:?}");
    let dir = scratch_dir();
    let db = dir.path().join("events.db");
    vfs.reset();
    if let Some(fault) = fault {
        vfs.inject(fault);
    }
    let panics_before = panics();
    let run = workload(vfs, &db);
    vfs.heal();
    assert_eq!(panics(), panics_before, "{what}: a panic");
    for outcome in &run.outcomes {
        if let Some(e) = &outcome.error {
            assert!(typed(e), "{what}: {:?} failed untyped: {e:?}", outcome.call);
        }
    }
    if let Some(e) = &run.open_error {
        assert!(
            matches!(e, es_sqlite::OpenError::Io { .. }),
            "{what}: the open failed other than with an I/O error: {e:?}"
        );
    }
    if fault.is_some_and(|f| f.kind == Kind::Sync) {
        assert!(
            !run.fired_in_open,
            "{what}: the store opened although a sync failed"
        );
        for outcome in &run.outcomes {
            if outcome.fired_before && outcome.call != Call::Read {
                assert!(
                    matches!(outcome.error, Some(Error::SyncFailed)),
                    "{what}: a {:?} after a failed sync: {:?}",
                    outcome.call,
                    outcome.error
                );
            }
        }
    }
    // A power cut right after the run, from the log (before the live files
    // are opened again, which writes them).
    let image = vfs.log().image(usize::MAX, Unsynced::Dropped);
    let cut = scratch_dir();
    image.write_to(cut.path()).expect("the image is written");
    if run.opened {
        verify(&format!("{what}, reopened"), &db, &run);
    }
    verify(
        &format!("{what}, after a power cut"),
        &cut.path().join("events.db"),
        &run,
    );
    run
}

#[test]
fn t7_io_error_sweep() {
    let vfs = TestVfs::register("t7-sweep").expect("registered");
    let clean = case(&vfs, None);
    let counts = vfs.counts();
    assert!(
        clean.outcomes.iter().all(|o| o.error.is_none()),
        "a clean run"
    );
    // The same workload, the same operations: N names one operation.
    case(&vfs, None);
    assert_eq!(vfs.counts(), counts, "the workload's I/O is deterministic");

    eprintln!("T7: the workload does {counts:?}");
    let mut cases = 0;
    let mut errors: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut refused_after_sync = 0;
    for kind in [Kind::Write, Kind::Sync, Kind::Read] {
        let k = counts.of(kind);
        for n in 1..=k {
            for fault in [Fault::transient(kind, n), Fault::persistent(kind, n)] {
                let run = case(&vfs, Some(fault));
                assert!(vfs.fired() > 0, "{fault:?} fired");
                cases += 1;
                if run.open_error.is_some() {
                    *errors.entry("open: OpenError::Io".into()).or_default() += 1;
                }
                for outcome in &run.outcomes {
                    if let Some(e) = &outcome.error {
                        let variant = format!("{e:?}");
                        let variant = variant.split([' ', '(', '{']).next().unwrap_or_default();
                        *errors
                            .entry(format!("{:?}: {variant}", outcome.call))
                            .or_default() += 1;
                    }
                }
                refused_after_sync += run
                    .outcomes
                    .iter()
                    .filter(|o| o.fired_before && matches!(o.error, Some(Error::SyncFailed)))
                    .count();
            }
        }
    }
    eprintln!(
        "T7: K = {} reads, {} writes, {} syncs; {cases} cases; calls failed (all typed): {errors:?}; \
         {refused_after_sync} writes refused after a failed sync",
        counts.reads, counts.writes, counts.syncs
    );
}

#[test]
fn t7_a_failed_sync_refuses_writes_until_reopened() {
    let vfs = TestVfs::register("t7-refuse").expect("registered");
    let dir = scratch_dir();
    let db = dir.path().join("events.db");
    let store = SqliteStore::options()
        .vfs(vfs.name())
        .open(&db)
        .expect("opens");
    let first = Attempt::new("first".into(), "s-1", 2);
    block_on(store.append(&first.stream, ExpectedVersion::Any, first.events())).expect("first");

    vfs.inject(Fault::transient(Kind::Sync, 1));
    let second = Attempt::new("second".into(), "s-1", 1);
    let failed = block_on(store.append(&second.stream, ExpectedVersion::Any, second.events()));
    assert!(matches!(failed, Err(Error::SyncFailed)), "{failed:?}");
    assert_eq!(vfs.fired(), 1);
    assert_eq!(
        failed.expect_err("failed").to_string(),
        "a flush to disk failed: the store refuses writes until it is reopened"
    );

    // Syncs work again, but a retried flush proves nothing: refused.
    let syncs = vfs.counts().syncs;
    let third = Attempt::new("third".into(), "s-2", 1);
    let refused = block_on(store.append(&third.stream, ExpectedVersion::Any, third.events()));
    assert!(matches!(refused, Err(Error::SyncFailed)), "{refused:?}");
    let snapshot = block_on(store.save_snapshot(snapshot_of(&first.stream, 2)));
    assert!(matches!(snapshot, Err(Error::SyncFailed)), "{snapshot:?}");
    let checkpoint = block_on(store.save_checkpoint("t7", 2));
    assert!(
        matches!(checkpoint, Err(Error::SyncFailed)),
        "{checkpoint:?}"
    );
    assert!(matches!(block_on(store.flush()), Err(Error::SyncFailed)));
    assert_eq!(vfs.counts().syncs, syncs, "nothing more was flushed");
    // Reads go on.
    let read = block_on(stream_events(&store, &first.stream));
    assert_eq!(read.len(), 2, "the failed append is not visible");
    drop(store);

    // Reopened: writes again.
    let store = SqliteStore::options()
        .vfs(vfs.name())
        .open(&db)
        .expect("reopens");
    block_on(store.append(&third.stream, ExpectedVersion::Any, third.events()))
        .expect("an append after reopening");
    let events = block_on(all_events(&store));
    let found = oracle::check("reopened", &[first, second, third], &events, |_| true);
    assert!(found.stored >= 2, "{found:?}");
}

/// The same after a checkpoint's flush fails: SQLite's automatic checkpoint
/// runs inside a commit and ignores its errors; the writer runs it itself.
#[test]
fn t7_a_failed_checkpoint_sync_refuses_writes_too() {
    let vfs = TestVfs::register("t7-checkpoint").expect("registered");
    let stream = StreamId::new("big-1").expect("valid");
    let appends = 400;
    let run = |fault: Option<u64>| {
        vfs.reset();
        let dir = scratch_dir();
        let db = dir.path().join("events.db");
        let store = SqliteStore::options()
            .vfs(vfs.name())
            .open(&db)
            .expect("opens");
        let opened = vfs.counts().syncs;
        if let Some(n) = fault {
            vfs.inject(Fault::transient(Kind::Sync, n));
        }
        let mut results = Vec::new();
        for i in 0..appends {
            let attempt = Attempt::new(format!("c{i}"), stream.as_str(), 4);
            let fired = vfs.fired() > 0;
            let result = block_on(store.append(&stream, ExpectedVersion::Any, attempt.events()));
            results.push((fired, result));
        }
        drop(store);
        (opened, vfs.log(), results, dir)
    };
    // A clean run: which sync is the automatic checkpoint's flush of the
    // database file?
    let (opened, log, results, _dir) = run(None);
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    let db_file = log
        .files()
        .iter()
        .position(|p| p.ends_with("events.db"))
        .expect("the database file is recorded");
    let mut syncs = 0;
    let mut checkpoint = None;
    for op in log.ops() {
        if let es_test_vfs::Op::Sync { file } = op {
            syncs += 1;
            if syncs > opened && *file == db_file {
                checkpoint = Some(syncs - opened);
                break;
            }
        }
    }
    let n = checkpoint.expect("an automatic checkpoint flushed the database file");

    let (_, _, results, _dir) = run(Some(n));
    assert_eq!(vfs.fired(), 1);
    let seen = results
        .iter()
        .position(|(fired, _)| *fired)
        .expect("appends after the failed flush");
    assert!(
        results[..seen].iter().all(|(_, r)| r.is_ok()),
        "the commit that ran the checkpoint succeeded"
    );
    for (_, result) in &results[seen..] {
        assert!(matches!(result, Err(Error::SyncFailed)), "{result:?}");
    }
}
