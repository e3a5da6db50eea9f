// `crate = "..."` makes the generated code use another path to es-core.
extern crate es_core as renamed_es;

use renamed_es::{Aggregate as _, Apply, Event as _, EventSet as _, Projection};
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

#[derive(renamed_es::Projection, Default)]
#[projection(crate = "renamed_es", events(Deposited))]
pub struct Deposits(u64);

impl Apply<Deposited> for Deposits {
    fn apply(&mut self, _: &Deposited) {
        self.0 += 1;
    }
}

pub struct Ledger;

#[derive(renamed_es::Projection, Default)]
#[projection(crate = "renamed_es", events(Deposited), context = Ledger)]
pub struct Audit;

impl renamed_es::Handle<Deposited, Ledger> for Audit {
    fn handle(
        &mut self,
        _: &Ledger,
        _: &renamed_es::Envelope<Deposited>,
    ) -> Result<(), renamed_es::BoxError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(Deposited::NAME, "deposited");
    assert_eq!(Account::NAME, "account");
    let mut account = Account::default();
    account.apply(&AccountEvent::from(Deposited { amount: 3 }));
    assert_eq!(account.balance, 3);
    assert_eq!(AccountEvent::EVENTS.len(), 1);

    let mut deposits = Deposits::default();
    deposits.apply(&DepositsEvent::from(Deposited { amount: 1 }));
    assert_eq!(
        (<Deposits as Projection>::NAME, deposits.0),
        ("deposits", 1)
    );
    assert_eq!(<Audit as Projection>::NAME, "audit");
    fn dispatches<P: renamed_es::Dispatch<Ledger>>() {}
    dispatches::<Audit>();
    assert_eq!(AuditEvent::EVENTS.len(), 1);
}
