//! RELIABILITY T1 on PostgreSQL: a child process appends from four threads
//! and is killed with SIGKILL at random moments. After each kill, read
//! through a new store: every acknowledged append is stored, no append is
//! partly stored, no event id twice, positions gapless, versions
//! contiguous; and the next child appends on. A killed client's open
//! transaction is rolled back by the server; the head row it held locked
//! is released, so nothing waits on the dead writer.
//!
//! `ES_PG_T1_CYCLES` sets the number of kills (default 8).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::check::{check_log, ids};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
use es_postgres::PostgresStore;

const ROLE: &str = "ES_PG_T1_ROLE";

/// A small, seeded generator: the same kills for the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The child: appends until killed, `TRY ids` before each append and
/// `ACK ids` after it returned Ok.
#[test]
fn t1_child() {
    let Ok(schema) = std::env::var(ROLE) else {
        return;
    };
    let store = PostgresStore::options()
        .schema(schema)
        .connect(&common::url())
        .expect("the child opens the store");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1) ^ u64::from(std::process::id()));
                loop {
                    let stream = StreamId::new(format!("s-{}", rng.below(20))).unwrap();
                    let events: Vec<NewEvent> = (0..=rng.below(5))
                        .map(|k| NewEvent::new("s", "appended", 1, format!(r#"{{"k":{k}}}"#)))
                        .collect();
                    let line: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
                    let line = line.join(",");
                    println!("TRY {line}");
                    if block_on(store.append(&stream, ExpectedVersion::Any, events)).is_ok() {
                        println!("ACK {line}");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

#[test]
fn t1_kill_9_while_appending() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let cycles: u64 = std::env::var("ES_PG_T1_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let schema = common::fresh_schema();
    let mut rng = Rng(0x5eed);
    let (mut acked, mut tried) = (Vec::new(), Vec::new());
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["t1_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, &schema)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // The test harness may print `test t1_child ... ` before the
        // child's first line, on the same line.
        for line in reader.join().unwrap() {
            if let Some((_, rest)) = line.split_once("ACK ") {
                acked.push(ids(rest));
            } else if let Some((_, rest)) = line.split_once("TRY ") {
                tried.push(ids(rest));
            }
        }
        let store = PostgresStore::options()
            .schema(schema.clone())
            .connect(&common::url())
            .expect("opens after the kill");
        let log = common::read_all(&store, 1);
        let stored = check_log(&log, &acked, &tried);

        assert!(
            stored >= acked.len(),
            "cycle {cycle}: {stored} stored, {} acknowledged",
            acked.len()
        );
    }
    assert!(
        acked.len() as u64 > cycles,
        "the children acknowledged appends: {}",
        acked.len()
    );
    println!(
        "T1 (PostgreSQL): {cycles} kills, {} appends tried, {} acknowledged",
        tried.len(),
        acked.len()
    );
}
