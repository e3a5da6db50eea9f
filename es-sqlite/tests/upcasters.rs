//! Upcasting through the SQLite store, from the committed schema-1 fixture
//! (written long before these types): a typed chain of three versions
//! (`lead-renamed` v1, v2, v3 in one stream) read back as version 3, and raw
//! upcasters (a rename, a reshape of a bare number, a removal, a split) on
//! every read path: repository loads, `history`, per-stream projections,
//! durable and inline read models, and `$all` through `Envelope::upcast`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_pass_by_value, // upcasters take their event by value
    clippy::unnecessary_wraps,      // and return a Result
    missing_docs,
    unreachable_pub
)]

mod common;

use std::path::{Path, PathBuf};

use es_core::prelude::*;
use es_core::upcast::{RawEvent, RawUpcaster};
use es_core::{BoxError, Envelope};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{ReadModel, ReadModels, SqliteStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

// The typed chain of `lead-renamed`: {name} -> {first, last} -> {first, last, title}.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-renamed", version = 1)]
pub struct RenamedV1 {
    pub name: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-renamed", version = 2, upcast_from = RenamedV1)]
pub struct RenamedV2 {
    pub first: String,
    pub last: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-renamed", version = 3, upcast_from = RenamedV2)]
pub struct Renamed {
    pub first: String,
    pub last: String,
    pub title: Option<String>,
}

impl From<RenamedV1> for RenamedV2 {
    fn from(old: RenamedV1) -> Self {
        let (first, last) = old.name.split_once(' ').unwrap_or((&old.name, ""));
        RenamedV2 {
            first: first.into(),
            last: last.into(),
        }
    }
}

impl From<RenamedV2> for Renamed {
    fn from(old: RenamedV2) -> Self {
        Renamed {
            first: old.first,
            last: old.last,
            title: None,
        }
    }
}

/// `lead-created` is `lead-registered` now.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-registered")]
pub struct Registered {
    pub name: String,
}

/// `lead-scored` stored a bare number; version 2 is an object.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-scored", version = 2)]
pub struct Scored {
    pub score: i64,
}

/// `lead-tagged` with a string became a tag and a temperature.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-tag-added")]
pub struct TagAdded {
    pub tag: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-warmed")]
pub struct Warmed;

#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(name = "lead", events(Registered, Renamed, Scored, TagAdded, Warmed))]
pub struct Lead {
    pub names: Vec<String>,
    pub titles: Vec<String>,
    pub score: i64,
    pub tags: Vec<String>,
    pub warm: bool,
}

impl Apply<Registered> for Lead {
    fn apply(&mut self, e: &Registered) {
        self.names.push(e.name.clone());
    }
}
impl Apply<Renamed> for Lead {
    fn apply(&mut self, e: &Renamed) {
        self.names
            .push(format!("{} {}", e.first, e.last).trim().to_owned());
        self.titles.extend(e.title.clone());
    }
}
impl Apply<Scored> for Lead {
    fn apply(&mut self, e: &Scored) {
        self.score = e.score;
    }
}
impl Apply<TagAdded> for Lead {
    fn apply(&mut self, e: &TagAdded) {
        self.tags.push(e.tag.clone());
    }
}
impl Apply<Warmed> for Lead {
    fn apply(&mut self, _: &Warmed) {
        self.warm = true;
    }
}

fn score_object(payload: &mut serde_json::Value) -> Result<(), BoxError> {
    let score = payload.as_i64().ok_or("not a number")?;
    *payload = json!({ "score": score });
    Ok(())
}

fn split_tag(tagged: RawEvent) -> Result<Vec<RawEvent>, BoxError> {
    let tag = tagged.payload.as_str().ok_or("not a string")?.to_owned();
    let mut events = vec![RawEvent {
        name: "lead-tag-added".into(),
        payload: json!({ "tag": tag }),
        ..tagged.clone()
    }];
    if tag == "hot" {
        events.push(RawEvent {
            name: "lead-warmed".into(),
            payload: serde_json::Value::Null,
            ..tagged
        });
    }
    Ok(events)
}

es_core::upcasters! {
    RawUpcaster::rename("lead", "lead-created", 1, "lead-registered", 1),
    RawUpcaster::reshape("lead", "lead-scored", 1, 2, score_object),
    RawUpcaster::remove("lead", "lead-noted", 1),
    RawUpcaster::split("lead", "lead-tagged", 1, &[("lead-tag-added", 1), ("lead-warmed", 1)], split_tag),
}

fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("schema-1.db");
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-1.db");
    std::fs::copy(from, &db).unwrap();
    (dir, db)
}

#[test]
fn the_registry_accepts_the_graph() {
    let registry = es_core::registry::validate().unwrap();
    for (name, version) in [
        ("lead-created", 1),
        ("lead-scored", 1),
        ("lead-noted", 1),
        ("lead-tagged", 1),
    ] {
        assert!(registry.decodes_stored("lead", name, version), "{name}");
    }
}

#[tokio::test]
async fn three_versions_of_one_event_in_one_stream_read_as_the_third() {
    let (_dir, db) = fixture_copy();
    let store = SqliteStore::open(&db).unwrap();
    let leads = Repository::<Lead, _>::new(store);
    let lead = leads.load("12").await.unwrap();
    assert_eq!(
        lead.names,
        ["Ada", "Ada L.", "Ada Lovelace", "Ada Lovelace"]
    );
    assert_eq!(lead.titles, ["Countess"]);
    assert_eq!(lead.version, 4);
    let trail = leads.history("12").await.unwrap();
    let versions: Vec<(u32, bool)> = trail
        .iter()
        .map(|e| (e.schema_version, e.event.event().is_some()))
        .collect();
    assert_eq!(
        versions,
        [(1, true), (1, true), (2, true), (3, true)],
        "stored versions, all decoded"
    );
}

#[tokio::test]
async fn raw_upcasters_run_on_repository_loads_and_history() {
    let (_dir, db) = fixture_copy();
    let store = SqliteStore::open(&db).unwrap();
    let leads = Repository::<Lead, _>::new(store);
    // lead-13: created (renamed), noted (removed), scored 42 (reshaped),
    // tagged "hot" (split into a tag and a warm-up).
    let lead = leads.load("13").await.unwrap();
    assert_eq!(lead.names, ["Grace"]);
    assert_eq!((lead.score, lead.warm), (42, true));
    assert_eq!(lead.tags, ["hot"]);
    assert_eq!(
        lead.version, 4,
        "every stored event counts, the removed one too"
    );
    let trail = leads.history("13").await.unwrap();
    let shown: Vec<(u64, &str)> = trail.iter().map(|e| (e.version, e.name.as_str())).collect();
    assert_eq!(
        shown,
        [
            (1, "lead-registered"),
            (3, "lead-scored"),
            (4, "lead-tag-added"),
            (4, "lead-warmed")
        ]
    );
    // Appends go on at the stored version.
    let done = leads.execute("13", |_| Warmed).await.unwrap();
    assert_eq!(done.version, 5);
}

#[tokio::test]
async fn all_readers_see_the_upcast_events() {
    let (_dir, db) = fixture_copy();
    let store = SqliteStore::open(&db).unwrap();
    let stored = common::all_events(&store).await;
    let mut seen = Vec::new();
    for e in stored {
        for e in e.upcast().unwrap() {
            seen.push((e.position, e.name.clone(), e.schema_version));
        }
    }
    let lead_13: Vec<_> = seen
        .iter()
        .filter(|(p, _, _)| [15, 18, 19, 20].contains(p))
        .cloned()
        .collect();
    assert_eq!(
        lead_13,
        [
            (15, "lead-registered".to_string(), 1),
            (19, "lead-scored".to_string(), 2),
            (20, "lead-tag-added".to_string(), 1),
            (20, "lead-warmed".to_string(), 1),
        ]
    );
}

/// Per stream: the names a lead had.
#[derive(Projection, Default, Debug)]
#[projection(name = "lead-names", events(Registered, Renamed), aggregates(Lead))]
pub struct Names(Vec<String>);
impl Apply<Registered> for Names {
    fn apply(&mut self, e: &Registered) {
        self.0.push(e.name.clone());
    }
}
impl Apply<Renamed> for Names {
    fn apply(&mut self, e: &Renamed) {
        self.0.push(e.first.clone());
    }
}

#[tokio::test]
async fn per_stream_projections_see_the_upcast_events() {
    let (_dir, db) = fixture_copy();
    let store = SqliteStore::open(&db).unwrap();
    let stream = StreamId::new("lead-13").unwrap();
    let names = es_core::projection::project::<Names, _>(&store, &stream)
        .await
        .unwrap();
    assert_eq!(
        (names.0.clone(), names.version),
        (vec!["Grace".to_string()], 4)
    );
}

/// A read model of warm leads and their scores, listing only today's names:
/// the store must still select `lead-created`, `lead-scored` v1 and
/// `lead-tagged` for it.
#[derive(Projection, Default, Debug)]
#[projection(name = "warm-leads", events(Registered, Scored, Warmed), aggregates(Lead), context = Connection)]
pub struct WarmLeads;

impl ReadModel for WarmLeads {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(
            "CREATE TABLE leads (id TEXT PRIMARY KEY, name TEXT, score INTEGER, warm INTEGER NOT NULL DEFAULT 0)",
        )
    }
}
impl Handle<Registered, Connection> for WarmLeads {
    fn handle(&mut self, db: &Connection, e: &Envelope<Registered>) -> Result<(), BoxError> {
        db.execute(
            "INSERT INTO leads (id, name) VALUES (?1, ?2)",
            (e.aggregate_id(), &e.event.name),
        )?;
        Ok(())
    }
}
impl Handle<Scored, Connection> for WarmLeads {
    fn handle(&mut self, db: &Connection, e: &Envelope<Scored>) -> Result<(), BoxError> {
        db.execute(
            "UPDATE leads SET score = ?2 WHERE id = ?1",
            (e.aggregate_id(), e.event.score),
        )?;
        Ok(())
    }
}
impl Handle<Warmed, Connection> for WarmLeads {
    fn handle(&mut self, db: &Connection, e: &Envelope<Warmed>) -> Result<(), BoxError> {
        db.execute(
            "UPDATE leads SET warm = 1 WHERE id = ?1",
            [e.aggregate_id()],
        )?;
        Ok(())
    }
}

const ROWS: &str = "SELECT id, name, score, warm FROM leads ORDER BY id";
type Row = (String, String, Option<i64>, i64);

fn want() -> Vec<Row> {
    vec![
        ("12".into(), "Ada".into(), None, 0),
        ("13".into(), "Grace".into(), Some(42), 1),
    ]
}

#[tokio::test]
async fn durable_and_inline_read_models_see_the_upcast_events() {
    let (_dir, db) = fixture_copy();
    let store = SqliteStore::open(&db).unwrap();
    let models = ReadModels::open(&store).unwrap();
    models.catch_up(WarmLeads).await.unwrap();
    let rows: Vec<Row> = models.rows::<WarmLeads, _>(ROWS, []).unwrap();
    assert_eq!(rows, want());
    drop((models, store));

    let (_dir, db) = fixture_copy();
    let store = SqliteStore::options().inline(WarmLeads).open(&db).unwrap();
    let rows: Vec<Row> = store.rows::<WarmLeads, _>(ROWS, []).unwrap();
    assert_eq!(rows, want());
    // And an append of an old-format event is upcast on its way in.
    let stream = StreamId::new("lead-14").unwrap();
    let old = es_core::NewEvent::new("lead", "lead-created", 1, r#"{"name":"Hedy"}"#);
    store
        .append(&stream, ExpectedVersion::NoStream, vec![old])
        .await
        .unwrap();
    let rows: Vec<Row> = store.rows::<WarmLeads, _>(ROWS, []).unwrap();
    assert_eq!(
        rows.last().unwrap(),
        &("14".to_string(), "Hedy".to_string(), None, 0)
    );
}
