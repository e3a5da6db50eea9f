//! Stored formats outlive code: the committed files in `tests/fixtures/`,
//! written by older versions of es-sqlite, open, migrate and read back
//! exactly as their golden lists say, through every read path, and keep
//! taking appends. The committed files are never changed: each test copies
//! one to a temporary directory first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use es_core::prelude::*;
use es_core::store::next;
use es_core::{Metadata, NewEvent, ReadRange, RecordedEvent, Timestamp, Uuid};
use es_sqlite::SqliteStore;
use serde_json::Value;
use ticket::{Status, Ticket};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of fixture `name` in a new temporary directory.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(name);
    std::fs::copy(fixture(name), &db).unwrap();
    (dir, db)
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// `event` is the golden list's `want`, field by field.
/// A stored event as a fixture's golden list holds it: what
/// [`check_event`] compares a read-back event with.
fn golden_event(e: &RecordedEvent) -> Value {
    serde_json::json!({
        "position": e.position,
        "stream": e.stream_id.as_str(),
        "aggregate_type": &*e.aggregate_type,
        "version": e.version,
        "event_id": e.event_id.to_string(),
        "recorded_at_us": e.recorded_at.as_unix_micros(),
        "occurred_at_us": e.occurred_at.as_unix_micros(),
        "name": e.name,
        "schema_version": e.schema_version,
        "payload": e.payload().as_str(),
        "metadata": serde_json::to_value(&e.metadata).unwrap(),
    })
}

fn check_event(event: &RecordedEvent, want: &Value) {
    let at = format!("{} v{}", event.stream_id, event.version);
    assert_eq!(event.position, want["position"].as_u64().unwrap(), "{at}");
    assert_eq!(event.stream_id.as_str(), want["stream"], "{at}");
    assert_eq!(&*event.aggregate_type, want["aggregate_type"], "{at}");
    assert_eq!(event.version, want["version"].as_u64().unwrap(), "{at}");
    assert_eq!(event.event_id.to_string(), want["event_id"], "{at}");
    let recorded = Timestamp::from_unix_micros(want["recorded_at_us"].as_i64().unwrap());
    assert_eq!(event.recorded_at, recorded, "{at}");
    // Schema 1 had no business time: its events occurred when recorded.
    let occurred = want["occurred_at_us"]
        .as_i64()
        .map_or(recorded, Timestamp::from_unix_micros);
    assert_eq!(event.occurred_at, occurred, "{at}");
    assert_eq!(event.name, want["name"], "{at}");
    assert_eq!(
        u64::from(event.schema_version),
        want["schema_version"].as_u64().unwrap(),
        "{at}"
    );
    assert_eq!(event.payload().as_str(), want["payload"], "{at}");
    assert_eq!(
        serde_json::to_value(&event.metadata).unwrap(),
        want["metadata"],
        "{at}"
    );
}

#[tokio::test]
async fn schema_1_opens_migrates_and_reads_back_exactly() {
    reads_back_exactly("schema-1", 1).await;
}

#[tokio::test]
async fn schema_2_opens_migrates_and_reads_back_exactly() {
    reads_back_exactly("schema-2", 2).await;
}

/// Fixture `name` (`.db` and its golden `.json`), written by schema
/// `schema`, reads back as its golden list through every read path.
async fn reads_back_exactly(name: &str, schema: u64) {
    let (_dir, db) = copy_of(&format!("{name}.db"));
    let golden = golden(&format!("{name}.json"));
    assert_eq!(golden["schema_version"], schema);
    let want = golden["events"].as_array().unwrap();

    let store = SqliteStore::open(&db).unwrap();
    // $all, in position order.
    let events = common::all_events(&store).await;
    assert_eq!(events.len(), want.len());
    for (event, want) in events.iter().zip(want) {
        check_event(event, want);
    }
    // Each stream, in version order, and its version.
    let mut streams: Vec<&str> = want.iter().map(|e| e["stream"].as_str().unwrap()).collect();
    streams.dedup();
    streams.sort_unstable();
    streams.dedup();
    for id in &streams {
        let stream = StreamId::new(id).unwrap();
        let mut read = store.read_stream(&stream, ReadRange::all());
        let mut n = 0;
        while let Some(e) = next(&mut read).await {
            let e = e.unwrap();
            let w = want
                .iter()
                .find(|w| w["stream"] == *id && w["version"] == e.version)
                .unwrap();
            check_event(&e, w);
            n += 1;
        }
        let versions = want.iter().filter(|w| w["stream"] == *id).count();
        assert_eq!(n, versions, "{id}");
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            versions as u64
        );
    }
    assert_eq!(
        store.last_position().await.unwrap(),
        want.len() as u64,
        "positions are kept"
    );
    // Schema 4's summary of event types, filled by the migration.
    let mut counts = std::collections::BTreeMap::new();
    for w in want {
        let key = (
            w["aggregate_type"].as_str().unwrap().to_owned(),
            w["name"].as_str().unwrap().to_owned(),
            u32::try_from(w["schema_version"].as_u64().unwrap()).unwrap(),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    assert_eq!(
        store.event_types().await.unwrap(),
        es_core::StoredEventType::from_counts(counts)
    );
    // Schema 5's audit chain, computed in position order when the file
    // migrated: it verifies, and is the documented format.
    let report = store.verify_chain().await.unwrap();
    assert_eq!(report.events, want.len() as u64);
    assert_eq!(report.head, store.head().await.unwrap());
    assert_eq!(report.head.position, want.len() as u64);
    assert_eq!(common::assert_chain_recomputes(&db), want.len());
    // Snapshots and checkpoints.
    for s in golden["snapshots"].as_array().unwrap() {
        let stream = StreamId::new(s["stream"].as_str().unwrap()).unwrap();
        let snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
        assert_eq!(snapshot.aggregate_type, s["aggregate_type"]);
        assert_eq!(snapshot.version, s["version"].as_u64().unwrap());
        assert_eq!(
            u64::from(snapshot.schema_version),
            s["schema_version"].as_u64().unwrap()
        );
        assert_eq!(std::str::from_utf8(&snapshot.state).unwrap(), s["state"]);
    }
    for (name, position) in golden["checkpoints"].as_object().unwrap() {
        assert_eq!(
            store.load_checkpoint(name).await.unwrap(),
            position.as_u64()
        );
    }
}

#[tokio::test]
async fn schema_1_is_folded_and_upcast_by_the_ticket_domain() {
    let (_dir, db) = copy_of("schema-1.db");
    let store = SqliteStore::open(&db).unwrap();
    let tickets = Repository::<Ticket, _>::new(store.clone());
    // From the stored snapshot, then without it: the same answer.
    let one = tickets.load("1").await.unwrap();
    assert_eq!(
        (one.version, one.status, one.messages),
        (5, Status::Closed, 2)
    );
    assert!(one.escalated);
    let replayed = Repository::<Ticket, _>::new(store.clone())
        .with_snapshots(false)
        .load("1")
        .await
        .unwrap();
    assert_eq!(replayed, one);
    // An escalation stored at schema version 1 upcasts to version 2.
    let two = tickets.history("2").await.unwrap();
    let Some(ticket::TicketEvent::TicketEscalated(escalated)) = two[2].event.event() else {
        panic!("the third event of ticket-2 is an escalation: {:?}", two[2]);
    };
    assert_eq!(escalated.by.0, "system");
    assert_eq!(two[2].schema_version, 1);
    // A forgotten personal field reads as forgotten.
    let three = tickets.history("3").await.unwrap();
    let Some(ticket::TicketEvent::TicketOpened(opened)) = three[0].event.event() else {
        panic!("ticket-3 was opened");
    };
    assert!(opened.customer_email.is_forgotten());
    // Metadata of schema 1 is read whole.
    let trail = tickets.history("1").await.unwrap();
    assert_eq!(trail[1].metadata.actor.as_deref(), Some("customer"));
    assert_eq!(trail[1].metadata.extra["nested"]["ü"], "✓");
    assert_eq!(
        trail[2].metadata.reason.as_deref(),
        Some("VIP customer, waited 3 days")
    );
}

#[tokio::test]
async fn schema_1_keeps_taking_appends_after_migrating() {
    let (_dir, db) = copy_of("schema-1.db");
    let before = golden("schema-1.json")["events"].as_array().unwrap().len() as u64;
    {
        let store = SqliteStore::open(&db).unwrap();
        let tickets = Repository::<Ticket, _>::new(store.clone());
        let done = tickets
            .execute("2", |t| t.add_message("after the upgrade", "agent-9"))
            .await
            .unwrap();
        assert_eq!((done.version, done.position), (4, Some(before + 1)));
        // An id stored by schema 1 is still recognised: a repeat.
        let stored = common::all_events(&store).await;
        let old = &stored[0];
        let again = NewEvent::new("ticket", old.name.clone(), 1, old.payload().clone())
            .with_id(old.event_id);
        let repeat = store
            .append(&old.stream_id, ExpectedVersion::Exact(0), vec![again])
            .await
            .unwrap();
        assert!(repeat.repeated);
        assert_eq!(repeat.last_position, Some(old.position));
        // A new event with a business time.
        let then: Timestamp = "2020-02-02T02:02:02Z".parse().unwrap();
        let late = NewEvent::new("lead", "lead-noted", 1, "{}")
            .with_occurred_at(then)
            .with_metadata(Metadata::new().actor("import"))
            .with_id(Uuid::now_v7());
        let lead = StreamId::new("lead-12").unwrap();
        store
            .append(&lead, ExpectedVersion::Exact(4), vec![late])
            .await
            .unwrap();
    }
    // Reopened: the current schema now, everything read back, and the new
    // events chain from the hashes the migration computed.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, es_sqlite::SCHEMA_VERSION);
    assert_eq!(common::check_integrity(&db, true), "ok");
    drop(conn);
    let store = SqliteStore::open(&db).unwrap();
    let events = common::all_events(&store).await;
    assert_eq!(events.len() as u64, before + 2);
    let last = events.last().unwrap();
    assert_eq!(
        last.occurred_at,
        "2020-02-02T02:02:02Z".parse::<Timestamp>().unwrap()
    );
    assert!(last.recorded_at > last.occurred_at);
    let report = store.verify_chain().await.unwrap();
    assert_eq!(report.events, before + 2);
    assert_eq!(common::assert_chain_recomputes(&db) as u64, before + 2);
}

#[test]
fn the_committed_fixtures_are_as_written() {
    // The golden list and the file agree on what the file holds; a test
    // that changed the committed file would show here as a changed size.
    // The header is read as bytes: opening the file with SQLite, even
    // read-only, could leave `-shm` files next to it.
    for (name, size, schema) in [
        ("schema-1.db", 49_152, 1),
        ("schema-2.db", 81_920, 2),
        ("schema-5.db", 81_920, 5),
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(bytes.len(), size, "{name}");
        assert_eq!(&bytes[..16], b"SQLite format 3\0", "{name}");
        let user_version = u32::from_be_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
        assert_eq!(user_version, schema, "{name} is still schema {schema}");
    }
}

/// Writes `schema-2.db` and `schema-2.json` into `ES_WRITE_FIXTURE_DIR`
/// (which must not hold them): the schema-1 fixture, opened (migrated to
/// schema 2) and given events with business times, a snapshot and a
/// checkpoint by schema 2's code, closed cleanly, then read back for the
/// golden list. Run once, by the schema-2 code, to make the committed
/// fixture; never again over it (`cargo test --test fixtures -- --ignored`).
#[tokio::test]
#[ignore = "writes a fixture; run by hand, once per schema"]
#[allow(clippy::too_many_lines)] // the whole writing program, read top to bottom
async fn write_a_schema_2_fixture() {
    let Ok(dir) = std::env::var("ES_WRITE_FIXTURE_DIR") else {
        return;
    };
    let db = Path::new(&dir).join("schema-2.db");
    let list = Path::new(&dir).join("schema-2.json");
    assert!(
        !db.exists() && !list.exists(),
        "fixtures are never overwritten"
    );
    std::fs::copy(fixture("schema-1.db"), &db).unwrap();
    {
        let store = SqliteStore::open(&db).unwrap();
        let tickets = Repository::<Ticket, _>::new(store.clone());
        tickets
            .command("2")
            .metadata(Metadata::new().actor("agent-7").reason("schema 2"))
            .occurred_at("2021-03-04T05:06:07Z".parse().unwrap())
            .execute(|t| t.add_message("written by schema 2", "agent-7"))
            .await
            .unwrap();
        let lead = StreamId::new("lead-12").unwrap();
        let late = |n: u32, at: &str| {
            NewEvent::new("lead", "lead-noted", n, format!(r#"{{"n":{n}}}"#))
                .with_occurred_at(at.parse().unwrap())
        };
        store
            .append(
                &lead,
                ExpectedVersion::Exact(4),
                vec![
                    late(1, "2019-01-01T00:00:00Z"),
                    late(2, "2018-06-30T23:59:59.999999Z"),
                ],
            )
            .await
            .unwrap();
        let five = StreamId::new("ticket-5").unwrap();
        store
            .append(
                &five,
                ExpectedVersion::NoStream,
                vec![NewEvent::new(
                    "ticket",
                    "ticket-opened",
                    1,
                    r#"{"title":"new","customer_email":null}"#,
                )],
            )
            .await
            .unwrap();
        store.save_checkpoint("ticket-list", 23).await.unwrap();
        store.flush().await.unwrap();
    }
    let store = SqliteStore::open(&db).unwrap();
    let events: Vec<Value> = common::all_events(&store)
        .await
        .iter()
        .map(golden_event)
        .collect();
    let mut snapshots = Vec::new();
    for id in ["ticket-1", "ticket-2"] {
        let s = store
            .load_snapshot(&StreamId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        snapshots.push(serde_json::json!({
            "stream": id,
            "aggregate_type": s.aggregate_type,
            "version": s.version,
            "schema_version": s.schema_version,
            "state": std::str::from_utf8(&s.state).unwrap(),
            "taken_at_us": s.taken_at.as_unix_micros(),
        }));
    }
    let mut checkpoints = serde_json::Map::new();
    for name in ["leads-search", "ticket-list"] {
        checkpoints.insert(
            name.into(),
            store.load_checkpoint(name).await.unwrap().into(),
        );
    }
    let golden = serde_json::json!({
        "schema_version": 2,
        "events": events,
        "snapshots": snapshots,
        "checkpoints": checkpoints,
    });
    drop(store);
    std::fs::write(&list, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
}

/// The key-encryption key of `schema-5.db.keys`: a fixture's, published
/// on purpose (the fixture holds no one's data).
const SCHEMA_5_KEK: &str = "5c4e3d2b1a0f9e8d7c6b5a49382716050f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The schema-5 fixture: sealed personal fields (one subject forgotten),
/// a command id's derived event ids, a cause and a correlation, a moved
/// stream and the audit chain, all read back as the golden list says with
/// the fixture's key-encryption key.
#[tokio::test]
async fn schema_5_with_sealed_data_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("schema-5.db");
    std::fs::copy(fixture("schema-5.db"), &db).unwrap();
    std::fs::copy(
        fixture("schema-5.db.keys"),
        dir.path().join("schema-5.db.keys"),
    )
    .unwrap();
    let golden = golden("schema-5.json");
    assert_eq!(golden["schema_version"], 5);
    let want = golden["events"].as_array().unwrap();
    let kek = es_core::privacy::KeyEncryptionKey::from_hex(SCHEMA_5_KEK).unwrap();
    let store = SqliteStore::options().personal_data(kek).open(&db).unwrap();
    let events = common::all_events(&store).await;
    assert_eq!(events.len(), want.len());
    for (event, want) in events.iter().zip(want) {
        check_event(event, want);
    }
    assert_eq!(store.head().await.unwrap().to_string(), golden["head"]);
    assert_eq!(
        store.verify_chain().await.unwrap().events,
        want.len() as u64
    );
    assert_eq!(common::assert_chain_recomputes(&db), want.len());
    // Without the keys, the sealed fields stay sealed, and say so.
    drop(store);
    let store = SqliteStore::open(&db).unwrap();
    let tickets = Repository::<Ticket, _>::new(store.clone());
    let err = tickets.load("7").await.unwrap_err();
    assert!(err.to_string().contains("cannot decode"), "{err}");
    // With them, the domain folds it: one subject known, one forgotten.
    drop((tickets, store));
    let kek = es_core::privacy::KeyEncryptionKey::from_hex(SCHEMA_5_KEK).unwrap();
    let store = SqliteStore::options().personal_data(kek).open(&db).unwrap();
    let history = Repository::<Ticket, _>::new(store.clone())
        .history("8")
        .await
        .unwrap();
    let Some(ticket::TicketEvent::TicketOpened(opened)) = history[0].event.event() else {
        panic!("{history:?}");
    };
    assert!(opened.customer_email.is_forgotten());
}

/// Writes `schema-5.db`, `schema-5.db.keys` and `schema-5.json` into
/// `ES_WRITE_FIXTURE_DIR` (which must not hold them): `schema-2.db`
/// opened (migrated to schema 5) with the fixture's key-encryption key and
/// given, by schema 5's code: tickets with sealed e-mails, one customer
/// forgotten, a command with a command id, a command caused by an event, a
/// stream copied by a migration; closed cleanly, then read back for the
/// golden list. Run once, by the schema-5 code; never again over it.
#[tokio::test]
#[ignore = "writes a fixture; run by hand, once per schema"]
async fn write_a_schema_5_fixture() {
    let Ok(dir) = std::env::var("ES_WRITE_FIXTURE_DIR") else {
        return;
    };
    let db = Path::new(&dir).join("schema-5.db");
    let list = Path::new(&dir).join("schema-5.json");
    let keys = Path::new(&dir).join("schema-5.db.keys");
    assert!(
        !db.exists() && !list.exists() && !keys.exists(),
        "fixtures are never overwritten"
    );
    std::fs::copy(fixture("schema-2.db"), &db).unwrap();
    let kek = || es_core::privacy::KeyEncryptionKey::from_hex(SCHEMA_5_KEK).unwrap();
    {
        let store = SqliteStore::options()
            .personal_data(kek())
            .open(&db)
            .unwrap();
        let tickets = Repository::<Ticket, _>::new(store.clone());
        let command_id = Uuid::parse_str("01930000-0000-7000-8000-000000000005").unwrap();
        tickets
            .command("7")
            .metadata(
                Metadata::new()
                    .actor("customer")
                    .command("open")
                    .command_id(command_id),
            )
            .execute(|t| t.open("sealed", "ada@fixture.example"))
            .await
            .unwrap();
        tickets
            .execute_with("8", Metadata::new().actor("customer"), |t| {
                t.open("forgotten", "bob@fixture.example")
            })
            .await
            .unwrap();
        let cause = tickets.history("8").await.unwrap().remove(0);
        tickets
            .command("7")
            .metadata(Metadata::new().actor("agent-7").command("add-message"))
            .caused_by(&cause)
            .execute(|t| t.add_message("caused by ticket 8", "agent-7"))
            .await
            .unwrap();
        tickets
            .forget_with("ticket-8", Metadata::new().actor("dpo").reason("schema 5"))
            .await
            .unwrap();
        es_core::evolution::Migration::copy(
            StreamId::new("ticket-5").unwrap(),
            StreamId::new("ticket-50").unwrap(),
        )
        .run(&store)
        .await
        .unwrap();
        store.flush().await.unwrap();
    }
    let store = SqliteStore::options()
        .personal_data(kek())
        .open(&db)
        .unwrap();
    let events: Vec<Value> = common::all_events(&store)
        .await
        .iter()
        .map(golden_event)
        .collect();
    let golden = serde_json::json!({
        "schema_version": 5,
        "events": events,
        "head": store.head().await.unwrap().to_string(),
    });
    drop(store);
    std::fs::write(&list, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
}
