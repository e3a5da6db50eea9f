//! Commands with a command id on `InMemoryStore`: a repeat returns the
//! first outcome and appends nothing (also when a snapshot or the cache
//! covers the command's events, and under concurrency, with and without
//! serialized commands); a command id used elsewhere is a typed error.
//! And the audit links: correlation and causation ids, `trail_of`.

// Test bodies unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use es_core::audit::{self, command_event_id};
use es_core::prelude::*;
use es_core::{Error, Executed, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "account-opened")]
struct Opened {
    owner: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "deposited")]
struct Deposited {
    amount: u64,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "account", events(Opened, Deposited), snapshot(every = 2))]
struct Account {
    open: bool,
    balance: u64,
    deposits: u32,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.deposits += 1;
    }
}

impl Account {
    fn open(&self, owner: &str) -> Result<Opened, &'static str> {
        if self.open {
            return Err("the account is already open");
        }
        Ok(Opened {
            owner: owner.into(),
        })
    }

    fn deposit(&self, amount: u64) -> Result<Deposited, &'static str> {
        if !self.open {
            return Err("the account is not open");
        }
        Ok(Deposited { amount })
    }
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "shipment-requested")]
struct ShipmentRequested {
    items: u32,
}

#[derive(Aggregate, Default, Debug, Clone)]
#[aggregate(name = "shipment", events(ShipmentRequested))]
struct Shipment;

impl Apply<ShipmentRequested> for Shipment {
    fn apply(&mut self, _: &ShipmentRequested) {}
}

fn accounts(store: &InMemoryStore) -> Repository<Account, InMemoryStore> {
    Repository::new(store.clone())
}

fn named(command: &str, id: Uuid) -> Metadata {
    Metadata::new()
        .actor("teller")
        .command(command)
        .command_id(id)
}

/// The parts of an outcome that a repeat must give back exactly.
fn outcome(done: &Executed<Account>) -> (u64, Option<u64>, Vec<AccountEvent>, Account) {
    (
        done.version,
        done.position,
        done.events.clone(),
        done.state.clone(),
    )
}

#[tokio::test]
async fn a_repeat_returns_the_first_outcome_and_appends_nothing() {
    let store = InMemoryStore::new();
    let repo = accounts(&store);
    let id = Uuid::now_v7();
    let first = repo
        .execute_with("a-1", named("open", id), |a| a.open("ada"))
        .await
        .unwrap();
    assert!(!first.repeated);
    assert_eq!(first.attempts, 1);
    assert_eq!(
        repo.history("a-1").await.unwrap()[0].event_id,
        command_event_id(id, 0),
        "the event's id is derived from the command id"
    );
    repo.execute("a-1", |a| a.deposit(10)).await.unwrap();

    // The answer to the first was lost: the client sends it again.
    let again = repo
        .execute_with("a-1", named("open", id), |a| a.open("ada"))
        .await
        .unwrap();
    assert!(again.repeated);
    assert_eq!(again.attempts, 0);
    assert_eq!(outcome(&again), outcome(&first));
    assert_eq!(store.last_position().await.unwrap(), 2, "nothing appended");

    // Through the builder, and from a repository that never saw the first.
    let fresh = accounts(&store);
    let third = fresh
        .command("a-1")
        .metadata(Metadata::new().actor("teller").command("open"))
        .command_id(id)
        .execute(|a| a.open("ada"))
        .await
        .unwrap();
    assert!(third.repeated);
    assert_eq!(outcome(&third), outcome(&first));
    assert_eq!(store.last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn a_repeat_gives_the_stored_events_not_a_new_decision() {
    let store = InMemoryStore::new();
    let repo = accounts(&store);
    repo.execute("a-1", |a| a.open("ada")).await.unwrap();
    let id = Uuid::now_v7();
    let calls = AtomicU32::new(0);
    // A decision whose events differ from run to run, two of them.
    let decide = |a: &Account| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, &str>(vec![
            a.deposit(u64::from(n) + 1)?,
            a.deposit(100 * (u64::from(n) + 1))?,
        ])
    };
    let first = repo
        .execute_with("a-1", named("deposit", id), decide)
        .await
        .unwrap();
    assert_eq!(first.state.balance, 101);
    let again = repo
        .execute_with("a-1", named("deposit", id), decide)
        .await
        .unwrap();
    assert!(again.repeated);
    assert_eq!(outcome(&again), outcome(&first));
    assert_eq!(
        again.events,
        [
            AccountEvent::Deposited(Deposited { amount: 1 }),
            AccountEvent::Deposited(Deposited { amount: 100 })
        ]
    );
    assert_eq!(repo.load("a-1").await.unwrap().balance, 101);
    assert_eq!(store.last_position().await.unwrap(), 3);
}

#[tokio::test]
async fn a_repeat_is_found_when_a_snapshot_or_the_cache_covers_it() {
    for cache in [false, true] {
        let store = InMemoryStore::new();
        let mut repo = accounts(&store);
        if cache {
            repo = repo.with_cache(10);
        }
        let open = Uuid::now_v7();
        let fourth = Uuid::now_v7();
        let first = repo
            .execute_with("a-1", named("open", open), |a| a.open("ada"))
            .await
            .unwrap();
        repo.execute("a-1", |a| a.deposit(1)).await.unwrap();
        repo.execute("a-1", |a| a.deposit(2)).await.unwrap();
        let at_four = repo
            .execute_with("a-1", named("deposit", fourth), |a| a.deposit(4))
            .await
            .unwrap();
        for n in 5..=9 {
            repo.execute("a-1", |a| a.deposit(n)).await.unwrap();
        }
        let stream = repo.stream_id("a-1").unwrap();
        let snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
        assert!(snapshot.version >= 8, "a snapshot covers both commands");

        let again = repo
            .execute_with("a-1", named("open", open), |a| a.open("ada"))
            .await
            .unwrap();
        assert!(again.repeated);
        assert_eq!(outcome(&again), outcome(&first));
        let again = repo
            .execute_with("a-1", named("deposit", fourth), |a| a.deposit(4))
            .await
            .unwrap();
        assert!(again.repeated, "cache {cache}");
        assert_eq!(outcome(&again), outcome(&at_four));
        assert_eq!(again.state.balance, 7);
        assert_eq!(store.last_position().await.unwrap(), 9);
    }
}

#[tokio::test]
async fn a_command_id_used_elsewhere_is_a_typed_error() {
    let store = InMemoryStore::new();
    let repo = accounts(&store);
    let id = Uuid::now_v7();
    repo.execute_with("a-1", named("open", id), |a| a.open("ada"))
        .await
        .unwrap();

    // Another aggregate of the same type.
    let other = repo
        .execute_with("a-2", named("open", id), |a| a.open("bob"))
        .await;
    match other {
        Err(ExecuteError::Store(Error::CommandIdReused {
            command_id,
            stream,
            used_in,
            ..
        })) => {
            assert_eq!(command_id, id);
            assert_eq!(
                (stream.as_str(), used_in.as_str()),
                ("account-a-2", "account-a-1")
            );
        }
        other => panic!("expected CommandIdReused, got {other:?}"),
    }
    assert!(!repo.load("a-2").await.unwrap().exists());

    // Another command on the same aggregate.
    let deposit = repo
        .execute_with("a-1", named("deposit", id), |a| a.deposit(5))
        .await;
    let Err(ExecuteError::Store(error @ Error::CommandIdReused { .. })) = deposit else {
        panic!("expected CommandIdReused, got {deposit:?}");
    };
    assert_eq!(
        error.to_string(),
        format!(
            "command id {id} was already used by command `open` on stream `account-a-1`; \
             command `deposit` on stream `account-a-1` is not a repeat of it"
        )
    );

    // Another aggregate type.
    let shipments = Repository::<Shipment, _>::new(store.clone());
    let shipped = shipments
        .execute_with("s-1", named("open", id), |_| ShipmentRequested { items: 1 })
        .await;
    assert!(matches!(
        shipped,
        Err(ExecuteError::Store(Error::CommandIdReused { .. }))
    ));
    assert_eq!(store.last_position().await.unwrap(), 1, "nothing appended");
    assert!(
        repo.earlier_outcome("a-2", &named("open", id))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_refused_command_records_nothing_and_may_run_again() {
    let store = InMemoryStore::new();
    let repo = accounts(&store);
    let id = Uuid::now_v7();
    let refused = repo
        .execute_with("a-1", named("deposit", id), |a| a.deposit(5))
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Rejected("the account is not open"))
    ));
    let nothing = repo
        .execute_with("a-1", named("deposit", id), |_| Vec::<Deposited>::new())
        .await
        .unwrap();
    assert!(!nothing.repeated && nothing.events.is_empty());
    repo.execute("a-1", |a| a.open("ada")).await.unwrap();
    let done = repo
        .execute_with("a-1", named("deposit", id), |a| a.deposit(5))
        .await
        .unwrap();
    assert!(!done.repeated);
    assert_eq!(done.state.balance, 5);
    // Now refused on its merits, it is a repeat all the same.
    let again = repo
        .execute_with("a-1", named("deposit", id), |_| Err::<Deposited, _>("no"))
        .await
        .unwrap();
    assert!(again.repeated);
    assert_eq!(again.version, 2);
}

#[tokio::test]
async fn earlier_outcome_and_compensating_commands() {
    let store = InMemoryStore::new();
    let repo = accounts(&store);
    repo.execute("a-1", |a| a.open("ada")).await.unwrap();
    repo.execute("a-1", |a| a.deposit(500)).await.unwrap();
    let wrong = repo.history("a-1").await.unwrap()[1].event_id;
    let id = Uuid::now_v7();
    let meta = named("correct", id);
    assert!(repo.earlier_outcome("a-1", &meta).await.unwrap().is_none());
    let correct = || {
        repo.command("a-1")
            .metadata(meta.clone())
            .compensating(wrong)
            .execute(|a| a.deposit(1))
    };
    let first = correct().await.unwrap();
    let again = correct().await.unwrap();
    assert!(again.repeated);
    assert_eq!(outcome(&again), outcome(&first));
    let earlier = repo.earlier_outcome("a-1", &meta).await.unwrap().unwrap();
    assert!(earlier.repeated);
    assert_eq!(outcome(&earlier), outcome(&first));
    assert_eq!(
        repo.history("a-1").await.unwrap()[2].metadata.compensates,
        Some(wrong)
    );
    assert!(
        repo.earlier_outcome("a-1", &Metadata::new())
            .await
            .unwrap()
            .is_none(),
        "no command id: nothing to find"
    );
}

/// Eight tasks send one command at once: exactly one append, and all eight
/// get its outcome; seven are told it was a repeat. With commands queued
/// per aggregate and racing, and from eight repositories (no shared queue).
#[test]
fn eight_tasks_one_command_id_one_append() {
    for mode in ["serialized", "racing", "separate repositories"] {
        for round in 0..20 {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .build()
                .unwrap();
            let store = InMemoryStore::new();
            let shared = accounts(&store).with_serialized_commands(mode == "serialized");
            runtime
                .block_on(shared.execute("a-1", |a| a.open("ada")))
                .unwrap();
            let id = Uuid::now_v7();
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let repo = if mode == "separate repositories" {
                        accounts(&store).with_serialized_commands(false)
                    } else {
                        shared.clone()
                    };
                    let barrier = barrier.clone();
                    runtime.spawn(async move {
                        barrier.wait().await;
                        repo.execute_with("a-1", named("deposit", id), |a| a.deposit(7))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let outcomes: Vec<Executed<Account>> = runtime.block_on(async {
                let mut all = Vec::new();
                for task in tasks {
                    all.push(task.await.unwrap());
                }
                all
            });
            let firsts = outcomes.iter().filter(|o| !o.repeated).count();
            assert_eq!(firsts, 1, "{mode}, round {round}");
            for o in &outcomes {
                assert_eq!(outcome(o), outcome(&outcomes[0]), "{mode}, round {round}");
            }
            assert_eq!(outcomes[0].version, 2);
            assert_eq!(runtime.block_on(store.last_position()).unwrap(), 2);
        }
    }
}

#[tokio::test]
async fn a_fresh_command_roots_its_transaction() {
    let store = InMemoryStore::new();
    let repo = accounts(&store);
    repo.execute("a-1", |a| {
        vec![
            a.open("ada").unwrap().into(),
            AccountEvent::from(Deposited { amount: 1 }),
        ]
    })
    .await
    .unwrap();
    let history = repo.history("a-1").await.unwrap();
    // The first event is the root: it records no correlation, its id is it.
    assert_eq!(history[0].metadata.correlation_id, None);
    assert_eq!(history[0].correlation(), history[0].event_id);
    assert_eq!(
        history[1].metadata.correlation_id,
        Some(history[0].event_id)
    );
    assert_eq!(history[1].metadata.causation_id, None);
    // A single-event command stores no metadata at all.
    repo.execute("a-1", |a| a.deposit(2)).await.unwrap();
    let plain = &repo.history("a-1").await.unwrap()[2];
    assert!(plain.metadata.is_empty());

    // With a command id, that is the correlation of every event.
    let id = Uuid::now_v7();
    repo.execute_with("a-1", Metadata::new().command_id(id), |a| {
        vec![a.deposit(3).unwrap(), a.deposit(4).unwrap()]
    })
    .await
    .unwrap();
    let history = repo.history("a-1").await.unwrap();
    assert!(
        history[3..]
            .iter()
            .all(|e| e.metadata.correlation_id == Some(id))
    );
    // A correlation given is kept.
    let given = Uuid::now_v7();
    repo.execute_with(
        "a-1",
        Metadata::new()
            .correlation_id(given)
            .command_id(Uuid::now_v7()),
        |a| a.deposit(5),
    )
    .await
    .unwrap();
    assert_eq!(repo.history("a-1").await.unwrap()[5].correlation(), given);
}

#[tokio::test]
async fn caused_commands_form_one_trail_across_aggregates() {
    let store = InMemoryStore::new();
    let accounts = accounts(&store);
    let shipments = Repository::<Shipment, _>::new(store.clone());
    let request = Uuid::now_v7();
    accounts
        .execute_with(
            "a-1",
            Metadata::new()
                .actor("ada")
                .command("open")
                .command_id(request),
            |a| a.open("ada"),
        )
        .await
        .unwrap();
    accounts.execute("a-2", |a| a.open("bob")).await.unwrap(); // another transaction
    let opened = accounts.history("a-1").await.unwrap().remove(0);
    // A reaction to the opening, in another aggregate; and one to that.
    shipments
        .command("s-1")
        .metadata(Metadata::new().actor("welcome-pack").command("ship"))
        .caused_by(&opened)
        .execute(|_| ShipmentRequested { items: 1 })
        .await
        .unwrap();
    let shipped = shipments.history("s-1").await.unwrap().remove(0);
    accounts
        .command("a-1")
        .caused_by(&shipped)
        .metadata(Metadata::new().actor("billing").command("deposit"))
        .execute(|a| a.deposit(0))
        .await
        .unwrap();
    // A second reaction to the opening, given its metadata by hand.
    accounts
        .execute_with(
            "a-1",
            Metadata::new().actor("bonus").caused_by(&opened),
            |a| a.deposit(10),
        )
        .await
        .unwrap();

    let trail = audit::trail_of(&store, request).await.unwrap();
    assert_eq!(trail.correlation_id(), request);
    let lines: Vec<(&str, u64, usize, Option<u64>)> = trail
        .iter()
        .map(|e| {
            (
                e.stream_id.as_str(),
                e.version,
                e.depth(),
                e.parent_position(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("account-a-1", 1, 0, None),
            ("shipment-s-1", 1, 1, Some(1)),
            ("account-a-1", 2, 2, Some(3)),
            ("account-a-1", 3, 1, Some(1)),
        ]
    );
    assert_eq!(trail.roots().count(), 1);
    let last = &trail.entries()[2];
    let causes: Vec<u64> = trail.causes_of(last).map(|e| e.position).collect();
    assert_eq!(causes, [4, 3, 1]);
    let children: Vec<u64> = trail
        .children_of(&trail.entries()[0])
        .map(|e| e.position)
        .collect();
    assert_eq!(children, [3, 5]);
    assert_eq!(
        trail.to_string(),
        "account-a-1 v1 account-opened (ada: open) @1\n\
         \x20 shipment-s-1 v1 shipment-requested (welcome-pack: ship) @3\n\
         \x20   account-a-1 v2 deposited (billing: deposit) @4\n\
         \x20 account-a-1 v3 deposited (bonus) @5\n"
    );

    // The other transaction's root is found by its own id.
    let other = accounts.history("a-2").await.unwrap().remove(0);
    let trail = audit::trail_of(&store, other.event_id).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert!(
        audit::trail_of(&store, Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_blocking_facade_has_the_same_api() {
    let store = InMemoryStore::new();
    let repo = es_core::blocking::Repository::<Account, _>::new(store.clone());
    let id = Uuid::now_v7();
    let first = repo
        .command("a-1")
        .command_id(id)
        .execute(|a| a.open("ada"))
        .unwrap();
    let again = repo
        .execute_with("a-1", Metadata::new().command_id(id), |a| a.open("ada"))
        .unwrap();
    assert!(again.repeated && !first.repeated);
    assert_eq!(outcome(&again), outcome(&first));
    let earlier = repo
        .earlier_outcome("a-1", &Metadata::new().command_id(id))
        .unwrap()
        .unwrap();
    assert_eq!(earlier.version, 1);
    let opened = repo.history("a-1").unwrap().remove(0);
    repo.command("a-1")
        .caused_by(&opened)
        .execute(|a| a.deposit(1))
        .unwrap();
    let trail = es_core::blocking::trail_of(&store, id).unwrap();
    assert_eq!(trail.len(), 2);
    assert_eq!(trail.entries()[1].parent_position(), Some(1));
}
