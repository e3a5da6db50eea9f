// `crate = "..."` makes the generated code use another path to es-core.
extern crate es_core as renamed_es;

use renamed_es::{Aggregate as _, Apply, Event as _, EventSet as _};
use serde::{Deserialize, Serialize};

#[derive(renamed_es::Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(crate = "renamed_es")]
pub struct Deposited {
    pub amount: u64,
}

#[derive(renamed_es::Aggregate, Default)]
#[aggregate(crate = "renamed_es", events(Deposited))]
pub struct Account {
    balance: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

fn main() {
    assert_eq!(Deposited::NAME, "deposited");
    assert_eq!(Account::NAME, "account");
    let mut account = Account::default();
    account.apply(&AccountEvent::from(Deposited { amount: 3 }));
    assert_eq!(account.balance, 3);
    assert_eq!(AccountEvent::EVENTS.len(), 1);
}
