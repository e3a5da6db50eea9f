//! Read models in SQLite: catch-up then live, exactly once, resume after a
//! stop, events filtered by name, failing events stopped at or parked,
//! appends of another process, read your writes, blue/green rebuilds.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

#[path = "common/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bank::{Balances, Deposited, REFUSED, balances, deposited, noted, taken, withdrawn};
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::projection::StopReason;
use es_core::{BoxError, NewEvent};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{OnError, ReadModel, ReadModelError, ReadModels, RunOptions, SqliteStore, Status};

fn append(store: &SqliteStore, stream: &str, events: Vec<NewEvent>) -> u64 {
    let stream = StreamId::new(stream).unwrap();
    let done = block_on(store.append(&stream, ExpectedVersion::Any, events)).unwrap();
    done.last_position.unwrap()
}

/// What the balances should be after every event of the store: computed
/// from the events themselves.
fn expected_balances(store: &SqliteStore, refused: bool) -> Vec<(String, i64, i64)> {
    let mut all = std::collections::BTreeMap::<String, (i64, i64)>::new();
    let events = block_on(async {
        let mut all = store.read_all(1);
        let mut events = Vec::new();
        while let Some(e) = es_core::store::next(&mut all).await {
            events.push(e.unwrap());
        }
        events
    });
    for e in events {
        let sign = match e.name.as_str() {
            "deposited" => 1,
            "withdrawn" => -1,
            _ => continue,
        };
        let amount = e.payload().to_json().unwrap()["amount"].as_i64().unwrap();
        if refused && sign == 1 && amount == REFUSED {
            continue;
        }
        let entry = all.entry(e.stream_id.to_string()).or_default();
        entry.0 += sign * amount;
        entry.1 += 1;
    }
    all.into_iter().map(|(k, (b, n))| (k, b, n)).collect()
}

fn wait(runner: &es_sqlite::Runner<Balances>, position: u64) {
    block_on(runner.wait_for(position)).unwrap();
}

#[test]
fn catches_up_then_follows_live_and_resumes_where_it_stopped() {
    let store = SqliteStore::open_temporary().unwrap();
    for i in 0..300 {
        append(
            &store,
            &format!("a-{}", i % 7),
            vec![deposited(i), noted(), withdrawn(1)],
        );
    }
    let models = ReadModels::open(&store).unwrap();
    assert!(
        matches!(
            models.query::<Balances, _>(balances),
            Err(ReadModelError::NotServing { name: "balances" })
        ),
        "nothing is served before a version has caught up"
    );
    let runner = models
        .start_with(Balances::default(), RunOptions::new().batch(100))
        .unwrap();
    block_on(runner.caught_up()).unwrap();
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        expected_balances(&store, false)
    );
    let progress = runner.progress();
    assert_eq!(progress.position, 900);
    assert!(progress.caught_up(), "{progress:?}");
    assert!(
        matches!(runner.status(), Status::Live),
        "{:?}",
        runner.status()
    );

    // Live: appends of this process wake the runner.
    let position = append(&store, "a-new", vec![deposited(5)]);
    wait(&runner, position);
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        expected_balances(&store, false)
    );

    // Stopped, the model misses what is appended; started again, it takes
    // exactly that (the `taken` key refuses a second take).
    let model = runner.stop().unwrap();
    let stopped_at = models
        .query::<Balances, _>(|db| {
            db.query_row("SELECT position FROM _es_read_model", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .unwrap();
    assert_eq!(stopped_at, i64::try_from(position).unwrap());
    let last = append(&store, "a-1", vec![deposited(100), withdrawn(30)]);
    let runner = models.start(model).unwrap();
    wait(&runner, last);
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        expected_balances(&store, false)
    );
    let positions = models.query::<Balances, _>(taken).unwrap();
    assert_eq!(
        positions.len(),
        300 * 2 + 3,
        "each listed event once, the unlisted never"
    );
}

#[test]
fn events_it_does_not_list_are_never_decoded() {
    // `noted` payloads would not decode as any event of the model; a model
    // that decoded them would stop.
    let store = SqliteStore::open_temporary().unwrap();
    append(&store, "a-1", vec![noted(), noted(), deposited(3), noted()]);
    let last = append(
        &store,
        "a-2",
        vec![NewEvent::new("account", "something-else", 1, "[1,2,3]")],
    );
    let models = ReadModels::open(&store).unwrap();
    let runner = models.start(Balances::default()).unwrap();
    wait(&runner, last);
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        [("a-1".to_string(), 3, 1)]
    );
    assert_eq!(
        runner.progress().position,
        last,
        "the checkpoint passes unlisted events"
    );
}

#[test]
fn an_event_that_does_not_decode_stops_the_model_at_it() {
    let store = SqliteStore::open_temporary().unwrap();
    append(&store, "a-1", vec![deposited(1), deposited(2)]);
    let bad = append(
        &store,
        "a-1",
        vec![NewEvent::new(
            "account",
            "deposited",
            1,
            r#"{"amount":"lots"}"#,
        )],
    );
    append(&store, "a-1", vec![deposited(4)]);
    let models = ReadModels::open(&store).unwrap();
    let runner = models.start(Balances::default()).unwrap();
    let waited = block_on(runner.wait_for(bad + 1));
    let Err(ReadModelError::Ended {
        cause: Some(cause), ..
    }) = waited
    else {
        panic!("the wait ends with the runner's error: {waited:?}");
    };
    let ReadModelError::Projection(error) = &*cause else {
        panic!("a projection error: {cause:?}");
    };
    assert_eq!(error.projection, "balances");
    assert_eq!(error.position, bad);
    assert_eq!(error.stream.as_str(), "a-1");
    assert_eq!(error.version, 3);
    assert!(
        matches!(error.reason, StopReason::Decode(_)),
        "{:?}",
        error.reason
    );
    assert!(
        error
            .to_string()
            .contains("projection `balances` stopped at position 3 (stream `a-1`, version 3)"),
        "{error}"
    );
    assert!(matches!(runner.status(), Status::Failed(_)));
    // The events before it are taken, nothing after it.
    let read = schema_free_balances(&models);
    assert_eq!(read, [("a-1".to_string(), 3, 2)]);
}

/// The balances table of the model's own file, read without going through
/// the registry (a model that never caught up is not served).
fn schema_free_balances(models: &ReadModels) -> Vec<(String, i64, i64)> {
    let path = models.model_path("balances", 1);
    let db = Connection::open(path).unwrap();
    balances(&db).unwrap()
}

#[test]
fn a_failing_handler_stops_at_its_event_and_a_restart_tries_it_again() {
    let store = SqliteStore::open_temporary().unwrap();
    for amount in [1, 2, 3] {
        append(&store, "a-1", vec![deposited(amount)]);
    }
    let refused = append(&store, "a-2", vec![deposited(REFUSED)]);
    let last = append(&store, "a-1", vec![deposited(4)]);
    let models = ReadModels::open(&store).unwrap();
    // One batch holds all five events: the three before the refused one are
    // committed on their own, then the model stops.
    let runner = models.start(Balances { refuse: true }).unwrap();
    let Err(ReadModelError::Ended {
        cause: Some(cause), ..
    }) = block_on(runner.wait_for(last))
    else {
        panic!("the runner stops");
    };
    let ReadModelError::Projection(error) = &*cause else {
        panic!("{cause:?}")
    };
    assert_eq!(
        (error.position, error.stream.as_str(), error.version),
        (refused, "a-2", 1)
    );
    assert!(matches!(&error.reason, StopReason::Handler(e) if e.to_string().contains("refused")));
    assert_eq!(schema_free_balances(&models), [("a-1".to_string(), 6, 3)]);
    drop(runner);

    // Restarted with the same logic, it stops at the same event again.
    let again = models.start(Balances { refuse: true }).unwrap();
    assert!(block_on(again.wait_for(last)).is_err());
    drop(again);
    // With logic that takes it, it goes on from there: nothing twice.
    let fixed = models.start(Balances { refuse: false }).unwrap();
    wait(&fixed, last);
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        expected_balances(&store, false)
    );
}

#[test]
fn a_handler_that_panics_fails_its_event() {
    #[derive(Projection, Default)]
    #[projection(name = "panicky", events(Deposited), context = Connection)]
    struct Panicky;
    impl ReadModel for Panicky {
        fn create(_: &Connection) -> rusqlite::Result<()> {
            Ok(())
        }
    }
    impl Handle<Deposited, Connection> for Panicky {
        fn handle(&mut self, _: &Connection, e: &Envelope<Deposited>) -> Result<(), BoxError> {
            assert!(e.event.amount != 2, "two is too many");
            Ok(())
        }
    }
    let store = SqliteStore::open_temporary().unwrap();
    append(&store, "a-1", vec![deposited(1), deposited(2)]);
    let models = ReadModels::open(&store).unwrap();
    let runner = models.start(Panicky).unwrap();
    let Err(ReadModelError::Ended {
        cause: Some(cause), ..
    }) = block_on(runner.wait_for(2))
    else {
        panic!("the runner stops");
    };
    assert!(cause.to_string().contains("position 2"), "{cause}");
    let ReadModelError::Projection(error) = &*cause else {
        panic!()
    };
    assert!(
        matches!(&error.reason, StopReason::Handler(e) if e.to_string().contains("two is too many"))
    );
}

#[test]
fn parked_events_are_listed_and_taken_by_a_retry() {
    let store = SqliteStore::open_temporary().unwrap();
    append(&store, "a-1", vec![deposited(1)]);
    let refused = append(&store, "a-2", vec![deposited(REFUSED)]);
    let bad = append(
        &store,
        "a-3",
        vec![NewEvent::new("account", "withdrawn", 1, "{}")],
    );
    let last = append(&store, "a-1", vec![deposited(4), deposited(REFUSED)]);
    let models = ReadModels::open(&store).unwrap();
    let options = RunOptions::new().on_error(OnError::Park);
    let runner = models
        .start_with(Balances { refuse: true }, options.clone())
        .unwrap();
    wait(&runner, last);
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        [("a-1".to_string(), 5, 2)],
        "the model goes on past parked events"
    );
    let parked = models.parked::<Balances>().unwrap();
    let positions: Vec<u64> = parked.iter().map(|p| p.position).collect();
    assert_eq!(positions, [refused, bad, last]);
    assert_eq!(parked[0].stream.as_str(), "a-2");
    assert_eq!(parked[0].version, 1);
    assert_eq!(parked[0].name, "deposited");
    assert_eq!(parked[0].attempts, 1);
    assert!(
        parked[0].error.contains("deposits of 13 are refused"),
        "{}",
        parked[0].error
    );
    assert!(
        parked[1].error.contains("does not decode"),
        "{}",
        parked[1].error
    );

    // A retry with the same logic takes nothing, and counts the attempt.
    let retried = block_on(runner.retry_parked()).unwrap();
    assert_eq!((retried.taken, retried.still_parked), (0, 3));
    assert_eq!(models.parked::<Balances>().unwrap()[0].attempts, 2);
    drop(runner);

    // With logic that takes the refused deposits, a retry takes them; the
    // undecodable one stays.
    let runner = models
        .start_with(Balances { refuse: false }, options)
        .unwrap();
    let retried = block_on(runner.retry_parked()).unwrap();
    assert_eq!((retried.taken, retried.still_parked), (2, 1));
    let left: Vec<u64> = models
        .parked::<Balances>()
        .unwrap()
        .iter()
        .map(|p| p.position)
        .collect();
    assert_eq!(left, [bad]);
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        [("a-1".to_string(), 18, 3), ("a-2".to_string(), 13, 1)]
    );
}

#[test]
fn appends_of_another_process_are_seen_within_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    // A second store on the same file notifies nobody here: as another
    // process would.
    let other = SqliteStore::open(&path).unwrap();
    let models = ReadModels::open(&store).unwrap();
    let poll = Duration::from_millis(20);
    let runner = models
        .start_with(Balances::default(), RunOptions::new().poll_interval(poll))
        .unwrap();
    block_on(runner.caught_up()).unwrap();
    let mut delays = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let position = append(&other, "a-1", vec![deposited(i)]);
        wait(&runner, position);
        delays.push(started.elapsed());
    }
    delays.sort();
    println!(
        "seen after (poll {poll:?}): p50 {:?}, max {:?}",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    assert_eq!(
        models.query::<Balances, _>(balances).unwrap(),
        expected_balances(&store, false)
    );
}

#[test]
fn read_your_writes_through_a_repository() {
    #[derive(Aggregate, Default, Debug)]
    #[aggregate(name = "account", events(Deposited))]
    struct Account;
    impl Apply<Deposited> for Account {
        fn apply(&mut self, _: &Deposited) {}
    }
    let store = SqliteStore::open_temporary().unwrap();
    let models = ReadModels::open(&store).unwrap();
    let runner = models.start(Balances::default()).unwrap();
    let accounts = es_core::blocking::Repository::<Account, _>::new(store.clone());
    for amount in 1..=20 {
        let done = accounts.execute("a-1", |_| Deposited { amount }).unwrap();
        wait(&runner, done.position.unwrap());
        let read = models.query::<Balances, _>(balances).unwrap();
        assert_eq!(
            read,
            [("account-a-1".to_string(), amount * (amount + 1) / 2, amount)]
        );
    }
}

#[test]
fn two_runners_of_one_model_take_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    for i in 0..500 {
        append(&store, &format!("a-{}", i % 5), vec![deposited(i)]);
    }
    // Two handles on the same files, as two processes would have.
    let first = ReadModels::open(&store).unwrap();
    let second_store = SqliteStore::open(&path).unwrap();
    let second = ReadModels::open(&second_store).unwrap();
    let options = RunOptions::new().batch(7);
    let a = first
        .start_with(Balances::default(), options.clone())
        .unwrap();
    let b = second.start_with(Balances::default(), options).unwrap();
    wait(&a, 500);
    wait(&b, 500);
    assert!(!matches!(a.status(), Status::Failed(_)), "{:?}", a.status());
    assert!(!matches!(b.status(), Status::Failed(_)), "{:?}", b.status());
    assert_eq!(first.query::<Balances, _>(taken).unwrap().len(), 500);
    assert_eq!(
        first.query::<Balances, _>(balances).unwrap(),
        expected_balances(&store, false)
    );
}

#[test]
fn a_file_of_another_model_is_refused() {
    let store = SqliteStore::open_temporary().unwrap();
    let models = ReadModels::open(&store).unwrap();
    // A file of another application where the model's file should be.
    let foreign = models.model_path("balances", 1);
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE mine (x INTEGER)")
        .unwrap();
    let refused = models.start(Balances::default());
    assert!(
        matches!(&refused, Err(ReadModelError::Foreign { detail, .. }) if detail.contains("another application")),
        "{refused:?}"
    );
    std::fs::remove_file(&foreign).unwrap();
    // A file of version 1 renamed to be version 2's.
    drop(models.start(Balances::default()).unwrap());
    std::fs::rename(&foreign, models.model_path("balances", 2)).unwrap();
    let refused = models.start(BalancesV2);
    assert!(
        matches!(&refused, Err(ReadModelError::Foreign { detail, .. }) if detail.contains("`balances` version 1")),
        "{refused:?}"
    );
}

/// Version 2 of the balances model: the same tables, built anew.
#[derive(Projection, Debug, Default)]
#[projection(name = "balances", version = 2, events(Deposited, bank::Withdrawn), context = Connection)]
struct BalancesV2;

impl ReadModel for BalancesV2 {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(bank::BALANCES_TABLES)
    }
}
impl Handle<Deposited, Connection> for BalancesV2 {
    fn handle(&mut self, db: &Connection, e: &Envelope<Deposited>) -> Result<(), BoxError> {
        bank::credit(db, e, e.event.amount)
    }
}
impl Handle<bank::Withdrawn, Connection> for BalancesV2 {
    fn handle(&mut self, db: &Connection, e: &Envelope<bank::Withdrawn>) -> Result<(), BoxError> {
        bank::credit(db, e, -e.event.amount)
    }
}

#[test]
fn a_version_bump_rebuilds_beside_the_old_one_and_swaps_when_caught_up() {
    let store = SqliteStore::open_temporary().unwrap();
    for i in 0..3_000 {
        append(
            &store,
            &format!("a-{}", i % 50),
            vec![deposited(i % 100), withdrawn(1)],
        );
    }
    let models = ReadModels::open(&store).unwrap();
    let v1 = models.start(Balances::default()).unwrap();
    block_on(v1.caught_up()).unwrap();
    assert_eq!(models.serving_version("balances").unwrap(), Some(1));

    // Writers append throughout; readers read throughout and check that
    // what they see never goes back: an empty or half-built version would.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                append(&store, &format!("a-{}", i % 50), vec![deposited(1)]);
                i += 1;
            }
            i
        })
    };
    let reader = {
        let (models, stop) = (models.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut reads, mut last, mut versions) = (0u64, 0i64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let (events, version): (i64, i64) = models
                    .query::<BalancesV2, _>(|db| {
                        db.query_row(
                            "SELECT (SELECT coalesce(sum(events), 0) FROM balances), \
                             (SELECT version FROM _es_read_model)",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                    })
                    .unwrap();
                assert!(events >= last, "a reader saw {events} events after {last}");
                assert!(events >= 6_000, "a reader saw a model of {events} events");
                last = events;
                if versions.last() != Some(&version) {
                    versions.push(version);
                }
                reads += 1;
            }
            (reads, versions)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let v2 = models
        .start_with(BalancesV2, RunOptions::new().batch(64))
        .unwrap();
    block_on(v2.caught_up()).unwrap();
    assert_eq!(models.serving_version("balances").unwrap(), Some(2));
    assert!(
        !models.model_path("balances", 1).exists(),
        "the old version's file is deleted"
    );
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let appended = writer.join().unwrap();
    let (reads, versions) = reader.join().unwrap();
    println!("{appended} appends and {reads} reads during the rebuild; versions read {versions:?}");
    assert_eq!(
        versions,
        [1, 2],
        "readers went from the old version to the new one, once"
    );
    // The old runner stops by itself once superseded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(v1.status(), Status::Superseded { serving: 2 }) {
        assert!(Instant::now() < deadline, "v1 is still {:?}", v1.status());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(
        models.query::<Balances, _>(balances),
        Err(ReadModelError::Superseded {
            version: 1,
            serving: 2,
            ..
        })
    ));

    // After the swap the new model equals a fresh rebuild of the same events.
    block_on(v2.caught_up()).unwrap();
    let served = models.query::<BalancesV2, _>(balances).unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = ReadModels::open_in(&store, fresh_dir.path()).unwrap();
    let rebuilt = fresh.start(BalancesV2).unwrap();
    block_on(rebuilt.caught_up()).unwrap();
    assert_eq!(served, fresh.query::<BalancesV2, _>(balances).unwrap());
    assert_eq!(served, expected_balances(&store, false));
    assert!(matches!(
        models.start(Balances::default()),
        Err(ReadModelError::Superseded {
            version: 1,
            serving: 2,
            ..
        })
    ));
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "account", events(Deposited, bank::Withdrawn))]
struct Account;
impl Apply<Deposited> for Account {
    fn apply(&mut self, _: &Deposited) {}
}
impl Apply<bank::Withdrawn> for Account {
    fn apply(&mut self, _: &bank::Withdrawn) {}
}

/// The balances of accounts only: `deposited` events of other aggregates
/// (a wallet's) are not its.
#[derive(Projection, Debug, Default)]
#[projection(name = "account-balances", events(Deposited, bank::Withdrawn), aggregates(Account), context = Connection)]
struct AccountBalances;

impl ReadModel for AccountBalances {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(bank::BALANCES_TABLES)
    }
}
impl Handle<Deposited, Connection> for AccountBalances {
    fn handle(&mut self, db: &Connection, e: &Envelope<Deposited>) -> Result<(), BoxError> {
        bank::credit(db, e, e.event.amount)
    }
}
impl Handle<bank::Withdrawn, Connection> for AccountBalances {
    fn handle(&mut self, db: &Connection, e: &Envelope<bank::Withdrawn>) -> Result<(), BoxError> {
        bank::credit(db, e, -e.event.amount)
    }
}

#[test]
fn a_model_of_listed_aggregates_takes_no_other_aggregates_events() {
    let wallet = |amount: i64| {
        NewEvent::new(
            "wallet",
            "deposited",
            1,
            format!(r#"{{"amount":{amount}}}"#),
        )
    };
    let history = |store: &SqliteStore| {
        append(store, "account-1", vec![deposited(5)]);
        append(store, "wallet-1", vec![wallet(100), wallet(7)]);
        // A payload no deposit decodes: an account model must not look.
        append(
            store,
            "wallet-2",
            vec![NewEvent::new("wallet", "deposited", 1, "[]")],
        );
        append(store, "account-1", vec![withdrawn(2)])
    };
    let store = SqliteStore::open_temporary().unwrap();
    let last = history(&store);
    let models = ReadModels::open(&store).unwrap();
    let runner = models.start(AccountBalances).unwrap();
    block_on(runner.wait_for(last)).unwrap();
    let want = [("account-1".to_string(), 3, 2)];
    assert_eq!(models.query::<AccountBalances, _>(balances).unwrap(), want);
    // Inline, the same.
    let inline = SqliteStore::options()
        .inline(AccountBalances)
        .open_temporary()
        .unwrap();
    history(&inline);
    assert_eq!(inline.query::<AccountBalances, _>(balances).unwrap(), want);
    // Without `aggregates`, the wallet's events are taken (and the
    // undecodable one stops the model).
    let all = models.start(Balances::default()).unwrap();
    assert!(block_on(all.wait_for(last)).is_err());
}
