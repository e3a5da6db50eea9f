//! Forgettable payloads on the in-memory store (RELIABILITY S3, the parts
//! that need no files): personal fields sealed per subject, read back on
//! every path, forgotten when the keys go while everything else reads as
//! before, ciphertexts bound to their event, field and subject, and no
//! nonce repeated.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::collections::HashSet;

use es_core::blocking::{Repository, block_on};
use es_core::evolution::Migration;
use es_core::prelude::*;
use es_core::privacy::{DataKey, Forget, KeyEncryptionKey, MemoryKeyStore, PrivacyError};
use es_core::{Error, NewEvent, ReadRange};
use serde::{Deserialize, Serialize};

/// An order: the shipping name belongs to the order's stream, the e-mail
/// to the customer who placed it.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "order-placed")]
pub struct Placed {
    pub customer_id: String,
    #[personal(subject = customer_id)]
    pub email: Personal<String>,
    pub ship_to: Personal<String>,
    pub total: u64,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "order", events(Placed), snapshot(every = 1))]
pub struct Order {
    pub email: Option<Personal<String>>,
    pub ship_to: Option<Personal<String>>,
    pub total: u64,
}

impl Apply<Placed> for Order {
    fn apply(&mut self, e: &Placed) {
        self.email = Some(e.email.clone());
        self.ship_to = Some(e.ship_to.clone());
        self.total += e.total;
    }
}

const CANARY_EMAIL: &str = "canary-7f3a@example.com";
const CANARY_NAME: &str = "Canary Q. Shipping";

fn placed(customer: &str) -> Placed {
    Placed {
        customer_id: customer.into(),
        email: Personal::known(format!("{customer}-{CANARY_EMAIL}")),
        ship_to: Personal::known(CANARY_NAME.into()),
        total: 30,
    }
}

fn store() -> InMemoryStore {
    InMemoryStore::new().with_keys(MemoryKeyStore::new(KeyEncryptionKey::generate()))
}

#[test]
fn personal_fields_are_stored_sealed_and_read_back_on_every_path() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone());
    orders.execute("1", |_| placed("c-9")).unwrap();

    let stored = store.stored_payloads();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains("canary"), "{}", stored[0]);
    assert!(!stored[0].contains("Canary"), "{}", stored[0]);
    let stored: serde_json::Value = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(stored["total"], 30, "other fields are stored as they are");
    assert_eq!(
        stored["email"]["subject"], "c-9",
        "the subject the field names"
    );
    assert!(stored["ship_to"].get("subject").is_some());
    assert!(stored["email"]["$sealed"].is_string());

    let order = orders.load("1").unwrap().state;
    assert_eq!(
        order.email,
        Some(Personal::known(format!("c-9-{CANARY_EMAIL}")))
    );
    assert_eq!(order.ship_to, Some(Personal::known(CANARY_NAME.into())));
    let history = orders.history("1").unwrap();
    assert_eq!(history[0].event.event(), Some(&placed("c-9").into()));
    let all = block_on(async {
        let mut all = store.read_all(0);
        es_core::store::next(&mut all).await.unwrap().unwrap()
    });
    let above: serde_json::Value = serde_json::from_str(all.payload().as_str()).unwrap();
    assert_eq!(
        above["email"],
        serde_json::json!({ "$personal": format!("c-9-{CANARY_EMAIL}"), "subject": "c-9" }),
        "above the store a personal field is its marked form"
    );
}

#[test]
fn forgetting_a_subject_forgets_its_fields_only() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone()).with_cache(10);
    orders.execute("1", |_| placed("c-9")).unwrap();
    orders.execute("2", |_| placed("c-5")).unwrap();
    assert!(
        block_on(store.load_snapshot(&StreamId::new("order-1").unwrap()))
            .unwrap()
            .is_some()
    );

    let forgotten = orders.forget("c-9").unwrap();
    assert_eq!(forgotten.keys_destroyed, 1);
    assert_eq!(
        forgotten.snapshots_deleted, 2,
        "every snapshot may hold decrypted data"
    );
    for id in ["order-1", "order-2"] {
        let snapshot = block_on(store.load_snapshot(&StreamId::new(id).unwrap())).unwrap();
        assert!(snapshot.is_none(), "{id}'s snapshot is gone");
    }

    let one = orders.load("1").unwrap().state;
    assert_eq!(one.email, Some(Personal::Forgotten), "c-9's e-mail");
    assert_eq!(
        one.ship_to,
        Some(Personal::known(CANARY_NAME.into())),
        "the stream's own subject is not c-9"
    );
    assert_eq!(one.total, 30, "everything else still decodes");
    let two = orders.load("2").unwrap().state;
    assert_eq!(
        two.email,
        Some(Personal::known(format!("c-5-{CANARY_EMAIL}")))
    );

    // The stream's subject next: its shipping name goes too.
    orders.forget("order-1").unwrap();
    assert_eq!(
        orders.load("1").unwrap().state.ship_to,
        Some(Personal::Forgotten)
    );

    // The forgetting is recorded, without personal data, and forgetting
    // again is harmless.
    let again = block_on(store.forget("c-9", Metadata::new().actor("dpo"))).unwrap();
    assert_eq!(again.keys_destroyed, 0);
    let recorded = block_on(async {
        let stream = es_core::privacy::subject_stream("c-9").unwrap();
        let mut events = store.read_stream(&stream, ReadRange::all());
        let mut names = Vec::new();
        while let Some(e) = es_core::store::next(&mut events).await {
            let e = e.unwrap();
            assert!(!e.payload().as_str().contains("canary"));
            names.push((e.name, e.metadata.actor));
        }
        names
    });
    assert_eq!(
        recorded,
        vec![
            ("es.subject-forgotten".to_owned(), None),
            ("es.subject-forgotten".to_owned(), Some("dpo".to_owned())),
        ]
    );

    // The deploy check and the replay check know the framework's record.
    let registry = es_core::Registry::builder()
        .aggregate::<Order>()
        .build()
        .unwrap();
    assert_eq!(block_on(registry.undecodable(&store)).unwrap(), vec![]);
    let report = block_on(
        es_core::verify::Verify::new(&store)
            .aggregate::<Order>()
            .run(),
    )
    .unwrap();
    assert!(report.is_clean(), "{report:#}");
    assert!(report.unchecked.is_empty(), "{report:#}");
}

#[test]
fn the_deploy_check_passes_a_store_that_forgot_a_subject() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone());
    orders.execute("1", |_| placed("c-9")).unwrap();
    orders.forget("c-9").unwrap();
    // The framework reads its `es.subject-forgotten` events itself: no
    // program registers a type for them.
    block_on(es_core::registry::check_store(&store)).unwrap();
}

#[test]
fn a_returning_subject_gets_a_new_key_and_old_data_stays_forgotten() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone());
    orders.execute("1", |_| placed("c-9")).unwrap();
    orders.forget("c-9").unwrap();
    orders.execute("2", |_| placed("c-9")).unwrap();
    assert_eq!(
        orders.load("1").unwrap().state.email,
        Some(Personal::Forgotten)
    );
    assert_eq!(
        orders.load("2").unwrap().state.email,
        Some(Personal::known(format!("c-9-{CANARY_EMAIL}")))
    );
}

/// Appends a stored payload as a new event of `stream`, as an attacker
/// with write access would: sealed values pass the seal unchanged (only
/// `$personal` ones are sealed).
fn replant(store: &InMemoryStore, stream: &str, payload: String) -> Result<(), Error> {
    let event = NewEvent::new("order", "order-placed", 1, payload);
    block_on(store.append(&StreamId::new(stream)?, ExpectedVersion::Any, vec![event]))?;
    Ok(())
}

#[test]
fn a_ciphertext_moved_to_another_event_field_or_subject_fails_authentication() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone());
    orders.execute("1", |_| placed("c-9")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&store.stored_payloads()[0]).unwrap();

    // The same payload in another event of another stream.
    replant(&store, "order-2", stored.to_string()).unwrap();
    let err = orders.load("2").unwrap_err();
    assert!(
        matches!(&err, Error::Privacy(PrivacyError::Authentication { pointer, .. }) if pointer == "/email" || pointer == "/ship_to"),
        "{err:?}"
    );

    // The e-mail's ciphertext in the shipping-name field.
    let mut swapped = stored.clone();
    swapped["ship_to"] = stored["email"].clone();
    replant(&store, "order-3", swapped.to_string()).unwrap();
    assert!(matches!(
        orders.load("3").unwrap_err(),
        Error::Privacy(PrivacyError::Authentication { .. })
    ));

    // Another subject's name on the same ciphertext.
    let mut resubjected = stored.clone();
    resubjected["email"]["subject"] = "c-5".into();
    replant(&store, "order-4", resubjected.to_string()).unwrap();
    let err = orders.load("4").unwrap_err();
    assert!(matches!(err, Error::Privacy(_)), "{err:?}");
}

#[test]
fn a_migration_copies_personal_fields_sealed_for_their_new_place() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone());
    orders.execute("1", |_| placed("c-9")).unwrap();
    block_on(
        Migration::copy(
            StreamId::new("order-1").unwrap(),
            StreamId::new("order-10").unwrap(),
        )
        .run(&store),
    )
    .unwrap();
    let stored = store.stored_payloads();
    assert!(stored.iter().all(|p| !p.contains("canary")), "{stored:?}");
    assert_eq!(
        orders.load("10").unwrap().state.email,
        Some(Personal::known(format!("c-9-{CANARY_EMAIL}")))
    );
    orders.forget("c-9").unwrap();
    assert_eq!(
        orders.load("10").unwrap().state.email,
        Some(Personal::Forgotten)
    );
}

#[test]
fn without_keys_personal_fields_are_stored_marked_and_read_back() {
    let store = InMemoryStore::new();
    let orders = Repository::<Order, _>::new(store.clone());
    orders.execute("1", |_| placed("c-9")).unwrap();
    assert!(store.stored_payloads()[0].contains("\"$personal\""));
    assert_eq!(
        orders.load("1").unwrap().state.ship_to,
        Some(Personal::known(CANARY_NAME.into()))
    );
}

#[test]
fn a_million_seals_repeat_no_nonce() {
    let kek = KeyEncryptionKey::generate();
    let key = DataKey::generate();
    let mut nonces = HashSet::with_capacity(1_000_000);
    for _ in 0..1_000_000 {
        // Wrapping seals with the same nonce source as every field.
        let wrapped = kek.wrap("subject", &key).unwrap();
        let nonce: [u8; 24] = wrapped[..24].try_into().unwrap();
        assert!(nonces.insert(nonce), "a nonce repeated");
    }
    assert_eq!(nonces.len(), 1_000_000);
}

#[test]
fn a_repeated_command_returns_its_first_events_opened() {
    let store = store();
    let orders = Repository::<Order, _>::new(store.clone());
    let id = es_core::Uuid::now_v7();
    let first = orders
        .command("1")
        .command_id(id)
        .execute(|_| placed("c-9"))
        .unwrap();
    let again = orders
        .command("1")
        .command_id(id)
        .execute(|_| placed("c-9"))
        .unwrap();
    assert!(!first.repeated && again.repeated);
    assert_eq!(
        again.events, first.events,
        "decoded from the stored, sealed events"
    );
    assert_eq!(store.stored_payloads().len(), 1);
}
