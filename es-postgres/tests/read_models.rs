//! Read models in PostgreSQL: each event takes effect exactly once, across
//! restarts and SIGKILLs of the process running the model (RELIABILITY T9
//! on PostgreSQL), because the handlers' changes and the checkpoint commit
//! in one transaction; a failing handler leaves nothing of its batch; a
//! model's version and its single runner are guarded.
//!
//! The model counts events per stream with an `UPDATE ... n + 1`, which is
//! not idempotent: an event taken twice, or lost, shows in the counts.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    missing_docs,
    unreachable_pub
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{BoxError, Envelope, NewEvent};
use es_postgres::{Db, PostgresStore, ReadModelError};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "counted")]
pub struct Counted {
    pub n: u64,
    #[serde(default)]
    pub fail: bool,
}

#[derive(Projection, Default, Debug)]
#[projection(name = "counts", events(Counted), context = Db)]
pub struct Counts;

impl es_postgres::ReadModel for Counts {
    fn create(db: &Db) -> Result<(), postgres::Error> {
        db.batch_execute("CREATE TABLE counts (stream text PRIMARY KEY, n bigint NOT NULL)")
    }
}

impl Handle<Counted, Db> for Counts {
    fn handle(&mut self, db: &Db, e: &Envelope<Counted>) -> Result<(), BoxError> {
        db.execute(
            "INSERT INTO counts (stream, n) VALUES ($1, 1)
             ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1",
            &[&e.stream_id.as_str()],
        )?;
        if e.event.fail {
            return Err("refused".into());
        }
        Ok(())
    }
}

fn append(store: &PostgresStore, stream: &str, events: u64, fail: bool) -> u64 {
    let events = (0..events)
        .map(|n| {
            NewEvent::new(
                "counter",
                "counted",
                1,
                format!(r#"{{"n":{n},"fail":{fail}}}"#),
            )
        })
        .collect();
    let done = block_on(store.append(
        &es_core::StreamId::new(stream).unwrap(),
        es_core::ExpectedVersion::Any,
        events,
    ))
    .unwrap();
    done.last_position.unwrap()
}

/// The counts table, sorted by stream.
fn counts(schema: &str) -> Vec<(String, i64)> {
    let mut sql = postgres::Client::connect(&common::url(), postgres::NoTls).unwrap();
    sql.query(
        &format!("SELECT stream, n FROM {schema}.counts ORDER BY stream"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Every stream's version, sorted by stream.
fn versions(schema: &str) -> Vec<(String, i64)> {
    let mut sql = postgres::Client::connect(&common::url(), postgres::NoTls).unwrap();
    sql.query(
        &format!("SELECT stream_id, version FROM {schema}.es_streams ORDER BY stream_id"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn a_read_model_takes_every_event_once_and_resumes_from_its_checkpoint() {
    let store = common::store();
    let schema = store.schema().to_owned();
    let mut head = 0;
    for i in 0..10 {
        head = append(&store, &format!("c-{i}"), 30, false);
    }
    let runner = store.run_read_model(Counts).unwrap();
    assert!(runner.wait_for(head, Duration::from_secs(30)), "caught up");
    assert_eq!(counts(&schema), versions(&schema));
    // Live: a new append is taken while it runs.
    head = append(&store, "c-live", 3, false);
    assert!(runner.wait_for(head, Duration::from_secs(30)));
    // A second runner of the same model is refused while this one runs.
    assert!(matches!(
        store.run_read_model(Counts),
        Err(ReadModelError::AlreadyRunning("counts"))
    ));
    runner.stop().unwrap();
    head = append(&store, "c-0", 5, false);
    let runner = store.run_read_model(Counts).unwrap();
    assert!(runner.wait_for(head, Duration::from_secs(30)));
    runner.stop().unwrap();
    assert_eq!(counts(&schema), versions(&schema));
}

#[test]
fn a_failing_handler_leaves_nothing_of_its_batch() {
    let store = common::store();
    let schema = store.schema().to_owned();
    let before = append(&store, "c-1", 4, false);
    let runner = store.run_read_model(Counts).unwrap();
    assert!(runner.wait_for(before, Duration::from_secs(30)));
    let _ = runner.stop().unwrap();
    // One batch: two good events, then one its handler refuses.
    append(&store, "c-2", 2, false);
    let refused = append(&store, "c-3", 1, true);
    let runner = store.run_read_model(Counts).unwrap();
    assert!(!runner.wait_for(refused, Duration::from_secs(30)));
    match runner.stop() {
        Err(ReadModelError::Projection(e)) => {
            assert_eq!(
                (e.projection, e.position, e.stream.as_str()),
                ("counts", refused, "c-3")
            );
        }
        other => panic!("expected the handler's refusal, got {other:?}"),
    }
    // Neither c-2's events nor c-3's partial row were committed.
    assert_eq!(counts(&schema), vec![("c-1".to_owned(), 4)]);
}

#[test]
fn a_model_of_another_version_is_refused() {
    let store = common::store();
    let runner = store.run_read_model(Counts).unwrap();
    runner.stop().unwrap();
    let mut sql = postgres::Client::connect(&common::url(), postgres::NoTls).unwrap();
    sql.batch_execute(&format!(
        "UPDATE {}.es_read_models SET version = 7 WHERE name = 'counts'",
        store.schema()
    ))
    .unwrap();
    assert!(matches!(
        store.run_read_model(Counts),
        Err(ReadModelError::VersionChanged {
            name: "counts",
            stored: 7,
            code: 1
        })
    ));
}

const ROLE: &str = "ES_PG_T9_ROLE";

/// The child: runs the model until killed.
#[test]
fn t9_child() {
    let Ok(schema) = std::env::var(ROLE) else {
        return;
    };
    let store = PostgresStore::options()
        .schema(schema)
        .connect(&common::url())
        .unwrap();
    let runner = store.run_read_model(Counts).unwrap();
    println!("RUNNING");
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let _ = runner.position();
    }
}

/// T9 on PostgreSQL: the process running the model is killed with SIGKILL
/// while it takes events (ten times, behind the head and at it); after a
/// last run the counts equal the streams' versions exactly.
#[test]
fn t9_kill_9_while_taking_events_each_event_counts_once() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let store = common::store();
    let schema = store.schema().to_owned();
    for cycle in 0..10u64 {
        for i in 0..5 {
            append(
                &store,
                &format!("c-{}", (cycle + i) % 7),
                40 + cycle * 13,
                false,
            );
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["t9_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, &schema)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait until the model runs, then kill it at some point of its work.
        while let Some(Ok(line)) = lines.next() {
            if line.contains("RUNNING") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5 + (cycle * 37) % 150));
        child.kill().unwrap();
        let _ = child.wait();
    }
    let head = block_on(store.last_position()).unwrap();
    let runner = store.run_read_model(Counts).unwrap();
    assert!(runner.wait_for(head, Duration::from_mins(1)));
    runner.stop().unwrap();
    assert_eq!(counts(&schema), versions(&schema));
}
