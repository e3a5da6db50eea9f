//! The read-model test kit: a history of several aggregates' events, run
//! through a durable or an inline read model, rows asserted; refusals
//! parked or stopping; per-stream projections folded from the same history.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common/bank.rs"]
mod bank;

use bank::{Balances, Deposited, REFUSED, Withdrawn, noted};
use es_core::prelude::*;
use es_core::projection::StopReason;
use es_core::testing::history;
use es_sqlite::ReadModelError;
use es_sqlite::testing::given;

#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "account", events(Deposited, Withdrawn))]
struct Account;
impl Apply<Deposited> for Account {
    fn apply(&mut self, _: &Deposited) {}
}
impl Apply<Withdrawn> for Account {
    fn apply(&mut self, _: &Withdrawn) {}
}

/// Another aggregate whose events the model also takes.
#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "wallet", events(Deposited))]
struct Wallet;
impl Apply<Deposited> for Wallet {
    fn apply(&mut self, _: &Deposited) {}
}

/// A per-stream projection over the same events: the account's total.
#[derive(Projection, Default, Debug)]
#[projection(name = "total", events(Deposited, Withdrawn))]
struct Total(i64);
impl Apply<Deposited> for Total {
    fn apply(&mut self, e: &Deposited) {
        self.0 += e.amount;
    }
}
impl Apply<Withdrawn> for Total {
    fn apply(&mut self, e: &Withdrawn) {
        self.0 -= e.amount;
    }
}

fn sample() -> es_core::testing::History {
    history()
        .of::<Account>("1", (Deposited { amount: 10 }, Withdrawn { amount: 3 }))
        .of::<Wallet>("9", Deposited { amount: 4 })
        .raw("account-1", noted())
        .of::<Account>("2", [Deposited { amount: 1 }, Deposited { amount: 2 }])
}

const BALANCES: &str = "SELECT account, balance, events FROM balances ORDER BY account";

#[test]
fn a_durable_and_an_inline_model_give_the_same_rows() {
    let want = [
        ("account-1".to_string(), 7, 2),
        ("account-2".to_string(), 3, 2),
        ("wallet-9".to_string(), 4, 1),
    ];
    given(sample())
        .then_read_model(Balances::default())
        .assert_rows(BALANCES, want.clone());
    given(sample())
        .then_inline(Balances::default())
        .assert_rows(BALANCES, want);
}

#[test]
fn the_per_stream_form_folds_one_stream_of_the_same_history() {
    let total = sample().then_projection::<Total, Account>("1");
    assert_eq!(total.0, 7);
    assert_eq!(total.version, 3, "the unlisted event counts in the version");
    assert_eq!(sample().then_projection::<Total, Account>("3").version, 0);
}

#[test]
fn refusals_are_parked_or_stop_the_model() {
    let refusing = || {
        history().of::<Account>(
            "1",
            [
                Deposited { amount: 1 },
                Deposited { amount: REFUSED },
                Deposited { amount: 2 },
            ],
        )
    };
    let parked = given(refusing()).then_read_model_parking(Balances { refuse: true });
    parked.assert_rows(BALANCES, [("account-1".to_string(), 3, 2)]);
    let list = parked.parked();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].position, list[0].version), (2, 2));

    let stopped = given(refusing()).then_read_model_stops(Balances { refuse: true });
    let ReadModelError::Projection(error) = &*stopped else {
        panic!("{stopped:?}")
    };
    assert_eq!((error.position, error.stream.as_str()), (2, "account-1"));
    assert!(matches!(error.reason, StopReason::Handler(_)));
}

#[test]
#[should_panic(
    expected = "the rows of `SELECT account, balance, events FROM balances ORDER BY account`"
)]
fn wrong_rows_fail_the_test() {
    given(sample())
        .then_read_model(Balances::default())
        .assert_rows(BALANCES, [("account-1".to_string(), 0, 0)]);
}

#[test]
#[should_panic(expected = "did not catch up")]
fn a_model_that_stops_fails_then_read_model() {
    given(history().of::<Account>("1", Deposited { amount: REFUSED }))
        .then_read_model(Balances { refuse: true });
}
