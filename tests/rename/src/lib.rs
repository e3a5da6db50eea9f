//! A crate that depends on es-core as `renamed_es` and has no `es_core` in
//! scope at all: the derives must follow `crate = "renamed_es"`.

use renamed_es::Apply;
use serde::{Deserialize, Serialize};

/// Money came in.
#[derive(renamed_es::Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(crate = "renamed_es", name = "deposited", version = 2, upcast_from = DepositedV1)]
pub struct Deposited {
    /// In cents.
    pub cents: u64,
}

/// The first version, in whole units.
#[derive(renamed_es::Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(crate = "renamed_es", name = "deposited", version = 1)]
pub struct DepositedV1 {
    /// In whole units.
    pub amount: u64,
}

impl From<DepositedV1> for Deposited {
    fn from(old: DepositedV1) -> Self {
        Deposited {
            cents: old.amount * 100,
        }
    }
}

/// An account.
#[derive(renamed_es::Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(
    crate = "renamed_es",
    name = "account",
    events(Deposited),
    snapshot(every = 2)
)]
pub struct Account {
    /// The balance in cents.
    pub cents: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.cents += event.cents;
    }
}
