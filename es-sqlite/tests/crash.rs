//! RELIABILITY T1: a child process appends with several concurrent tasks and
//! is killed with SIGKILL at random moments; after each kill every
//! acknowledged append is present byte for byte, no append is partly
//! present, no event id is stored twice, versions are contiguous, positions
//! strictly increase and are never filled in late, and `quick_check` is ok.
//!
//! RELIABILITY T13: the child also reads (a stream from near its end, a
//! stream's version, `$all` from near its end) and logs every operation
//! (`common::history`); after each kill the parent checks the history of
//! every cycle so far against the reopened store.
//!
//! `ES_T1_CYCLES` sets the number of cycles (default 50); `ES_T1_SEED` the seed.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::too_many_lines)]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::history::{self, Line, Recorder, Seen};
use common::{Rng, check_integrity, role, scratch_dir, spawn_child};
use es_core::store::next;
use es_core::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId, Uuid};
use es_sqlite::SqliteStore;

const TEST: &str = "t1_kill_9_crash_loop";

/// The payload of event `k` of batch `batch`: known to the parent, so it
/// can check the stored bytes exactly.
fn payload(batch: &str, k: usize) -> String {
    format!(
        r#"{{"batch":"{batch}","k":{k},"pad":"{}"}}"#,
        "x".repeat(k * 7)
    )
}

/// The child: 4 tasks append batches of 1 to 20 events to 50 streams until
/// killed, each followed by a read. `TRY` before each append, `ACK` after it
/// returned Ok; and the history lines of every operation.
fn child(db: &Path, seed: u64) {
    let store = SqliteStore::open(db).expect("the child opens the store");
    let recorder = Recorder::stdout();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let tasks: Vec<_> = (0..4u64)
            .map(|task| {
                let store = store.clone();
                let session = recorder.session(format!("{seed}.{task}"));
                tokio::spawn(async move {
                    let mut rng = Rng::new(seed ^ (task << 32));
                    let mut last_position = 0;
                    for i in 0.. {
                        let stream = format!("s-{}", rng.below(50));
                        let n = 1 + usize::try_from(rng.below(20)).expect("small");
                        let batch = format!("{seed}.{task}.{i}");
                        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
                        let events: Vec<NewEvent> = ids
                            .iter()
                            .enumerate()
                            .map(|(k, id)| {
                                NewEvent::new("t1", "written", 1, payload(&batch, k)).with_id(*id)
                            })
                            .collect();
                        let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                        println!("TRY {batch} {stream} {}", list.join(","));
                        let id = StreamId::new(&stream).expect("valid stream id");
                        let version = match session
                            .append(&store, &id, ExpectedVersion::Any, events)
                            .await
                        {
                            Ok(r) => {
                                println!(
                                    "ACK {batch} {} {} {}",
                                    r.version + 1 - n as u64,
                                    r.first_position.unwrap_or(0),
                                    r.last_position.unwrap_or(0)
                                );
                                last_position = r.last_position.unwrap_or(0);
                                r.version
                            }
                            Err(e) => {
                                println!("ERR {batch} {e}");
                                0
                            }
                        };
                        // A read, logged; what it returns is checked from
                        // the history.
                        let read = match rng.below(3) {
                            0 => session
                                .read_stream(&store, &id, version.saturating_sub(10).max(1))
                                .await
                                .map(drop),
                            1 => session.stream_version(&store, &id).await.map(drop),
                            _ => session
                                .read_all(&store, last_position.saturating_sub(40).max(1))
                                .await
                                .map(drop),
                        };
                        if let Err(e) = read {
                            println!("ERR read {e}");
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
}

struct Try {
    stream: String,
    ids: Vec<Uuid>,
}

struct Ack {
    first_version: u64,
    first_position: u64,
    last_position: u64,
}

#[derive(Default)]
struct Oracle {
    attempted: HashMap<String, Try>,
    acked: HashMap<String, Ack>,
    /// Every event id at or below the highest position seen so far.
    seen: Vec<(u64, Uuid)>,
}

impl Oracle {
    fn read_lines(&mut self, lines: Vec<String>) {
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["TRY", batch, stream, ids] => {
                    let ids: Option<Vec<Uuid>> = ids.split(',').map(|s| s.parse().ok()).collect();
                    // A line cut by the kill is not an attempt we can check.
                    if let Some(ids) = ids {
                        self.attempted.insert(
                            (*batch).to_owned(),
                            Try {
                                stream: (*stream).to_owned(),
                                ids,
                            },
                        );
                    }
                }
                ["ACK", batch, v, first, last] => {
                    if let (Ok(first_version), Ok(first_position), Ok(last_position)) =
                        (v.parse(), first.parse(), last.parse())
                    {
                        self.acked.insert(
                            (*batch).to_owned(),
                            Ack {
                                first_version,
                                first_position,
                                last_position,
                            },
                        );
                    }
                }
                ["ERR", batch, ..] => panic!("append {batch} failed in the child: {line}"),
                _ => {}
            }
        }
    }

    /// Every invariant, on the database as a fresh process finds it; the
    /// events stored.
    fn verify(&mut self, db: &Path, cycle: u32) -> Vec<Seen> {
        let store =
            SqliteStore::open(db).unwrap_or_else(|e| panic!("cycle {cycle}: reopening fails: {e}"));
        let all: Vec<RecordedEvent> = es_core::blocking::block_on(async {
            let mut out = Vec::new();
            let mut events = store.read_all(0);
            while let Some(e) = next(&mut events).await {
                out.push(e.expect("reading $all"));
            }
            out
        });
        drop(store);
        assert_eq!(
            check_integrity(db, cycle.is_multiple_of(10)),
            "ok",
            "cycle {cycle}: integrity"
        );

        let mut by_id: HashMap<Uuid, &RecordedEvent> = HashMap::new();
        for e in &all {
            assert!(
                by_id.insert(e.event_id, e).is_none(),
                "cycle {cycle}: event {} stored twice",
                e.event_id
            );
        }
        for pair in all.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "cycle {cycle}: positions strictly increase"
            );
        }
        // No late fill: the events at or below the previous maximum are the
        // ones seen then, exactly.
        let previous_max = self.seen.last().map_or(0, |(p, _)| *p);
        let below: Vec<(u64, Uuid)> = all
            .iter()
            .filter(|e| e.position <= previous_max)
            .map(|e| (e.position, e.event_id))
            .collect();
        assert_eq!(
            below, self.seen,
            "cycle {cycle}: an event appeared below an observed position"
        );
        self.seen = all.iter().map(|e| (e.position, e.event_id)).collect();

        let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for e in &all {
            versions
                .entry(e.stream_id.as_str())
                .or_default()
                .push(e.version);
        }
        for (stream, v) in &versions {
            assert_eq!(
                *v,
                (1..=v.len() as u64).collect::<Vec<_>>(),
                "cycle {cycle}: versions of {stream}"
            );
        }

        let attempted: HashSet<Uuid> = self
            .attempted
            .values()
            .flat_map(|t| t.ids.iter().copied())
            .collect();
        for e in &all {
            assert!(
                attempted.contains(&e.event_id),
                "cycle {cycle}: stored event {} was never attempted",
                e.event_id
            );
        }
        for (batch, attempt) in &self.attempted {
            let stored: Vec<&&RecordedEvent> =
                attempt.ids.iter().filter_map(|id| by_id.get(id)).collect();
            assert!(
                stored.is_empty() || stored.len() == attempt.ids.len(),
                "cycle {cycle}: batch {batch} is partly stored ({} of {})",
                stored.len(),
                attempt.ids.len()
            );
            for (k, e) in stored.iter().enumerate() {
                assert_eq!(
                    e.stream_id.as_str(),
                    attempt.stream,
                    "cycle {cycle}: batch {batch} stream"
                );
                assert_eq!(
                    e.payload().as_str(),
                    payload(batch, k),
                    "cycle {cycle}: batch {batch} bytes"
                );
                if k > 0 {
                    assert_eq!(
                        e.version,
                        stored[k - 1].version + 1,
                        "cycle {cycle}: batch {batch} is contiguous"
                    );
                }
            }
            if let Some(ack) = self.acked.get(batch) {
                assert_eq!(
                    stored.len(),
                    attempt.ids.len(),
                    "cycle {cycle}: acknowledged batch {batch} is lost"
                );
                assert_eq!(
                    stored[0].version, ack.first_version,
                    "cycle {cycle}: batch {batch} version"
                );
                assert_eq!(
                    stored[0].position, ack.first_position,
                    "cycle {cycle}: batch {batch} position"
                );
                assert_eq!(
                    stored[stored.len() - 1].position,
                    ack.last_position,
                    "cycle {cycle}: batch {batch} end"
                );
            }
        }
        all.iter().map(Seen::of).collect()
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn t1_kill_9_crash_loop() {
    if role().as_deref() == Some("t1-writer") {
        let db = PathBuf::from(std::env::var(common::DB).expect("database path"));
        return child(&db, env_number("ES_T1_CHILD_SEED", 1));
    }
    crash_loop(0);
}

/// The loop's second half, on a store of its own: the two halves run in
/// parallel (its children run as [`TEST`]).
#[test]
fn t1_kill_9_crash_loop_second_half() {
    crash_loop(1);
}

/// Half `half` (0 or 1) of the `ES_T1_CYCLES` cycles (50 by default).
fn crash_loop(half: u64) {
    let total = env_number("ES_T1_CYCLES", 50);
    let cycles = if half == 0 {
        total.div_ceil(2)
    } else {
        total / 2
    };
    let seed = env_number("ES_T1_SEED", 0x5EED) ^ half;
    let dir = scratch_dir();
    let db = dir.path().join("t1.db");
    let mut rng = Rng::new(seed);
    let mut oracle = Oracle::default();
    let mut lines_of_history: Vec<Line> = Vec::new();
    let mut report = history::Report::default();
    let mut killed_mid_write = 0;
    // Every cycle of the PR tier's 50; 100 checks in a longer run.
    let every = (cycles / 100).max(1);
    let mut checks = 0;
    for cycle in 0..cycles {
        let child_seed = rng.next();
        let mut child = spawn_child(
            TEST,
            "t1-writer",
            &db,
            &[("ES_T1_CHILD_SEED", child_seed.to_string())],
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(5 + rng.below(196)));
        child.kill().expect("SIGKILL");
        child.wait().expect("the child is reaped");
        let lines = reader.join().expect("reader thread");
        let tries = lines.iter().filter(|l| l.starts_with("TRY")).count();
        let acks = lines.iter().filter(|l| l.starts_with("ACK")).count();
        if tries > acks {
            killed_mid_write += 1;
        }
        lines_of_history.extend(Line::parse_all(&lines));
        oracle.read_lines(lines);
        // Each check reads the whole store and history, so a long run
        // checks every `every` cycles (and after the last): an event lost
        // or a bad read stays in what a later check sees.
        if cycle % every == 0 || cycle + 1 == cycles {
            let stored = oracle.verify(&db, u32::try_from(cycle).unwrap_or(u32::MAX));
            report = history::check(&lines_of_history, &stored);
            report.assert_clean(&format!("cycle {cycle}"));
            checks += 1;
        }
    }
    eprintln!(
        "T1 (half {half}): {cycles} cycles, {} batches attempted, {} acknowledged, {} events stored, {killed_mid_write} kills with appends in flight",
        oracle.attempted.len(),
        oracle.acked.len(),
        oracle.seen.len()
    );
    eprintln!(
        "T13 on T1 (half {half}): {} history lines, {} operations ({} appends, {} reads, {} in flight at a kill), checked {checks} times (every {every} cycles): {} violations",
        lines_of_history.len(),
        report.operations,
        report.appends,
        report.reads,
        report.in_flight,
        report.violations.len()
    );
    assert!(
        !oracle.acked.is_empty(),
        "the children acknowledged appends"
    );
    assert!(report.reads > 0, "the children read");
    assert!(
        killed_mid_write > 0,
        "some kills happened with appends in flight"
    );
}
