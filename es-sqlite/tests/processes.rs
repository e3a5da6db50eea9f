//! Several processes on one database file.
//!
//! - RELIABILITY T3b across processes: 2 processes x 4 tasks race for each
//!   version of one stream; exactly one append wins each version, the
//!   losers consume no position, and the audit chain runs through both
//!   processes' events.
//! - RELIABILITY T4: 2 processes x 4 tasks at moderate load see no
//!   `Error::Busy`, and every write transaction begins `IMMEDIATE` (checked
//!   on every statement through the trace hook); the audit chain verifies.
//!
//! RELIABILITY T13: in both, each child logs every operation it makes (the
//! versions it reads, its appends and their conflicts, reads of the stream
//! after each win in T3b, of its stream's version after each append in T4)
//! on the machine's monotonic clock; the parent
//! merges the two processes' histories and checks them against the final
//! state: a conflict's actual version, seen in one process, must be the end
//! of an append of either process invoked before it.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::too_many_lines)]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::history::{self, Line, Recorder};
use common::{check_integrity, role, spawn_child};
use es_core::store::next;
use es_core::{Error, EventStore, ExpectedVersion, NewEvent, StreamId};
use es_sqlite::SqliteStore;

fn db_from_env() -> PathBuf {
    PathBuf::from(std::env::var(common::DB).expect("database path"))
}

/// Waits for the file `go` next to the database: all children start together.
fn wait_for_go(db: &Path) {
    let go = db.with_extension("go");
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `processes` children of `test` in `role`, releases them together,
/// and returns each one's stdout lines.
fn run_children(test: &str, role: &str, db: &Path, processes: usize) -> Vec<Vec<String>> {
    let mut children: Vec<_> = (0..processes)
        .map(|_| {
            let mut child = spawn_child(test, role, db, &[]);
            let stdout = child.stdout.take().expect("piped stdout");
            let lines = std::thread::spawn(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            });
            (child, lines)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(db.with_extension("go"), b"go").expect("start signal");
    children
        .iter_mut()
        .map(|(child, _)| child.wait().expect("child exits"))
        .for_each(|status| assert!(status.success(), "a child failed: {status}"));
    children
        .into_iter()
        .map(|(_, lines)| lines.join().expect("reader"))
        .collect()
}

fn number(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no `{key}` line in {lines:?}"))
}

const ROUNDS: u64 = 300;

fn t3b_child(db: &Path) {
    let store = SqliteStore::open(db).expect("store opens");
    let recorder = Recorder::stdout();
    wait_for_go(db);
    let stream = StreamId::new("race").expect("valid id");
    let (wins, conflicts) = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let (store, stream) = (store.clone(), stream.clone());
                let session = recorder.session(format!("{}.{task}", std::process::id()));
                scope.spawn(move || {
                    let (mut wins, mut conflicts) = (0u64, 0u64);
                    loop {
                        let version =
                            es_core::blocking::block_on(session.stream_version(&store, &stream))
                                .expect("version");
                        if version >= ROUNDS {
                            return (wins, conflicts);
                        }
                        let event =
                            NewEvent::new("race", "won", 1, format!(r#"{{"at":{version}}}"#));
                        match es_core::blocking::block_on(session.append(
                            &store,
                            &stream,
                            ExpectedVersion::Exact(version),
                            vec![event],
                        )) {
                            Ok(_) => {
                                wins += 1;
                                es_core::blocking::block_on(session.read_stream(
                                    &store,
                                    &stream,
                                    version.saturating_sub(3).max(1),
                                ))
                                .expect("the stream reads");
                            }
                            Err(Error::Conflict(c)) => {
                                assert!(c.actual > version, "a conflict reports the newer version");
                                conflicts += 1;
                            }
                            Err(e) => panic!("unexpected error in the race: {e}"),
                        }
                    }
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| t.join().expect("task"))
            .fold((0, 0), |(w, c), (tw, tc)| (w + tw, c + tc))
    });
    println!("WINS {wins}");
    println!("CONFLICTS {conflicts}");
}

#[test]
fn t3b_two_processes_race_for_each_version() {
    if role().as_deref() == Some("t3b") {
        return t3b_child(&db_from_env());
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("t3b.db");
    drop(SqliteStore::open(&db).expect("create the database"));
    let outputs = run_children("t3b_two_processes_race_for_each_version", "t3b", &db, 2);
    let wins: u64 = outputs.iter().map(|o| number(o, "WINS")).sum();
    let conflicts: u64 = outputs.iter().map(|o| number(o, "CONFLICTS")).sum();
    eprintln!(
        "T3b: {ROUNDS} versions, {wins} wins, {conflicts} conflicts over 2 processes x 4 tasks"
    );
    assert_eq!(wins, ROUNDS, "exactly one winner per version");

    let store = SqliteStore::open(&db).expect("reopen");
    let positions: Vec<(u64, u64)> = es_core::blocking::block_on(async {
        let mut events = store.read_all(0);
        let mut out = Vec::new();
        while let Some(e) = next(&mut events).await {
            let e = e.expect("read");
            out.push((e.version, e.position));
        }
        out
    });
    let expected: Vec<(u64, u64)> = (1..=ROUNDS).map(|v| (v, v)).collect();
    assert_eq!(
        positions, expected,
        "versions and positions are gapless: losers consumed nothing"
    );
    // Each process chained from the other's events.
    let report = es_core::blocking::block_on(store.verify_chain()).expect("the chain verifies");
    assert_eq!(report.events, ROUNDS);
    check_history("T3b", &outputs, &store);
    assert_eq!(check_integrity(&db, true), "ok");
}

/// Merges the children's histories and checks them against the store.
fn check_history(test: &str, outputs: &[Vec<String>], store: &SqliteStore) {
    let lines: Vec<Line> = outputs.iter().flat_map(Line::parse_all).collect();
    let report = history::check(
        &lines,
        &es_core::blocking::block_on(history::final_state(store)),
    );
    eprintln!(
        "T13 on {test}: {} history lines of {} processes, {} operations ({} appends, {} reads), {} events: {} violations",
        lines.len(),
        outputs.len(),
        report.operations,
        report.appends,
        report.reads,
        report.events,
        report.violations.len()
    );
    report.assert_clean(test);
    assert!(
        report.operations > 0,
        "the children logged their operations"
    );
}

static BEGIN_IMMEDIATE: AtomicU64 = AtomicU64::new(0);
static OTHER_BEGIN: AtomicU64 = AtomicU64::new(0);

/// The trace hook: counts how write transactions begin.
fn count_begins(sql: &str) {
    let sql = sql.trim_start().to_ascii_uppercase();
    if sql.starts_with("BEGIN IMMEDIATE") {
        BEGIN_IMMEDIATE.fetch_add(1, Ordering::Relaxed);
    } else if sql.starts_with("BEGIN") {
        OTHER_BEGIN.fetch_add(1, Ordering::Relaxed);
    }
}

fn t4_child(db: &Path) {
    let store = SqliteStore::options()
        .trace(count_begins)
        .open(db)
        .expect("store opens");
    let recorder = Recorder::stdout();
    wait_for_go(db);
    let deadline = Instant::now() + Duration::from_secs(2);
    let (ok, busy) = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let store = store.clone();
                let session = recorder.session(format!("{}.{task}", std::process::id()));
                scope.spawn(move || {
                    let (mut ok, mut busy) = (0u64, 0u64);
                    let stream = StreamId::new(format!("p{}-t{task}", std::process::id()))
                        .expect("valid id");
                    while Instant::now() < deadline {
                        let event = NewEvent::new("load", "tick", 1, "{}");
                        match es_core::blocking::block_on(session.append(
                            &store,
                            &stream,
                            ExpectedVersion::Any,
                            vec![event],
                        )) {
                            Ok(_) => ok += 1,
                            Err(Error::Busy) => busy += 1,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                        es_core::blocking::block_on(session.stream_version(&store, &stream))
                            .expect("the version reads");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (ok, busy)
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| t.join().expect("task"))
            .fold((0, 0), |(o, b), (to, tb)| (o + to, b + tb))
    });
    drop(store);
    println!("OK {ok}");
    println!("BUSY {busy}");
    println!("IMMEDIATE {}", BEGIN_IMMEDIATE.load(Ordering::Relaxed));
    println!("OTHER {}", OTHER_BEGIN.load(Ordering::Relaxed));
}

#[test]
fn t4_two_processes_see_no_busy_and_begin_immediate() {
    if role().as_deref() == Some("t4") {
        return t4_child(&db_from_env());
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("t4.db");
    drop(SqliteStore::open(&db).expect("create the database"));
    let outputs = run_children(
        "t4_two_processes_see_no_busy_and_begin_immediate",
        "t4",
        &db,
        2,
    );
    for output in &outputs {
        let (ok, busy) = (number(output, "OK"), number(output, "BUSY"));
        let (immediate, other) = (number(output, "IMMEDIATE"), number(output, "OTHER"));
        eprintln!(
            "T4 process: {ok} appends, {busy} busy, {immediate} BEGIN IMMEDIATE, {other} other BEGIN"
        );
        assert!(ok > 0, "the process appended");
        assert_eq!(busy, 0, "no SQLITE_BUSY reached a caller");
        assert!(immediate > 0, "write transactions were traced");
        assert_eq!(other, 0, "every write transaction begins IMMEDIATE");
    }
    let store = SqliteStore::open(&db).expect("reopen");
    let report = es_core::blocking::block_on(store.verify_chain()).expect("the chain verifies");
    let appended: u64 = outputs.iter().map(|o| number(o, "OK")).sum();
    assert_eq!(report.events, appended, "both processes' events, one chain");
    check_history("T4", &outputs, &store);
    drop(store);
    assert_eq!(check_integrity(&db, true), "ok");
}
