//! The derived code works end to end through a renamed dependency.

use es_rename_test::{Account, AccountEvent, Deposited};
use renamed_es::{EventSet, InMemoryStore, Repository};

#[test]
fn repository_round_trip_through_renamed_crate() {
    let accounts = renamed_es::blocking::Repository::<Account, _>::new(InMemoryStore::new());
    accounts
        .execute("a", |_| Deposited { cents: 5 })
        .expect("deposit");
    accounts
        .execute("a", |_| Deposited { cents: 7 })
        .expect("deposit");
    assert_eq!(accounts.load("a").expect("load").cents, 12);
    let _: &Repository<Account, InMemoryStore> = accounts.as_async();
}

#[test]
fn upcast_through_renamed_crate() {
    let old = AccountEvent::decode("deposited", 1, r#"{"amount":3}"#).expect("upcasts");
    assert_eq!(old, AccountEvent::Deposited(Deposited { cents: 300 }));
}
