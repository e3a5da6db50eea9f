//! RELIABILITY T9, exactly once under kill -9: a child process runs the
//! balances read model (catching up on a long log, then following the
//! appends of its own writer thread) and is killed with SIGKILL at random
//! moments. After each kill, the model's files as the child left them are
//! caught up (in a copy) and compared with a rebuild from scratch: the same
//! balances, and each listed event taken exactly once (`taken` has the
//! event's position as its key, so a second take fails the model). The next
//! child goes on from the killed one's files.
//!
//! `ES_T9_CYCLES` sets the number of cycles (default 30); `ES_T9_SEED` the
//! seed.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]
#[path = "common/bank.rs"]
mod bank;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use bank::{Balances, balances, deposited, noted, taken, withdrawn};
use common::{Rng, role, scratch_dir, spawn_child};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, StreamId};
use es_sqlite::{ReadModels, RunOptions, SqliteStore, Status};

const TEST: &str = "t9_kill_9_read_model_runner";

fn append_random(store: &SqliteStore, rng: &mut Rng) {
    append_up_to(store, rng, 8);
}

fn append_up_to(store: &SqliteStore, rng: &mut Rng, most: u64) {
    let stream = StreamId::new(format!("a-{}", rng.below(40))).unwrap();
    let events = (0..rng.range(1, most))
        .map(|_| match rng.below(3) {
            0 => deposited(i64::try_from(rng.below(1000)).unwrap()),
            1 => withdrawn(i64::try_from(rng.below(100)).unwrap()),
            _ => noted(),
        })
        .collect();
    block_on(store.append(&stream, ExpectedVersion::Any, events)).unwrap();
}

/// The child: runs the read model with a small random batch and appends
/// until killed.
fn child(db: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    let store = SqliteStore::open(db).unwrap();
    let models = ReadModels::open(&store).unwrap();
    let batch = usize::try_from(rng.range(1, 300)).unwrap();
    let runner = models
        .start_with(Balances::default(), RunOptions::new().batch(batch))
        .unwrap();
    println!("READY");
    loop {
        append_random(&store, &mut rng);
        assert!(
            !matches!(runner.status(), Status::Failed(_)),
            "{:?}",
            runner.status()
        );
        std::thread::sleep(Duration::from_micros(rng.below(2_000)));
    }
}

/// Copies the read-model directory as the killed child left it.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with("-shm") {
            std::fs::copy(entry.path(), to.join(name)).unwrap();
        }
    }
}

#[test]
fn t9_kill_9_read_model_runner() {
    if let Some(role) = role() {
        assert_eq!(role, "runner");
        let db = std::env::var(common::DB).unwrap();
        let seed = std::env::var("ES_T9_CHILD_SEED").unwrap().parse().unwrap();
        child(Path::new(&db), seed);
        return;
    }
    kill_loop(0);
}

/// The loop's second half, on a store of its own: the two halves run in
/// parallel (its children run as [`TEST`]).
#[test]
fn t9_kill_9_read_model_runner_second_half() {
    kill_loop(1);
}

/// Half `half` (0 or 1) of the `ES_T9_CYCLES` cycles (30 by default).
fn kill_loop(half: u64) {
    let total: u64 = std::env::var("ES_T9_CYCLES").map_or(30, |v| v.parse().unwrap());
    let cycles = if half == 0 {
        total.div_ceil(2)
    } else {
        total / 2
    };
    let seed: u64 = std::env::var("ES_T9_SEED")
        .map_or_else(|_| u64::from(std::process::id()), |v| v.parse().unwrap())
        ^ half;
    println!("T9 kill loop (half {half}): {cycles} cycles, seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = scratch_dir();
    let db = dir.path().join("events.db");
    {
        // A long log to catch up on, in the first cycles.
        let store = SqliteStore::open(&db).unwrap();
        for _ in 0..400 {
            append_up_to(&store, &mut rng, 50);
        }
    }
    let models_dir = db.with_extension("read-models");
    let mut positions_seen = Vec::new();
    // Each cycle rebuilds from the start: a long run appends smaller
    // backlogs, so that its log stays about as long as the PR tier's.
    let scale = (cycles / 30).max(1);
    for cycle in 0..cycles {
        if rng.below(2) == 0 {
            // A backlog, so that this child is killed while catching up.
            let store = SqliteStore::open(&db).unwrap();
            for _ in 0..rng.range(20, 400).div_ceil(scale) {
                append_up_to(&store, &mut rng, 50);
            }
        }
        let mut child = spawn_child(
            TEST,
            "runner",
            &db,
            &[("ES_T9_CHILD_SEED", rng.next().to_string())],
        );
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The test harness prints lines of its own first.
        let ready = lines.map_while(Result::ok).any(|line| line == "READY");
        if !ready {
            child.kill().unwrap();
            panic!("cycle {cycle}: the child did not start: {:?}", child.wait());
        }
        std::thread::sleep(Duration::from_millis(rng.range(1, 300)));
        child.kill().unwrap();
        child.wait().unwrap();

        // The files as the child left them, caught up in a copy.
        let store = SqliteStore::open(&db).unwrap();
        let scratch = scratch_dir();
        copy_dir(&models_dir, scratch.path());
        let left = ReadModels::open_in(&store, scratch.path()).unwrap();
        let checkpoint_at_kill = left_checkpoint(scratch.path());
        let resumed = left.start(Balances::default()).unwrap();
        block_on(resumed.caught_up()).unwrap();
        let fresh_dir = scratch_dir();
        let fresh = ReadModels::open_in(&store, fresh_dir.path()).unwrap();
        let rebuilt = fresh.start(Balances::default()).unwrap();
        block_on(rebuilt.caught_up()).unwrap();
        let head = block_on(store.last_position()).unwrap();
        assert_eq!(resumed.progress().position, head);
        assert_eq!(rebuilt.progress().position, head);
        assert_eq!(
            left.query::<Balances, _>(balances).unwrap(),
            fresh.query::<Balances, _>(balances).unwrap(),
            "cycle {cycle}: the resumed model differs from a rebuild"
        );
        assert_eq!(
            left.query::<Balances, _>(taken).unwrap(),
            fresh.query::<Balances, _>(taken).unwrap(),
            "cycle {cycle}: the resumed model took other events than a rebuild"
        );
        positions_seen.push((checkpoint_at_kill, head));
    }
    println!("(checkpoint at kill, head) per cycle: {positions_seen:?}");
    let caught_up_kills = positions_seen.iter().filter(|(c, h)| c == h).count();
    let mid_catch_up = positions_seen.iter().filter(|(c, h)| c < h).count();
    println!("kills: {mid_catch_up} behind the head, {caught_up_kills} at it");
}

/// The checkpoint in the model's file, 0 when the child was killed before
/// creating it.
fn left_checkpoint(dir: &Path) -> u64 {
    let path = dir.join("balances.v1.db");
    let Ok(db) = es_sqlite::rusqlite::Connection::open(path) else {
        return 0;
    };
    db.query_row("SELECT position FROM _es_read_model", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_or(0, |p| u64::try_from(p).unwrap())
}
