//! RELIABILITY T9 (with T10's park policy) as a property: on randomly
//! generated event histories, a read model fed incrementally equals a
//! rebuild from scratch, parked events included.
//!
//! A history is a sequence of steps: appends (to one of a few streams, of
//! deposits, withdrawals, unlisted `noted` events, deposits of
//! [`REFUSED`] that the refusing model parks, and listed `withdrawn` events
//! whose payload does not decode, parked too), and actions on the runner:
//! restart it (stop, start again, maybe with another batch size), wait for
//! it to catch up, retry the parked events (the model still refuses them,
//! so they stay parked).
//!
//! The incremental run follows the steps with one runner (in a store's
//! read models); the rebuild starts in a fresh directory over the same
//! store once every append is done. Both must hold the same balances, the
//! same taken events and the same parked list (position, stream, version,
//! name, error), with checkpoints at the head; both must also equal what
//! the test computes from the history itself. Attempts may differ: each
//! retry of the incremental run counts one for the events parked by then.
//!
//! `ES_T9_PROP_CASES` sets the number of cases (default 24). A failing
//! case is kept in `read_model_props.proptest-regressions` beside this
//! file, and run first from then on: commit it with the fix.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common/bank.rs"]
mod bank;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bank::{Balances, REFUSED, balances, deposited, noted, taken, withdrawn};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{OnError, Parked, ReadModels, RunOptions, Runner, SqliteStore, Status};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Streams appended to: `a-0`, `a-1`, ...
const STREAMS: usize = 3;
/// Events per append, at most.
const MAX_EVENTS: usize = 6;
/// Steps per history, at most.
const MAX_STEPS: usize = 12;
/// How long a wait for the runner may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(30);

/// An event of a generated append.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Deposited(i64),
    Withdrawn(i64),
    /// Listed by no model: never decoded, never taken.
    Noted,
    /// A deposit of [`REFUSED`]: parked by the refusing model.
    Refused,
    /// A listed `withdrawn` with a payload that does not decode: parked.
    Undecodable,
}

impl Kind {
    fn event(self) -> NewEvent {
        match self {
            Kind::Deposited(amount) => deposited(amount),
            Kind::Withdrawn(amount) => withdrawn(amount),
            Kind::Noted => noted(),
            Kind::Refused => deposited(REFUSED),
            Kind::Undecodable => NewEvent::new("account", "withdrawn", 1, "{}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Append {
        stream: usize,
        events: Vec<Kind>,
    },
    /// Stop the runner and start a new one on the same file, with this
    /// batch size when given (else the last one).
    Restart {
        batch: Option<usize>,
    },
    /// Wait until the runner has taken every event appended so far.
    CatchUp,
    /// Retry the parked events; when `settled`, after a catch-up, so that
    /// every event parked so far is retried.
    Retry {
        settled: bool,
    },
}

#[derive(Debug, Clone)]
struct History {
    /// The incremental runner's first batch size.
    batch: usize,
    /// The rebuild's batch size.
    rebuild_batch: usize,
    steps: Vec<Step>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        // Amounts up to 40 include REFUSED now and then, as a plain deposit.
        4 => (0i64..40).prop_map(Kind::Deposited),
        3 => (0i64..20).prop_map(Kind::Withdrawn),
        2 => Just(Kind::Noted),
        2 => Just(Kind::Refused),
        1 => Just(Kind::Undecodable),
    ]
}

/// Small batches put failing events at every index of a batch; 1,024 (the
/// default) takes a whole history in one.
fn batch() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 1usize..=6, 1 => Just(1024)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..STREAMS, prop::collection::vec(kind(), 1..=MAX_EVENTS))
            .prop_map(|(stream, events)| Step::Append { stream, events }),
        2 => prop::option::of(batch()).prop_map(|batch| Step::Restart { batch }),
        1 => Just(Step::CatchUp),
        2 => any::<bool>().prop_map(|settled| Step::Retry { settled }),
    ]
}

fn history() -> impl Strategy<Value = History> {
    (
        batch(),
        batch(),
        prop::collection::vec(step(), 0..=MAX_STEPS),
    )
        .prop_map(|(batch, rebuild_batch, steps)| History {
            batch,
            rebuild_batch,
            steps,
        })
}

/// A parked event, as the history says it must be.
#[derive(Debug)]
struct ExpectedParked {
    position: u64,
    stream: String,
    version: u64,
    name: &'static str,
    /// How the error's text begins: where the event is, and the reason.
    error_starts: String,
    /// How it ends: the last cause, when it is the test's own (a decode
    /// error's is serde's).
    error_ends: Option<String>,
    /// The step that appended it.
    step: usize,
}

/// The read model computed from the history itself.
#[derive(Debug, Default)]
struct Model {
    head: u64,
    versions: BTreeMap<String, u64>,
    /// account -> (balance, events)
    balances: BTreeMap<String, (i64, i64)>,
    /// (position, stream, version)
    taken: Vec<(i64, String, i64)>,
    parked: Vec<ExpectedParked>,
    /// The retry steps: (step, settled).
    retries: Vec<(usize, bool)>,
}

impl Model {
    fn append(&mut self, step: usize, stream: &str, events: &[Kind]) {
        for &kind in events {
            self.head += 1;
            let version = self.versions.entry(stream.to_owned()).or_default();
            *version += 1;
            let (position, version) = (self.head, *version);
            let at = format!(
                "projection `balances` stopped at position {position} (stream `{stream}`, version {version}): "
            );
            let delta = match kind {
                Kind::Noted => continue,
                Kind::Deposited(amount) if amount != REFUSED => amount,
                Kind::Deposited(_) | Kind::Refused => {
                    self.parked.push(ExpectedParked {
                        position,
                        stream: stream.to_owned(),
                        version,
                        name: "deposited",
                        error_starts: format!("{at}the handler failed"),
                        error_ends: Some(format!("deposits of {REFUSED} are refused")),
                        step,
                    });
                    continue;
                }
                Kind::Undecodable => {
                    self.parked.push(ExpectedParked {
                        position,
                        stream: stream.to_owned(),
                        version,
                        name: "withdrawn",
                        error_starts: format!("{at}the event does not decode"),
                        error_ends: None,
                        step,
                    });
                    continue;
                }
                Kind::Withdrawn(amount) => -amount,
            };
            let entry = self.balances.entry(stream.to_owned()).or_default();
            entry.0 += delta;
            entry.1 += 1;
            self.taken.push((
                i64::try_from(position).unwrap(),
                stream.to_owned(),
                i64::try_from(version).unwrap(),
            ));
        }
    }

    fn balances(&self) -> Vec<(String, i64, i64)> {
        self.balances
            .iter()
            .map(|(account, &(balance, events))| (account.clone(), balance, events))
            .collect()
    }

    /// How many times the incremental run must have tried a parked event,
    /// at least and at most: once when parked, once per settled retry
    /// after its append, and at most once per other retry after it (one
    /// that came before the runner reached the event finds it not parked
    /// yet).
    fn attempts(&self, parked: &ExpectedParked) -> (u32, u32) {
        let after = self.retries.iter().filter(|(step, _)| *step > parked.step);
        let settled = after.clone().filter(|(_, settled)| *settled).count();
        let all = after.count();
        (
            1 + u32::try_from(settled).unwrap(),
            1 + u32::try_from(all).unwrap(),
        )
    }
}

/// What a read model holds, read back through its [`ReadModels`].
#[derive(Debug)]
struct Read {
    balances: Vec<(String, i64, i64)>,
    positions: Vec<i64>,
    taken: Vec<(i64, String, i64)>,
    parked: Vec<Parked>,
    checkpoint: i64,
    progress: u64,
}

fn taken_rows(db: &Connection) -> rusqlite::Result<Vec<(i64, String, i64)>> {
    db.prepare("SELECT position, stream, version FROM taken ORDER BY position")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

fn read(models: &ReadModels, runner: &Runner<Balances>) -> Read {
    Read {
        balances: models.query::<Balances, _>(balances).unwrap(),
        positions: models.query::<Balances, _>(taken).unwrap(),
        taken: models.query::<Balances, _>(taken_rows).unwrap(),
        parked: models.parked::<Balances>().unwrap(),
        checkpoint: models
            .query::<Balances, _>(|db| {
                db.query_row("SELECT position FROM _es_read_model", [], |r| r.get(0))
            })
            .unwrap(),
        progress: runner.progress().position,
    }
}

/// The parked list without what may differ between runs (attempts, when).
fn parked_key(parked: &[Parked]) -> Vec<(u64, String, u64, String, String)> {
    parked
        .iter()
        .map(|p| {
            (
                p.position,
                p.stream.to_string(),
                p.version,
                p.name.clone(),
                p.error.clone(),
            )
        })
        .collect()
}

/// Runs `future` to its end, or fails the test as a hang after [`HANG`].
fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(HANG, future).await })
        .unwrap_or_else(|_| panic!("{what}: the runner did not answer within {HANG:?}"))
}

fn options(batch: usize) -> RunOptions {
    RunOptions::new().on_error(OnError::Park).batch(batch)
}

fn assert_running(runner: &Runner<Balances>, at: &str) {
    let status = runner.status();
    assert!(
        matches!(status, Status::CatchingUp | Status::Live),
        "{at}: the runner is {status:?}"
    );
}

/// Follows the steps with one store's read models, then catches up: the
/// model of the history, and what the runner built.
fn incremental(store: &SqliteStore, history: &History) -> (Model, Read) {
    let models = ReadModels::open(store).unwrap();
    let mut model = Model::default();
    let mut batch = history.batch;
    let mut runner = models
        .start_with(Balances { refuse: true }, options(batch))
        .unwrap();
    for (i, step) in history.steps.iter().enumerate() {
        let at = format!("step {i} ({step:?})");
        match step {
            Step::Append { stream, events } => {
                let stream = format!("a-{stream}");
                let id = StreamId::new(&stream).unwrap();
                let done = block_on(store.append(
                    &id,
                    ExpectedVersion::Any,
                    events.iter().map(|k| k.event()).collect(),
                ))
                .unwrap();
                model.append(i, &stream, events);
                assert_eq!(done.last_position, Some(model.head), "{at}: positions");
            }
            Step::Restart { batch: next } => {
                assert_running(&runner, &at);
                let refusing = runner.stop().unwrap();
                assert!(refusing.refuse);
                batch = next.unwrap_or(batch);
                runner = models.start_with(refusing, options(batch)).unwrap();
            }
            Step::CatchUp => within(&at, runner.caught_up()).unwrap(),
            Step::Retry { settled } => {
                if *settled {
                    within(&at, runner.caught_up()).unwrap();
                }
                let retried = within(&at, runner.retry_parked()).unwrap();
                assert_eq!(retried.taken, 0, "{at}: the model still refuses");
                let parked_by_now = model.parked.len();
                if *settled {
                    assert_eq!(retried.still_parked, parked_by_now, "{at}");
                } else {
                    assert!(retried.still_parked <= parked_by_now, "{at}: {retried:?}");
                }
                model.retries.push((i, *settled));
            }
        }
    }
    within("the last catch-up", runner.caught_up()).unwrap();
    assert_running(&runner, "after the last catch-up");
    let read = read(&models, &runner);
    (model, read)
}

/// A rebuild in a fresh directory over `store`, caught up once.
fn rebuild(store: &SqliteStore, batch: usize) -> Read {
    let dir = tempfile::tempdir().unwrap();
    let fresh = ReadModels::open_in(store, dir.path()).unwrap();
    let runner = fresh
        .start_with(Balances { refuse: true }, options(batch))
        .unwrap();
    within("the rebuild", runner.caught_up()).unwrap();
    assert_running(&runner, "after the rebuild");
    read(&fresh, &runner)
}

/// The rebuild holds what the history says, each parked event tried once;
/// the incremental run tried its parked events as often as its retries
/// allow.
fn assert_history(model: &Model, incremental: &Read, rebuild: &Read) {
    assert_eq!(
        rebuild.balances,
        model.balances(),
        "balances of the history"
    );
    assert_eq!(rebuild.taken, model.taken, "taken events of the history");
    let positions: Vec<i64> = model.taken.iter().map(|t| t.0).collect();
    assert_eq!(
        rebuild.positions, positions,
        "taken positions of the history"
    );
    assert_eq!(
        rebuild.parked.len(),
        model.parked.len(),
        "parked events of the history: {:?}",
        rebuild.parked
    );
    for (got, want) in rebuild.parked.iter().zip(&model.parked) {
        assert_eq!(
            (
                got.position,
                got.stream.as_str(),
                got.version,
                got.name.as_str()
            ),
            (want.position, want.stream.as_str(), want.version, want.name),
            "a parked event of the history"
        );
        assert!(
            got.error.starts_with(&want.error_starts)
                && want
                    .error_ends
                    .as_ref()
                    .is_none_or(|end| got.error.ends_with(end.as_str())),
            "the error of {want:?}: {}",
            got.error
        );
        assert_eq!(got.attempts, 1, "a rebuild tries each event once: {got:?}");
    }
    for (got, want) in incremental.parked.iter().zip(&model.parked) {
        let (least, most) = model.attempts(want);
        assert!(
            (least..=most).contains(&got.attempts),
            "attempts of {got:?}: expected {least}..={most}"
        );
    }
}

fn rebuild_equals_incremental(history: &History) {
    let store = SqliteStore::open_temporary().unwrap();
    let (model, incremental) = incremental(&store, history);
    let head = block_on(store.last_position()).unwrap();
    assert_eq!(head, model.head, "the store's head");
    let rebuilt = rebuild(&store, history.rebuild_batch);

    // Incremental and rebuild agree.
    assert_eq!(incremental.balances, rebuilt.balances, "balances");
    assert_eq!(incremental.positions, rebuilt.positions, "taken positions");
    assert_eq!(incremental.taken, rebuilt.taken, "taken events");
    assert_eq!(
        parked_key(&incremental.parked),
        parked_key(&rebuilt.parked),
        "parked events"
    );
    let head_i64 = i64::try_from(head).unwrap();
    for (run, read) in [("incremental", &incremental), ("rebuild", &rebuilt)] {
        assert_eq!(read.checkpoint, head_i64, "{run}: the checkpoint");
        assert_eq!(read.progress, head, "{run}: the progress");
    }

    // Both agree with the history (so they cannot be wrong together).
    assert_history(&model, &incremental, &rebuilt);
}

fn config() -> ProptestConfig {
    let cases = std::env::var("ES_T9_PROP_CASES").map_or(24, |v| v.parse().unwrap());
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn t9_rebuild_equals_incremental(history in history()) {
        rebuild_equals_incremental(&history);
    }
}
