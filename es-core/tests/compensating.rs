//! Compensating events over `InMemoryStore`: what a compensating command
//! checks and records, and the trail's raw and effective views (a
//! correction of a correction included), checked against the fold.

// Helpers and property bodies unwrap as `#[test]` functions do: a failure
// there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::prelude::*;
use es_core::{Error, NewEvent, TrailEntry, Uuid};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "deposited")]
struct Deposited {
    amount: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "withdrawn")]
struct Withdrawn {
    amount: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "noted")]
struct Noted {
    text: String,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(name = "account", events(Deposited, Withdrawn, Noted))]
struct Account {
    balance: i64,
    notes: u32,
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

impl Apply<Noted> for Account {
    fn apply(&mut self, _: &Noted) {
        self.notes += 1;
    }
}

/// The event that exactly undoes `event`.
fn inverse(event: &AccountEvent) -> AccountEvent {
    match event {
        AccountEvent::Deposited(d) => Withdrawn { amount: d.amount }.into(),
        AccountEvent::Withdrawn(w) => Deposited { amount: w.amount }.into(),
        AccountEvent::Noted(n) => n.clone().into(),
    }
}

fn accounts() -> Repository<Account, InMemoryStore> {
    Repository::new(InMemoryStore::new())
}

async fn deposit(accounts: &Repository<Account, InMemoryStore>, id: &str, amount: i64) -> Uuid {
    accounts
        .execute(id, |_| Deposited { amount })
        .await
        .unwrap();
    let history = accounts.history(id).await.unwrap();
    history.last().unwrap().event_id
}

/// The id of the event at `version` of account `id`.
async fn event_id(accounts: &Repository<Account, InMemoryStore>, id: &str, version: u64) -> Uuid {
    let history = accounts.history(id).await.unwrap();
    history[usize::try_from(version - 1).unwrap()].event_id
}

fn versions<'t, T: 't>(entries: impl IntoIterator<Item = &'t TrailEntry<T>>) -> Vec<u64> {
    entries.into_iter().map(|e| e.version).collect()
}

// ---------------------------------------------------------------------------
// The compensating command.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_event_of_a_compensating_command_names_its_target() {
    let accounts = accounts();
    deposit(&accounts, "a", 5).await;
    let wrong = deposit(&accounts, "a", 500).await;

    let meta = Metadata::new().actor("clerk").reason("typed 500 for 50");
    let done = accounts
        .command("a")
        .compensating(wrong)
        .metadata(meta.clone()) // after `compensating`: the target is kept
        .execute(|_| {
            (
                Withdrawn { amount: 500 },
                Noted {
                    text: "typo".into(),
                },
            )
        })
        .await
        .unwrap();
    assert_eq!((done.version, done.state.balance), (4, 5));

    let history = accounts.history("a").await.unwrap();
    for entry in &history[2..] {
        assert_eq!(entry.metadata.compensates, Some(wrong));
    }
    // The command's first event is the root of its transaction; the second
    // records the first's id as its correlation.
    let root = history[2].event_id;
    assert_eq!(history[2].metadata, meta.clone().compensates(wrong));
    assert_eq!(
        history[3].metadata,
        meta.clone().compensates(wrong).correlation_id(root)
    );
    assert!(
        history[..2]
            .iter()
            .all(|e| e.metadata.compensates.is_none())
    );

    // The short form records the same.
    accounts
        .execute_compensating("a", wrong, |_| Noted {
            text: "again".into(),
        })
        .await
        .unwrap();
    let history = accounts.history("a").await.unwrap();
    assert_eq!(history[4].metadata, Metadata::new().compensates(wrong));
}

#[tokio::test]
async fn a_missing_target_is_a_typed_error_and_nothing_is_appended() {
    let accounts = accounts();
    deposit(&accounts, "a", 5).await;
    let nowhere = Uuid::now_v7();

    let mut decided = false;
    let refused = accounts
        .execute_compensating("a", nowhere, |_| {
            decided = true;
            Withdrawn { amount: 5 }
        })
        .await;
    let Err(ExecuteError::Store(Error::CompensationTargetNotFound { stream, target })) = refused
    else {
        panic!("a missing target is refused: {refused:?}");
    };
    assert_eq!(
        (stream, target),
        (accounts.stream_id("a").unwrap(), nowhere)
    );
    assert!(!decided, "the decision does not run");
    assert_eq!(accounts.load("a").await.unwrap().version, 1);
    assert_eq!(accounts.store().last_position().await.unwrap(), 1);

    // A stream that does not exist holds no target either.
    let refused = accounts
        .execute_compensating("new", nowhere, |_| Deposited { amount: 1 })
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Store(
            Error::CompensationTargetNotFound { .. }
        ))
    ));
    assert!(!accounts.load("new").await.unwrap().exists());
    assert_eq!(accounts.store().last_position().await.unwrap(), 1);
}

#[tokio::test]
async fn a_target_of_another_stream_is_refused() {
    let accounts = accounts();
    let elsewhere = deposit(&accounts, "a", 5).await;
    deposit(&accounts, "b", 7).await;

    let refused = accounts
        .command("b")
        .metadata(Metadata::new().actor("clerk"))
        .compensating(elsewhere)
        .execute(|_| Withdrawn { amount: 5 })
        .await;
    let Err(ExecuteError::Store(Error::CompensationTargetNotFound { stream, target })) = &refused
    else {
        panic!("another stream's event is refused: {refused:?}");
    };
    assert_eq!((stream.as_str(), *target), ("account-b", elsewhere));
    assert_eq!(
        refused.unwrap_err().to_string(),
        format!("stream `account-b` holds no event {elsewhere} to compensate")
    );
    let b = accounts.load("b").await.unwrap();
    assert_eq!((b.version, b.balance), (1, 7));
    assert_eq!(accounts.store().last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn metadata_that_names_a_target_is_checked_too() {
    let accounts = accounts();
    deposit(&accounts, "a", 5).await;
    let refused = accounts
        .execute_with("a", Metadata::new().compensates(Uuid::now_v7()), |_| {
            Withdrawn { amount: 5 }
        })
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Store(
            Error::CompensationTargetNotFound { .. }
        ))
    ));
    assert_eq!(accounts.load("a").await.unwrap().version, 1);

    let target = event_id(&accounts, "a", 1).await;
    let done = accounts
        .execute_with("a", Metadata::new().compensates(target), |_| Withdrawn {
            amount: 5,
        })
        .await
        .unwrap();
    assert_eq!((done.version, done.state.balance), (2, 0));
}

#[tokio::test]
async fn a_refusal_of_the_decision_is_still_a_rejection() {
    let accounts = accounts();
    let target = deposit(&accounts, "a", 5).await;
    let refused = accounts
        .execute_compensating("a", target, |_| Err::<Withdrawn, _>("not today"))
        .await
        .unwrap_err();
    assert_eq!(refused.rejection(), Some(&"not today"));
    assert_eq!(accounts.load("a").await.unwrap().version, 1);
}

/// Another writer appends between the command's load and its append: the
/// decision runs again on the fresh state, the target (a stored event,
/// which nothing removes) is still there, and the events land after the
/// other writer's, marked.
#[tokio::test]
async fn a_compensation_that_meets_a_conflict_is_retried_and_still_marked() {
    let accounts = accounts();
    let wrong = deposit(&accounts, "a", 500).await;
    let stream = accounts.stream_id("a").unwrap();
    let store = accounts.store().clone();

    let mut runs = 0;
    let done = accounts
        .execute_compensating("a", wrong, |a: &Account| {
            runs += 1;
            if runs == 1 {
                let theirs = NewEvent::encode(
                    "account",
                    &AccountEvent::from(Deposited { amount: 1 }),
                    Metadata::new().actor("other-writer"),
                )
                .unwrap();
                es_core::blocking::block_on(store.append(
                    &stream,
                    ExpectedVersion::Exact(1),
                    vec![theirs],
                ))
                .unwrap();
            }
            assert!(a.balance >= 500);
            Withdrawn { amount: 500 }
        })
        .await
        .unwrap();
    assert_eq!((runs, done.attempts, done.version), (2, 2, 3));
    assert_eq!(done.state.balance, 1);

    let trail = accounts.trail("a").await.unwrap();
    assert_eq!(
        trail.raw()[1].metadata.actor.as_deref(),
        Some("other-writer")
    );
    assert_eq!(trail.raw()[2].metadata.compensates, Some(wrong));
    assert_eq!(trail.raw()[0].corrected_by(), [3]);
    assert_eq!(versions(trail.effective()), [2]);
}

#[test]
fn the_blocking_facade_compensates_and_shows_the_trail() {
    let accounts = es_core::blocking::Repository::<Account, _>::new(InMemoryStore::new());
    accounts.execute("a", |_| Deposited { amount: 5 }).unwrap();
    let wrong = accounts.history("a").unwrap()[0].event_id;
    accounts
        .command("a")
        .compensating(wrong)
        .execute(|_| Withdrawn { amount: 5 })
        .unwrap();
    let refused = accounts
        .execute_compensating("a", Uuid::now_v7(), |_| Withdrawn { amount: 5 })
        .unwrap_err();
    assert!(matches!(
        refused,
        ExecuteError::Store(Error::CompensationTargetNotFound { .. })
    ));
    accounts
        .execute_compensating("a", wrong, |_| Noted {
            text: "checked".into(),
        })
        .unwrap();
    let trail = accounts.trail("a").unwrap();
    assert_eq!(trail.len(), 3);
    assert_eq!(trail.raw()[0].corrected_by(), [2, 3]);
    assert_eq!(trail.effective().count(), 0);
    assert_eq!(accounts.load("a").unwrap().balance, 0);
}

// ---------------------------------------------------------------------------
// The trail.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_trail_marks_corrected_entries_and_leaves_them_out_of_the_effective_view() {
    let accounts = accounts();
    deposit(&accounts, "a", 5).await; // v1
    let wrong = deposit(&accounts, "a", 500).await; // v2
    accounts
        .execute_compensating("a", wrong, |_| {
            (
                Withdrawn { amount: 500 },
                Noted {
                    text: "typo".into(),
                },
            )
        })
        .await
        .unwrap(); // v3, v4
    deposit(&accounts, "a", 50).await; // v5

    let trail = accounts.trail("a").await.unwrap();
    assert_eq!(versions(&trail), [1, 2, 3, 4, 5]);
    assert_eq!(versions(trail.raw()), [1, 2, 3, 4, 5]);
    let marks: Vec<_> = trail
        .raw()
        .iter()
        .map(|e| {
            (
                e.corrected_by().to_vec(),
                e.compensated_version(),
                e.is_compensation(),
                e.is_corrected(),
                e.stands(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [
            (vec![], None, false, false, true),
            (vec![3, 4], None, false, true, false),
            (vec![], Some(2), true, false, false),
            (vec![], Some(2), true, false, false),
            (vec![], None, false, false, true),
        ]
    );
    assert_eq!(versions(trail.effective()), [1, 5]);
    let v2 = trail.entry(2).unwrap();
    assert_eq!(versions(trail.corrections_of(v2)), [3, 4]);
    assert_eq!(v2.event, Decoded::Event(Deposited { amount: 500 }.into()));
    assert!(trail.entry(6).is_none());

    // The state is the fold of every event: the compensation's `Apply`
    // undid the wrong deposit.
    assert_eq!(accounts.load("a").await.unwrap().balance, 55);
    // The raw trail is the history, entry for entry.
    let history = accounts.history("a").await.unwrap();
    let raw: Vec<_> = trail
        .into_entries()
        .into_iter()
        .map(TrailEntry::into_envelope)
        .collect();
    assert_eq!(raw, history);

    assert!(accounts.trail("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_correction_of_a_correction_undoes_it() {
    let accounts = accounts();
    deposit(&accounts, "a", 5).await; // v1
    let deposit_500 = deposit(&accounts, "a", 500).await; // v2: it was right
    accounts
        .execute_compensating("a", deposit_500, |_| Withdrawn { amount: 500 })
        .await
        .unwrap(); // v3: a wrong correction
    let wrong_correction = event_id(&accounts, "a", 3).await;
    accounts
        .execute_compensating("a", wrong_correction, |_| Deposited { amount: 500 })
        .await
        .unwrap(); // v4: corrects the correction

    let trail = accounts.trail("a").await.unwrap();
    let by: Vec<_> = trail.iter().map(|e| e.corrected_by().to_vec()).collect();
    assert_eq!(by, [vec![], vec![3], vec![4], vec![]]);
    let corrected: Vec<_> = trail.iter().map(TrailEntry::is_corrected).collect();
    assert_eq!(corrected, [false, false, true, false]);
    assert_eq!(trail.entry(4).unwrap().compensated_version(), Some(3));
    // v2 stands again: its only correction was itself corrected.
    assert_eq!(versions(trail.effective()), [1, 2]);
    assert_eq!(accounts.load("a").await.unwrap().balance, 505);

    // A third correction (the first one was right after all) puts v3 back
    // in force, so v2 is corrected again.
    let correction_of_correction = event_id(&accounts, "a", 4).await;
    accounts
        .execute_compensating("a", correction_of_correction, |_| Withdrawn { amount: 500 })
        .await
        .unwrap(); // v5
    let trail = accounts.trail("a").await.unwrap();
    let corrected: Vec<_> = trail.iter().map(TrailEntry::is_corrected).collect();
    assert_eq!(corrected, [false, true, false, true, false]);
    assert_eq!(versions(trail.effective()), [1]);
    assert_eq!(accounts.load("a").await.unwrap().balance, 5);
}

#[tokio::test]
async fn an_entry_stays_corrected_while_one_of_its_corrections_is_in_force() {
    let accounts = accounts();
    let wrong = deposit(&accounts, "a", 500).await; // v1
    accounts
        .execute_compensating("a", wrong, |_| Withdrawn { amount: 200 })
        .await
        .unwrap(); // v2
    accounts
        .execute_compensating("a", wrong, |_| Withdrawn { amount: 300 })
        .await
        .unwrap(); // v3
    let first = event_id(&accounts, "a", 2).await;
    accounts
        .execute_compensating("a", first, |_| Deposited { amount: 200 })
        .await
        .unwrap(); // v4: undoes v2 only

    let trail = accounts.trail("a").await.unwrap();
    assert_eq!(trail.raw()[0].corrected_by(), [2, 3]);
    assert!(trail.raw()[0].is_corrected(), "v3 is still in force");
    assert!(trail.raw()[1].is_corrected());
    assert!(!trail.raw()[2].is_corrected());
    assert_eq!(trail.effective().count(), 0);
}

/// A store written to directly can hold compensations the repository would
/// refuse: one naming an event of another stream, one naming a later
/// event. Neither corrects anything, and neither stands.
#[tokio::test]
async fn a_compensation_whose_target_is_not_an_earlier_entry_corrects_nothing() {
    let accounts = accounts();
    let elsewhere = deposit(&accounts, "b", 1).await;
    let stream = accounts.stream_id("a").unwrap();
    let later = Uuid::now_v7();
    let event = |e: AccountEvent, meta: Metadata| NewEvent::encode("account", &e, meta).unwrap();
    accounts
        .store()
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                event(
                    Withdrawn { amount: 1 }.into(),
                    Metadata::new().compensates(elsewhere),
                ),
                event(
                    Withdrawn { amount: 2 }.into(),
                    Metadata::new().compensates(later),
                ),
                event(Deposited { amount: 2 }.into(), Metadata::new()).with_id(later),
            ],
        )
        .await
        .unwrap();

    let trail = accounts.trail("a").await.unwrap();
    let marks: Vec<_> = trail
        .iter()
        .map(|e| (e.is_compensation(), e.compensated_version(), e.stands()))
        .collect();
    assert_eq!(
        marks,
        [
            (true, None, false),
            (true, None, false),
            (false, None, true)
        ]
    );
    assert!(trail.iter().all(|e| e.corrected_by().is_empty()));
    assert!(!accounts.trail("b").await.unwrap().raw()[0].is_corrected());
}

#[tokio::test]
async fn an_undecodable_entry_takes_part_in_the_trail() {
    let accounts = accounts();
    let stream = accounts.stream_id("a").unwrap();
    let unknown = NewEvent::new("account", "from-the-future", 1, "{}");
    let target = unknown.event_id;
    accounts
        .store()
        .append(&stream, ExpectedVersion::NoStream, vec![unknown])
        .await
        .unwrap();
    // Its event does not decode, so the aggregate cannot be loaded: the
    // trail, like the history, still shows it.
    let refused = accounts
        .execute_compensating("a", target, |_| Noted {
            text: "undo".into(),
        })
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Store(Error::Decode { .. }))
    ));
    let compensation = NewEvent::encode(
        "account",
        &AccountEvent::from(Noted {
            text: "undo".into(),
        }),
        Metadata::new().compensates(target),
    )
    .unwrap();
    accounts
        .store()
        .append(&stream, ExpectedVersion::Exact(1), vec![compensation])
        .await
        .unwrap();
    let trail = accounts.trail("a").await.unwrap();
    assert!(trail.raw()[0].event.is_undecodable());
    assert_eq!(trail.raw()[0].corrected_by(), [2]);
    assert_eq!(trail.effective().count(), 0);
}

// ---------------------------------------------------------------------------
// The effective trail agrees with the fold.
// ---------------------------------------------------------------------------

/// One step of a random history: deposit, or compensate the entry at an
/// index (taken modulo the entries not compensated yet) with its exact
/// inverse.
#[derive(Debug, Clone)]
enum Step {
    Deposit(i64),
    Compensate(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1_i64..1_000).prop_map(Step::Deposit),
        any::<usize>().prop_map(Step::Compensate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// When every compensation exactly undoes its entry, and no entry is
    /// compensated twice, folding the effective entries gives the state:
    /// the trail's reading of corrections (of corrections, to any depth)
    /// is the fold's.
    #[test]
    fn folding_the_effective_trail_gives_the_state(steps in proptest::collection::vec(step(), 1..40)) {
        es_core::blocking::block_on(async {
            let accounts = accounts();
            for step in steps {
                match step {
                    Step::Deposit(amount) => {
                        accounts.execute("p", |_| Deposited { amount }).await.unwrap();
                    }
                    Step::Compensate(pick) => {
                        let trail = accounts.trail("p").await.unwrap();
                        let open: Vec<_> = trail.iter().filter(|e| e.corrected_by().is_empty()).collect();
                        if open.is_empty() {
                            continue;
                        }
                        let target = open[pick % open.len()];
                        let undo = inverse(target.event.event().unwrap());
                        accounts
                            .execute_compensating("p", target.event_id, |_| undo.clone())
                            .await
                            .unwrap();
                    }
                }
            }
            let state = accounts.load("p").await.unwrap().state;
            let trail = accounts.trail("p").await.unwrap();
            let mut effective = Account::default();
            for entry in trail.effective() {
                effective.apply(entry.event.event().unwrap());
            }
            prop_assert_eq!(effective, state);
            prop_assert!(trail.effective().all(|e| !e.is_compensation()));
            Ok(())
        })?;
    }
}
