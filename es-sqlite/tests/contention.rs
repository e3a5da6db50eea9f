//! One process, one database: contention, locks held by others, and the
//! repository's snapshots on SQLite.

mod common;

use std::time::Duration;

use common::history::{self, Recorded, Recorder};

use es_core::prelude::*;
use es_core::{Error, NewEvent, Snapshot};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

/// A counter.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Incremented {
    /// By how much.
    pub by: u64,
}

/// A counter with snapshots every 10 versions.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "counter", events(Incremented), snapshot(every = 10))]
pub struct Counter {
    total: u64,
    increments: u64,
}

impl Apply<Incremented> for Counter {
    fn apply(&mut self, e: &Incremented) {
        self.total += e.by;
        self.increments += 1;
    }
}

/// RELIABILITY T3: 16 tasks on one stream through the repository; every
/// command lands exactly once, none is lost.
///
/// RELIABILITY T13: each task's repository works through a recording store
/// (every fold, version, append and conflict is logged), and the task reads
/// the stream or `$all` after each command; the history checks clean
/// against the final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_sixteen_tasks_on_one_stream_lose_no_update() {
    let store = SqliteStore::open_temporary().unwrap();
    let counters = Repository::<Counter, _>::new(store.clone()).with_retries(10_000);
    let (recorder, lines) = Recorder::memory();
    // 20 commands a task in the PR tier; the long tier sets ES_T3_COMMANDS
    // (in all, over the 16 tasks).
    let per_task: u64 = std::env::var("ES_T3_COMMANDS")
        .map_or(20, |v| {
            v.parse::<u64>().expect("ES_T3_COMMANDS is a number") / 16
        })
        .max(1);
    let commands = per_task * 16;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let session = recorder.session(format!("task-{task}"));
            let counters =
                Repository::<Counter, _>::new(Recorded::new(store.clone(), session.clone()))
                    .with_retries(10_000);
            let store = store.clone();
            let stream = counters.stream_id("c").unwrap();
            tokio::spawn(async move {
                let mut attempts = 0;
                for command in 0..per_task {
                    let done = counters
                        .execute("c", |_| Incremented { by: 1 })
                        .await
                        .unwrap();
                    attempts += done.attempts;
                    // The whole stream in the PR tier; the last stretch of
                    // it (what 16 tasks may have added since) in a long
                    // run, whose reads would otherwise grow with the log.
                    let from = if per_task <= 20 {
                        1
                    } else {
                        done.version.saturating_sub(32).max(1)
                    };
                    if command % 2 == 0 {
                        session.read_stream(&store, &stream, from).await.unwrap();
                    } else {
                        session.read_all(&store, from).await.unwrap();
                    }
                }
                attempts
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    let now = counters.load("c").await.unwrap();
    assert_eq!(
        (now.version, now.total, now.increments),
        (commands, commands, commands)
    );
    eprintln!(
        "T3: {commands} commands, {attempts} attempts ({} conflicts retried)",
        attempts - u32::try_from(commands).expect("a u32 of commands")
    );
    let lines = lines.lock().unwrap().clone();
    let report = history::check(&lines, &history::final_state(&store).await);
    eprintln!(
        "T13 on T3: {} history lines, {} operations ({} appends, {} reads), {} events: {} violations",
        lines.len(),
        report.operations,
        report.appends,
        report.reads,
        report.events,
        report.violations.len()
    );
    report.assert_clean("T3");
    assert_eq!(
        report.appends, attempts as usize,
        "every attempt is in the history"
    );
    // The snapshot was taken along the way, and agrees with the events.
    store.flush().await.unwrap();
    let stream = counters.stream_id("c").unwrap();
    let snapshot = store
        .load_snapshot(&stream)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.version % 10, 0);
    let at: Counter = serde_json::from_slice(&snapshot.state).unwrap();
    assert_eq!(
        at,
        counters.load_at("c", snapshot.version).await.unwrap().state
    );
}

/// A lock held by another connection is waited for up to the busy timeout,
/// then reported as `Error::Busy`; nothing is written, and appends work
/// again once the lock is gone.
#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let store = SqliteStore::options()
        .busy_timeout(Duration::from_millis(100))
        .open(&db)
        .unwrap();
    let stream = StreamId::new("b").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("t", "x", 1, "{}")],
        )
        .await
        .unwrap();

    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let blocked = store
        .append(
            &stream,
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("t", "x", 1, "{}")],
        )
        .await;
    assert!(matches!(blocked, Err(Error::Busy)), "{blocked:?}");
    other.execute_batch("ROLLBACK").unwrap();

    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        1,
        "the refused append wrote nothing"
    );
    let done = store
        .append(
            &stream,
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("t", "x", 1, "{}")],
        )
        .await
        .unwrap();
    assert_eq!(done.version, 2);
}

/// Snapshots are stored in the file and used after a restart; deleting
/// them changes no answer.
#[tokio::test]
async fn snapshots_survive_a_restart_and_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("snap.db");
    {
        let counters = Repository::<Counter, _>::new(SqliteStore::open(&db).unwrap());
        for by in 1..=25 {
            counters.execute("c", |_| Incremented { by }).await.unwrap();
        }
    }
    let store = SqliteStore::open(&db).unwrap();
    let stream = StreamId::new("counter-c").unwrap();
    let snapshot = store
        .load_snapshot(&stream)
        .await
        .unwrap()
        .expect("a snapshot was stored");
    assert_eq!((snapshot.version, snapshot.schema_version), (20, 1));
    let counters = Repository::<Counter, _>::new(store.clone());
    let with = counters.load("c").await.unwrap();
    assert_eq!((with.version, with.total), (25, 325));
    drop((counters, store));

    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute("DELETE FROM snapshots", []).unwrap();
    drop(raw);
    let counters = Repository::<Counter, _>::new(SqliteStore::open(&db).unwrap());
    assert_eq!(counters.load("c").await.unwrap(), with);
}

/// A stored snapshot of an older state schema is ignored and replaced.
#[tokio::test]
async fn a_stale_snapshot_is_ignored_and_replaced() {
    let store = SqliteStore::open_temporary().unwrap();
    let counters = Repository::<Counter, _>::new(store.clone());
    for by in 1..=12 {
        counters.execute("c", |_| Incremented { by }).await.unwrap();
    }
    let stream = counters.stream_id("c").unwrap();
    let good = store.load_snapshot(&stream).await.unwrap().unwrap();
    let stale = Snapshot {
        schema_version: 0,
        version: 12,
        state: b"{\"old\":true}".to_vec(),
        ..good
    };
    store.save_snapshot(stale).await.unwrap();
    let loaded = counters.load("c").await.unwrap();
    assert_eq!((loaded.version, loaded.total), (12, 78));
    // The load queued a new snapshot; wait until it is stored.
    store.flush().await.unwrap();
    let replaced = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!((replaced.schema_version, replaced.version), (1, 12));
}
