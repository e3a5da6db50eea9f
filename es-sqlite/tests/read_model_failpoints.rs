//! RELIABILITY T9, exactly once at each crash point: the runner is made to
//! crash (a panic, through the `fail` crate's failpoints) before the
//! handlers of a batch, between two events, after the handlers, before the
//! commit and after it, at the 1st, 2nd, ... time it passes there; a new
//! runner then resumes from the model's file, and the model must equal a
//! rebuild from scratch, each event taken once.
//!
//! One test: failpoints are global to the process.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]
#[path = "common/bank.rs"]
mod bank;
mod common;

use bank::{Balances, balances, deposited, noted, taken, withdrawn};
use common::{Rng, scratch_dir};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, StreamId};
use es_sqlite::{ReadModelError, ReadModels, RunOptions, SqliteStore};
use fail::FailScenario;

const POINTS: &[&str] = &[
    "es-sqlite::runner::before-handlers",
    "es-sqlite::runner::between-events",
    "es-sqlite::runner::after-handlers",
    "es-sqlite::runner::before-commit",
    "es-sqlite::runner::after-commit",
];

/// How many times each point is crashed at (the 1st pass, the 2nd, ...):
/// 500 crash points in all.
const PASSES: usize = 100;

fn history(store: &SqliteStore, seed: u64) {
    let mut rng = Rng::new(seed);
    // About 600 events, 400 of them listed: more than 3 * PASSES.
    for _ in 0..20 {
        let stream = StreamId::new(format!("a-{}", rng.below(5))).unwrap();
        let events = (0..rng.range(10, 50))
            .map(|_| match rng.below(3) {
                0 => deposited(i64::try_from(rng.below(100)).unwrap()),
                1 => withdrawn(i64::try_from(rng.below(10)).unwrap()),
                _ => noted(),
            })
            .collect();
        block_on(store.append(&stream, ExpectedVersion::Any, events)).unwrap();
    }
}

#[test]
fn t9_failpoints_resumed_model_equals_rebuild() {
    let scenario = FailScenario::setup();
    // The panics are the test's crashes: keep them out of the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if !info.to_string().contains("crash here") {
            eprintln!("{info}");
        }
    }));
    let mut crashed = 0;
    let scratch = scratch_dir();
    let store = SqliteStore::open(scratch.path().join("events.db")).unwrap();
    history(&store, 7);
    let head = block_on(store.last_position()).unwrap();
    let fresh = ReadModels::open_in(&store, store.path().with_extension("fresh")).unwrap();
    let rebuilt = fresh.start(Balances::default()).unwrap();
    block_on(rebuilt.caught_up()).unwrap();
    let want_balances = fresh.query::<Balances, _>(balances).unwrap();
    let want_taken = fresh.query::<Balances, _>(taken).unwrap();
    for point in POINTS {
        for pass in 0..PASSES {
            let dir = scratch_dir();
            let models = ReadModels::open_in(&store, dir.path()).unwrap();
            // Small batches: many batches, each of several events. A short
            // poll interval: a runner dropped while idle stops within it.
            let options = RunOptions::new()
                .batch(3)
                .poll_interval(std::time::Duration::from_millis(5));
            fail::cfg(*point, &format!("{pass}*off->1*panic(crash here)->off")).unwrap();
            let first = models
                .start_with(Balances::default(), options.clone())
                .unwrap();
            let outcome = block_on(first.caught_up());
            drop(first);
            fail::cfg(*point, "off").unwrap();
            match outcome {
                Err(ReadModelError::Ended { .. }) => crashed += 1,
                Ok(()) => panic!("{point} #{pass}: no crash"),
                Err(other) => panic!("{point} #{pass}: {other}"),
            }

            let resumed = models.start_with(Balances::default(), options).unwrap();
            block_on(resumed.caught_up()).unwrap();
            assert_eq!(resumed.progress().position, head);
            assert_eq!(
                models.query::<Balances, _>(balances).unwrap(),
                want_balances,
                "{point} #{pass}: the resumed model differs from a rebuild"
            );
            assert_eq!(
                models.query::<Balances, _>(taken).unwrap(),
                want_taken,
                "{point} #{pass}: the resumed model took other events"
            );
        }
    }
    std::panic::set_hook(hook);
    scenario.teardown();
    println!(
        "T9 failpoints: {crashed} crashes at {} points",
        POINTS.len()
    );
    assert_eq!(crashed, POINTS.len() * PASSES);
}
