//! Commands over several aggregates on `InMemoryStore`: one decision, one
//! atomic append with each stream's own expected version; a conflict on any
//! stream appends nothing anywhere and retries all on fresh state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;

use es_core::blocking;
use es_core::prelude::*;
use es_core::{Error, ReadRange};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "deposited")]
struct Deposited {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "withdrawn")]
struct Withdrawn {
    amount: u64,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(name = "account", events(Deposited, Withdrawn))]
struct Account {
    balance: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "audited")]
struct Audited {
    total: u64,
}

/// Another aggregate type: a ledger that records audits.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(name = "ledger", events(Audited))]
struct Ledger {
    audits: u32,
}

impl Apply<Audited> for Ledger {
    fn apply(&mut self, _: &Audited) {
        self.audits += 1;
    }
}

fn transfer(amount: u64) -> impl FnMut([&Account; 2]) -> Result<[AccountEvent; 2], &'static str> {
    move |[from, _]| {
        if from.balance < amount {
            return Err("insufficient funds");
        }
        Ok([Withdrawn { amount }.into(), Deposited { amount }.into()])
    }
}

fn events_of(store: &InMemoryStore, stream: &str) -> Vec<RecordedEvent> {
    let mut events = store.read_stream(&StreamId::new(stream).unwrap(), ReadRange::all());
    let mut all = Vec::new();
    while let Some(e) = blocking::block_on(es_core::store::next(&mut events)) {
        all.push(e.unwrap());
    }
    all
}

type RecordedEvent = es_core::RecordedEvent;

#[test]
fn a_transfer_appends_to_both_streams_in_one_commit() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();

    let [alice, bob] = accounts
        .execute_many(["alice", "bob"], transfer(7))
        .unwrap();
    assert_eq!((alice.state.balance, alice.version), (3, 2));
    assert_eq!((bob.state.balance, bob.version), (7, 1));
    assert_eq!((alice.attempts, alice.reruns), (1, 0));
    assert_eq!(alice.events, [AccountEvent::from(Withdrawn { amount: 7 })]);
    // One commit: consecutive positions, in the order the ids were given.
    assert_eq!((alice.position, bob.position), (Some(2), Some(3)));
    assert_eq!(accounts.load("alice").unwrap().balance, 3);
    assert_eq!(accounts.load("bob").unwrap().balance, 7);

    let refused = accounts.execute_many(["alice", "bob"], transfer(7));
    assert!(matches!(
        refused,
        Err(ExecuteError::Rejected("insufficient funds"))
    ));
    assert_eq!(events_of(&store, "account-alice").len(), 2);
    assert_eq!(events_of(&store, "account-bob").len(), 1);
}

#[test]
fn metadata_is_recorded_on_every_stream() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();
    accounts
        .execute_many_with(
            ["alice", "bob"],
            Metadata::new().actor("clerk").reason("rent"),
            transfer(4),
        )
        .unwrap();
    for stream in ["account-alice", "account-bob"] {
        let last = events_of(&store, stream).pop().unwrap();
        assert_eq!(last.metadata.actor.as_deref(), Some("clerk"));
        assert_eq!(last.metadata.reason.as_deref(), Some("rent"));
    }
}

/// The events of one command over several aggregates are one business
/// transaction: `trail_of` reads them back together.
#[test]
fn a_command_over_several_aggregates_is_one_transaction() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();
    accounts
        .execute_many(["alice", "bob"], transfer(4))
        .unwrap();
    let withdrawn = events_of(&store, "account-alice").pop().unwrap();
    let deposited = events_of(&store, "account-bob").pop().unwrap();
    assert_eq!(deposited.correlation(), withdrawn.event_id);
    let trail =
        blocking::block_on(es_core::audit::trail_of(&store, withdrawn.correlation())).unwrap();
    let streams: Vec<&str> = trail.iter().map(|e| e.event().stream_id.as_str()).collect();
    assert_eq!(streams, ["account-alice", "account-bob"]);
}

/// A conflict on one stream appends nothing to any stream.
#[test]
fn a_conflict_on_one_stream_appends_nothing_anywhere() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone()).with_retries(0);
    let other = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();

    let error = accounts
        .execute_many(["alice", "bob"], |states| {
            // Another writer deposits to bob while this decision runs.
            other.execute("bob", |_| Deposited { amount: 1 }).unwrap();
            transfer(5)(states)
        })
        .unwrap_err();
    let raced = error.as_command_conflict().expect("out of retries");
    assert_eq!(raced.conflict.stream.as_str(), "account-bob");
    assert_eq!((raced.conflict.actual, raced.attempts), (1, 1));
    let theirs = raced.events::<Account>().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].stream_id.as_str(), "account-bob");
    assert_eq!(theirs[0].event, Deposited { amount: 1 }.into());

    // Alice's withdrawal was not stored; bob holds only the other deposit.
    assert_eq!(events_of(&store, "account-alice").len(), 1);
    assert_eq!(events_of(&store, "account-bob").len(), 1);
    assert_eq!(accounts.load("alice").unwrap().balance, 10);
}

/// An aggregate the decision read but gave no events is still checked.
#[test]
fn an_aggregate_given_no_events_is_still_checked() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone()).with_retries(0);
    let other = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();
    accounts
        .execute("bob", |_| Deposited { amount: 10 })
        .unwrap();

    // Alice may withdraw what bob holds: bob's state matters, though only
    // alice changes.
    let error = accounts
        .execute_many(["alice", "bob"], |[_, bob]: [&Account; 2]| {
            let amount = bob.balance;
            other.execute("bob", |_| Withdrawn { amount: 10 }).unwrap();
            Ok::<_, &str>([vec![AccountEvent::from(Withdrawn { amount })], vec![]])
        })
        .unwrap_err();
    assert_eq!(error.as_conflict().unwrap().stream.as_str(), "account-bob");
    assert_eq!(events_of(&store, "account-alice").len(), 1);

    // Without interference: alice's event is appended, bob is unchanged.
    let [alice, bob] = accounts
        .execute_many(["alice", "bob"], |[_, _]: [&Account; 2]| {
            Ok::<_, &str>([vec![AccountEvent::from(Withdrawn { amount: 1 })], vec![]])
        })
        .unwrap();
    assert_eq!((alice.version, alice.position.is_some()), (2, true));
    assert_eq!((bob.version, bob.position, bob.events.len()), (2, None, 0));
}

/// A conflict retries the whole decision on the fresh state of all.
#[test]
fn a_conflict_retries_everything_on_fresh_state() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    let other = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();

    let interfered = Cell::new(false);
    let mut seen = Vec::new();
    let [alice, bob] = accounts
        .execute_many(["alice", "bob"], |[a, b]: [&Account; 2]| {
            seen.push((a.balance, b.balance));
            if !interfered.replace(true) {
                other.execute("alice", |_| Withdrawn { amount: 8 }).unwrap();
            }
            transfer(2)([a, b])
        })
        .unwrap();
    assert_eq!(
        seen,
        [(10, 0), (2, 0)],
        "decided again on alice's fresh state"
    );
    assert_eq!((alice.attempts, alice.reruns), (2, 1));
    assert_eq!((bob.attempts, bob.reruns), (2, 1));
    assert_eq!((alice.state.balance, alice.version), (0, 3));
    assert_eq!((bob.state.balance, bob.version), (2, 1));

    // Fresh state can refuse: a second withdrawal empties alice first.
    accounts
        .execute("carol", |_| Deposited { amount: 5 })
        .unwrap();
    let interfered = Cell::new(false);
    let refused = accounts.execute_many(["carol", "dave"], |states| {
        if !interfered.replace(true) {
            other.execute("carol", |_| Withdrawn { amount: 5 }).unwrap();
        }
        transfer(5)(states)
    });
    assert!(matches!(
        refused,
        Err(ExecuteError::Rejected("insufficient funds"))
    ));
    assert!(events_of(&store, "account-dave").is_empty());
}

#[test]
fn retries_are_bounded() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone()).with_retries(2);
    let other = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();
    let mut calls = 0;
    let error = accounts
        .execute_many(["alice", "bob"], |states| {
            calls += 1;
            other.execute("bob", |_| Deposited { amount: 1 }).unwrap();
            transfer(1)(states)
        })
        .unwrap_err();
    assert_eq!(calls, 3);
    let raced = error.as_command_conflict().unwrap();
    assert_eq!((raced.attempts, raced.reruns), (3, 2));
    // The last decision saw bob at version 2 and missed the third deposit.
    assert_eq!(raced.conflict.actual, 3);
    let missed = raced.events::<Account>().unwrap();
    assert_eq!(missed.len(), 1);
    assert_eq!(
        (missed[0].stream_id.as_str(), missed[0].version),
        ("account-bob", 3)
    );
    assert_eq!(events_of(&store, "account-alice").len(), 1);
}

#[test]
fn the_same_aggregate_twice_is_refused_before_deciding() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    let mut ran = false;
    let error = accounts
        .execute_many(["alice", "alice"], |states| {
            ran = true;
            transfer(0)(states)
        })
        .unwrap_err();
    assert!(!ran);
    assert!(matches!(
        error,
        ExecuteError::Store(Error::InvalidEvent { ref name, .. }) if name == "account-alice"
    ));
    let error = accounts
        .execute_many_with(
            ["alice", "bob"],
            Metadata::new().compensates(es_core::Uuid::now_v7()),
            transfer(0),
        )
        .unwrap_err();
    assert!(matches!(
        error,
        ExecuteError::Store(Error::InvalidEvent { .. })
    ));
    assert!(events_of(&store, "account-alice").is_empty());
}

#[test]
fn nothing_to_append_anywhere_writes_nothing() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    let [a, b] = accounts
        .execute_many(["alice", "bob"], |_| Ok::<_, &str>([(), ()]))
        .unwrap();
    assert_eq!((a.version, a.position, b.version), (0, None, 0));
    assert_eq!(blocking::block_on(store.last_position()).unwrap(), 0);
}

#[test]
fn three_aggregates_at_once() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone());
    accounts.execute("a", |_| Deposited { amount: 9 }).unwrap();
    // Split a's balance over b and c.
    let [a, b, c] = accounts
        .execute_many(["a", "b", "c"], |[a, _, _]: [&Account; 3]| {
            let half = a.balance / 2;
            Ok::<_, &str>([
                vec![AccountEvent::from(Withdrawn { amount: a.balance })],
                vec![Deposited { amount: half }.into()],
                vec![
                    Deposited {
                        amount: a.balance - half,
                    }
                    .into(),
                ],
            ])
        })
        .unwrap();
    assert_eq!(
        (a.state.balance, b.state.balance, c.state.balance),
        (0, 4, 5)
    );
}

/// Two commands over the same aggregates named in opposite orders, racing
/// on serialized commands: turns are taken in stream order, so neither
/// waits for the other forever, and every transfer lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opposite_orders_do_not_deadlock() {
    let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    accounts
        .execute("x", |_| Deposited { amount: 1_000 })
        .await
        .unwrap();
    accounts
        .execute("y", |_| Deposited { amount: 1_000 })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                let ids = if n % 2 == 0 { ["x", "y"] } else { ["y", "x"] };
                for _ in 0..25 {
                    accounts.execute_many(ids, transfer(1)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (x, y) = (
        accounts.load("x").await.unwrap(),
        accounts.load("y").await.unwrap(),
    );
    assert_eq!(x.balance + y.balance, 2_000);
    assert_eq!((x.version, y.version), (1 + 200, 1 + 200));
}

#[test]
fn a_pair_of_aggregate_types_is_decided_and_appended_together() {
    let store = InMemoryStore::new();
    let accounts = blocking::Repository::<Account, _>::new(store.clone()).with_retries(1);
    let ledgers = blocking::Repository::<Ledger, _>::new(store.clone());
    let other = blocking::Repository::<Account, _>::new(store.clone());
    accounts
        .execute("alice", |_| Deposited { amount: 10 })
        .unwrap();

    let (alice, ledger) = accounts
        .execute_pair("alice", "main", |a: &Account, _: &Ledger| {
            Ok::<_, &str>((Withdrawn { amount: 1 }, Audited { total: a.balance }))
        })
        .unwrap();
    assert_eq!((alice.version, ledger.version), (2, 1));
    assert_eq!(ledger.state.audits, 1);
    assert_eq!(ledgers.load("main").unwrap().audits, 1);
    assert_eq!(alice.position.map(|p| p + 1), ledger.position);

    // A conflict on the other type's stream: retried, then out of retries,
    // nothing appended to either.
    let mut calls = 0;
    let error = accounts
        .execute_pair("alice", "main", |a: &Account, _: &Ledger| {
            calls += 1;
            ledgers.execute("main", |_| Audited { total: 0 }).unwrap();
            Ok::<_, &str>((Withdrawn { amount: 1 }, Audited { total: a.balance }))
        })
        .unwrap_err();
    assert_eq!(calls, 2);
    let raced = error.as_command_conflict().unwrap();
    assert_eq!(raced.conflict.stream.as_str(), "ledger-main");
    assert!(raced.events::<Account>().unwrap().is_empty());
    assert_eq!(raced.events::<Ledger>().unwrap().len(), 1);
    assert_eq!(accounts.load("alice").unwrap().version, 2);
    assert_eq!(ledgers.load("main").unwrap().version, 3);

    // A conflict on this repository's own stream, retried once.
    let interfered = Cell::new(false);
    let (alice, _) = accounts
        .execute_pair("alice", "main", |a: &Account, _: &Ledger| {
            if !interfered.replace(true) {
                other
                    .execute("alice", |_| Deposited { amount: 100 })
                    .unwrap();
            }
            Ok::<_, &str>((Withdrawn { amount: 1 }, Audited { total: a.balance }))
        })
        .unwrap();
    assert_eq!(
        (alice.attempts, alice.reruns, alice.state.balance),
        (2, 1, 108)
    );
    let audits = ledgers.history("main").unwrap();
    assert_eq!(
        audits.last().unwrap().event.event(),
        Some(&Audited { total: 109 }.into())
    );
}
