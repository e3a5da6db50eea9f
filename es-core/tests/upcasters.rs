//! Raw upcasters, one by one and chained, on every read path of es-core:
//! repository loads (from events and from a snapshot), `history`,
//! per-stream projections, and `$all` readers through `Envelope::upcast`.
//! A stream's version counts stored events, whatever they upcast to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_pass_by_value, // upcasters take their event by value
    clippy::unnecessary_wraps,      // and return a Result
    missing_docs,
    unreachable_pub
)]

use es_core::prelude::*;
use es_core::store::next;
use es_core::upcast::{RawEvent, RawUpcaster};
use es_core::{BoxError, DecodeError, Error, NewEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Today's events of a contact.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contact-named")]
pub struct Named {
    pub first: String,
    pub last: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contact-titled")]
pub struct Titled {
    pub title: String,
}

/// Version 1 of `contact-phoned` (after the raw steps, read by the typed
/// chain into version 2).
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contact-phoned", version = 1)]
pub struct PhonedV1 {
    pub phone: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contact-phoned", version = 2, upcast_from = PhonedV1)]
pub struct Phoned {
    pub phone: String,
    pub kind: String,
}

impl From<PhonedV1> for Phoned {
    fn from(old: PhonedV1) -> Self {
        Phoned {
            phone: old.phone,
            kind: "unknown".into(),
        }
    }
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "contact", events(Named, Titled, Phoned), snapshot(every = 2))]
pub struct Contact {
    pub names: Vec<String>,
    pub titles: Vec<String>,
    pub phones: Vec<(String, String)>,
}

impl Apply<Named> for Contact {
    fn apply(&mut self, e: &Named) {
        self.names.push(format!("{} {}", e.first, e.last));
    }
}
impl Apply<Titled> for Contact {
    fn apply(&mut self, e: &Titled) {
        self.titles.push(e.title.clone());
    }
}
impl Apply<Phoned> for Contact {
    fn apply(&mut self, e: &Phoned) {
        self.phones.push((e.phone.clone(), e.kind.clone()));
    }
}

/// A projection of another aggregate that takes moved events.
#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "person", events(Titled))]
pub struct Person;
impl Apply<Titled> for Person {
    fn apply(&mut self, _: &Titled) {}
}

#[derive(Projection, Default, Debug)]
#[projection(name = "person-titles", events(Titled), aggregates(Person))]
pub struct PersonTitles(Vec<String>);
impl Apply<Titled> for PersonTitles {
    fn apply(&mut self, e: &Titled) {
        self.0.push(e.title.clone());
    }
}

/// `{"name": "Ada Lovelace"}` -> `{"first": "Ada", "last": "Lovelace"}`.
fn split_full_name(payload: &mut serde_json::Value) -> Result<(), BoxError> {
    let full = payload["name"].as_str().ok_or("no name")?.to_owned();
    let (first, last) = full.split_once(' ').unwrap_or((&full, ""));
    *payload = json!({ "first": first, "last": last });
    Ok(())
}

/// `contact-card` version 2 (`{"first", "last", "title", "phone"}`) became
/// three events.
fn split_card(card: RawEvent) -> Result<Vec<RawEvent>, BoxError> {
    let p = &card.payload;
    let event = |name: &str, payload| RawEvent {
        aggregate_type: card.aggregate_type.clone(),
        name: name.into(),
        version: 1,
        payload,
    };
    let mut events = vec![event(
        "contact-named",
        json!({ "first": p["first"], "last": p["last"] }),
    )];
    if let Some(title) = p.get("title") {
        events.push(event("contact-titled", json!({ "title": title })));
    }
    events.push(event("contact-phoned", json!({ "phone": p["phone"] })));
    Ok(events)
}

/// A split that returns an event it does not declare.
fn split_wrongly(card: RawEvent) -> Result<Vec<RawEvent>, BoxError> {
    Ok(vec![RawEvent {
        name: "contact-unknown".into(),
        ..card
    }])
}

es_core::upcasters! {
    // rename: `contact-renamed` is `contact-named` now, same payload.
    RawUpcaster::rename("contact", "contact-renamed", 1, "contact-named", 1),
    // reshape: version 0 of `contact-named` had one `name` field.
    RawUpcaster::reshape("contact", "contact-named", 0, 1, split_full_name),
    // a chain: `contact-created` v1 (one full name) is renamed to
    // `contact-card` v1, reshaped to v2, then split into three events, the
    // last of which the typed chain reads from version 1 into 2.
    RawUpcaster::rename("contact", "contact-created", 1, "contact-card", 1),
    RawUpcaster::reshape("contact", "contact-card", 1, 2, card_v2),
    RawUpcaster::split(
        "contact",
        "contact-card",
        2,
        &[("contact-named", 1), ("contact-titled", 1), ("contact-phoned", 1)],
        split_card,
    ),
    // remove: a `contact-viewed` event means nothing any more.
    RawUpcaster::remove("contact", "contact-viewed", 1),
    // move: titles of contacts belong to persons now.
    RawUpcaster::move_to("contact", "contact-titled", 1, "person"),
    RawUpcaster::split("contact", "contact-broken", 1, &[("contact-named", 1)], split_wrongly),
}

/// `contact-card` v1 `{"name", "phone"}` -> v2 `{"first", "last", "phone"}`.
fn card_v2(payload: &mut serde_json::Value) -> Result<(), BoxError> {
    let phone = payload["phone"].clone();
    split_full_name(payload)?;
    payload["phone"] = phone;
    Ok(())
}

fn stored(name: &str, version: u32, payload: serde_json::Value) -> NewEvent {
    NewEvent::new("contact", name.to_owned(), version, payload.to_string())
}

async fn with(events: Vec<NewEvent>) -> (InMemoryStore, Repository<Contact, InMemoryStore>) {
    let store = InMemoryStore::new();
    let stream = StreamId::new("contact-1").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let contacts = Repository::<Contact, _>::new(store.clone()).with_snapshots(false);
    (store, contacts)
}

#[test]
fn the_registry_accepts_this_graph() {
    let registry = es_core::registry::validate().unwrap();
    assert_eq!(registry.upcasters().count(), 8);
    assert!(registry.decodes_stored("contact", "contact-created", 1));
    assert!(registry.decodes_stored("contact", "contact-viewed", 1));
    assert!(
        registry.decodes_stored("contact", "contact-phoned", 1),
        "typed"
    );
    assert!(!registry.decodes_stored("contact", "contact-phoned", 3));
}

#[tokio::test]
async fn a_renamed_event_reads_under_its_new_name_and_shape() {
    let (_, contacts) = with(vec![stored(
        "contact-renamed",
        1,
        json!({"first": "Ada", "last": "L"}),
    )])
    .await;
    assert_eq!(contacts.load("1").await.unwrap().names, ["Ada L"]);
}

#[tokio::test]
async fn a_reshaped_payload_reads_at_its_new_version() {
    let (_, contacts) = with(vec![stored(
        "contact-named",
        0,
        json!({"name": "Ada Lovelace"}),
    )])
    .await;
    assert_eq!(contacts.load("1").await.unwrap().names, ["Ada Lovelace"]);
}

#[tokio::test]
async fn rename_then_reshape_then_split_then_the_typed_chain() {
    let (_, contacts) = with(vec![
        stored(
            "contact-created",
            1,
            json!({"name": "Grace Hopper", "phone": "555-1"}),
        ),
        stored(
            "contact-phoned",
            2,
            json!({"phone": "555-2", "kind": "work"}),
        ),
    ])
    .await;
    let contact = contacts.load("1").await.unwrap();
    assert_eq!(contact.names, ["Grace Hopper"]);
    assert_eq!(
        contact.phones,
        [
            ("555-1".to_string(), "unknown".to_string()),
            ("555-2".to_string(), "work".to_string())
        ],
        "the split's phone event went through the typed chain from version 1"
    );
    assert!(contact.titles.is_empty());
    assert_eq!(contact.version, 2, "the version counts stored events");
}

#[tokio::test]
async fn history_shows_each_event_a_stored_one_became() {
    let (_, contacts) = with(vec![
        stored("contact-viewed", 1, json!({})),
        stored(
            "contact-created",
            1,
            json!({"name": "Grace Hopper", "phone": "555-1"}),
        ),
    ])
    .await;
    let trail = contacts.history("1").await.unwrap();
    let shown: Vec<(u64, &str, u32)> = trail
        .iter()
        .map(|e| (e.version, e.name.as_str(), e.schema_version))
        .collect();
    assert_eq!(
        shown,
        [(2, "contact-named", 1), (2, "contact-phoned", 1)],
        "the removed event is not shown; the split one shows as two, at its own version"
    );
    assert!(trail.iter().all(|e| e.event.event().is_some()));
    assert!(trail.iter().all(|e| e.position == 2));
}

#[tokio::test]
async fn a_removed_event_is_not_seen_but_counts() {
    let (_, contacts) = with(vec![
        stored("contact-viewed", 1, json!({"by": "someone"})),
        stored("contact-renamed", 1, json!({"first": "A", "last": "B"})),
    ])
    .await;
    let contact = contacts.load("1").await.unwrap();
    assert_eq!((contact.names.len(), contact.version), (1, 2));
    let next = contacts
        .execute("1", |_| Titled { title: "Dr".into() })
        .await
        .unwrap();
    assert_eq!(next.version, 3);
}

#[tokio::test]
async fn a_moved_event_is_the_new_aggregates_for_readers() {
    let (store, _) = with(vec![stored(
        "contact-titled",
        1,
        json!({"title": "Countess"}),
    )])
    .await;
    // `$all` readers see it as the person's through `upcast`.
    let mut all = store.read_all(1);
    let first: RecordedEvent = next(&mut all).await.unwrap().unwrap();
    let seen = first.upcast().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(&*seen[0].aggregate_type, "person");
    assert_eq!(
        seen[0].stream_id.as_str(),
        "contact-1",
        "its stream does not move"
    );
    // A projection of persons takes it.
    let stream = StreamId::new("contact-1").unwrap();
    let titles = es_core::projection::project::<PersonTitles, _>(&store, &stream)
        .await
        .unwrap();
    assert_eq!(titles.0, ["Countess"]);
    // And the contact, whose stream it is, still folds it.
    let contacts = Repository::<Contact, _>::new(store);
    assert_eq!(contacts.load("1").await.unwrap().titles, ["Countess"]);
}

#[tokio::test]
async fn snapshots_still_change_no_answer() {
    let store = InMemoryStore::new();
    let stream = StreamId::new("contact-1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                stored(
                    "contact-created",
                    1,
                    json!({"name": "Grace Hopper", "phone": "1"}),
                ),
                stored("contact-viewed", 1, json!({})),
                stored("contact-named", 0, json!({"name": "Grace B. Hopper"})),
            ],
        )
        .await
        .unwrap();
    let with_snapshots = Repository::<Contact, _>::new(store.clone());
    let first = with_snapshots.load("1").await.unwrap();
    // A snapshot is taken (every 2 versions); loading again starts from it.
    let again = with_snapshots.load("1").await.unwrap();
    let replayed = Repository::<Contact, _>::new(store.clone())
        .with_snapshots(false)
        .load("1")
        .await
        .unwrap();
    assert_eq!(*first, *replayed);
    assert_eq!(*again, *replayed);
    assert_eq!(replayed.names, ["Grace Hopper", "Grace B. Hopper"]);
}

#[tokio::test]
async fn an_upcaster_that_fails_or_returns_what_it_does_not_declare_is_a_decode_error() {
    let (_, contacts) = with(vec![stored("contact-named", 0, json!({"no": "name"}))]).await;
    let Err(Error::Decode {
        version, source, ..
    }) = contacts.load("1").await
    else {
        panic!("a decode error");
    };
    assert_eq!(version, 1);
    assert!(
        matches!(&source, DecodeError::Upcast { reason, .. } if reason.contains("no name")),
        "{source}"
    );

    let (_, contacts) = with(vec![stored("contact-broken", 1, json!({}))]).await;
    let Err(Error::Decode { source, .. }) = contacts.load("1").await else {
        panic!("a decode error");
    };
    assert!(source.to_string().contains("cannot upcast"), "{source}");
    assert!(
        matches!(&source, DecodeError::Upcast { reason, .. } if reason.contains("does not declare")),
        "{source}"
    );
    // History keeps it, undecodable, with the stored payload.
    let trail = contacts.history("1").await.unwrap();
    assert!(trail[0].event.is_undecodable());
}

#[test]
fn decode_of_one_event_refuses_a_split() {
    let e = RecordedEvent {
        stream_id: StreamId::new("contact-1").unwrap(),
        aggregate_type: "contact".into(),
        version: 1,
        position: 1,
        event_id: es_core::Uuid::now_v7(),
        recorded_at: Timestamp::now(),
        occurred_at: Timestamp::now(),
        name: "contact-created".into(),
        schema_version: 1,
        metadata: Metadata::default(),
        event: es_core::Payload::new(json!({"name": "A B", "phone": "1"}).to_string()),
    };
    let Err(Error::Decode { source, .. }) = e.decode::<ContactEvent>() else {
        panic!("one event was asked for");
    };
    assert!(
        matches!(source, DecodeError::NotOne { count: 2, .. }),
        "{source}"
    );
    let all = e.into_envelopes::<ContactEvent>().unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn a_snapshot_of_a_stale_state_version_is_ignored_and_taken_again() {
    let store = InMemoryStore::new();
    let stream = StreamId::new("contact-1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                stored(
                    "contact-created",
                    1,
                    json!({"name": "Grace Hopper", "phone": "1"}),
                ),
                stored("contact-viewed", 1, json!({})),
            ],
        )
        .await
        .unwrap();
    // A snapshot at version 2 from an older state schema (0; the aggregate's
    // is 1), whose bytes this program would misread.
    store
        .save_snapshot(es_core::Snapshot {
            stream_id: stream.clone(),
            aggregate_type: "contact".into(),
            version: 2,
            schema_version: 0,
            state: br#"{"names":["someone else"],"titles":[],"phones":[]}"#.to_vec(),
            taken_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let contacts = Repository::<Contact, _>::new(store.clone());
    let loaded = contacts.load("1").await.unwrap();
    assert_eq!(
        loaded.names,
        ["Grace Hopper"],
        "rebuilt from the events, through the upcasters"
    );
    // A fresh snapshot at the current state version replaced it.
    contacts
        .execute("1", |_| Titled {
            title: "Rear Admiral".into(),
        })
        .await
        .unwrap();
    let snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(snapshot.schema_version, 1);
    assert!(!String::from_utf8_lossy(&snapshot.state).contains("someone else"));
}
