//! Stream split, merge and copy-transform (`es_core::evolution`) through
//! `SqliteStore`: where each event goes and in which order, transforms,
//! markers, provenance, the repository's `MovedPolicy`, re-runs after a run
//! stopped after N appends; and a crash test in the manner of RELIABILITY
//! T1: a child process runs a large split and a large merge and is killed
//! with SIGKILL at random moments, cycle after cycle, each child going on
//! from what the last one left. After every kill each target holds a prefix
//! of what an uninterrupted run writes and the sources are untouched (but
//! for their marker, once marked); after a last run to the end the file
//! holds exactly what an uninterrupted run on an untouched copy of it holds:
//! the same events, ids, order, positions and provenance.
//!
//! `ES_COPY_CYCLES` sets the number of kills (default 10); `ES_COPY_SEED`
//! the seed.

// Test helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, all_events, check_integrity, role, scratch_dir, spawn_child, stream_events};
use es_core::blocking::block_on;
use es_core::evolution::{
    CopiedFrom, EventCopy, MOVED, Migration, MigrationError, MovedPolicy, copy_id, moved_to,
};
use es_core::prelude::*;
use es_core::{
    AppendResult, Error, EventStream, NewEvent, ReadRange, RecordedEvent, StreamWrite, Uuid,
};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The domain: a lead whose stream also held its orders, and carts.
// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-initialized")]
struct LeadInitialized {
    name: String,
    phone: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contacted")]
struct Contacted;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "order-submitted")]
struct OrderSubmitted {
    total: u64,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(name = "lead", events(LeadInitialized, Contacted, OrderSubmitted))]
struct Lead {
    name: String,
    contacts: u32,
    ordered: u64,
}

impl Apply<LeadInitialized> for Lead {
    fn apply(&mut self, e: &LeadInitialized) {
        self.name.clone_from(&e.name);
    }
}

impl Apply<Contacted> for Lead {
    fn apply(&mut self, _: &Contacted) {
        self.contacts += 1;
    }
}

impl Apply<OrderSubmitted> for Lead {
    fn apply(&mut self, e: &OrderSubmitted) {
        self.ordered += e.total;
    }
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Event `k` of stream `stream` (number `n`): fixed id, business time and
/// metadata; every tenth is a note.
fn lead_event(n: u64, k: u64) -> NewEvent {
    let metadata = Metadata::new()
        .actor(format!("agent-{}", k % 4))
        .reason(format!("call {k}"));
    let (name, payload) = match k % 10 {
        0 => (
            "lead-initialized",
            format!(r#"{{"name":"Casey {n}","phone":"555-{k:04}"}}"#),
        ),
        3 | 6 => ("order-submitted", format!(r#"{{"total":{k}}}"#)),
        9 => ("note-added", format!(r#"{{"text":"note {k}"}}"#)),
        _ => ("contacted", "null".to_owned()),
    };
    let micros = 1_590_000_000_000_000 + i64::try_from(k).unwrap() * 1_000_000;
    NewEvent::new("lead", name, 1, payload)
        .with_id(Uuid::from_u128((u128::from(n) << 64) | u128::from(k + 1)))
        .with_metadata(metadata)
        .with_occurred_at(Timestamp::from_unix_micros(micros))
}

/// Appends `count` events to `lead-{n}`, 100 at a time.
fn seed_lead(store: &SqliteStore, n: u64, count: u64) {
    let stream = id(&format!("lead-{n}"));
    let events: Vec<NewEvent> = (0..count).map(|k| lead_event(n, k)).collect();
    for (i, chunk) in events.chunks(100).enumerate() {
        let at = ExpectedVersion::Exact(i as u64 * 100);
        block_on(store.append(&stream, at, chunk.to_vec())).unwrap();
    }
}

/// Appends to `lead-{first}` .. `lead-{first + 2}` in turns of 1 to 7
/// events until each holds about `each`: streams that interleave in `$all`.
fn seed_interleaved(store: &SqliteStore, first: u64, each: u64, rng: &mut Rng) {
    let mut versions = [0u64; 3];
    while versions.iter().any(|&v| v < each) {
        for (i, version) in versions.iter_mut().enumerate() {
            let n = first + i as u64;
            let count = rng.range(1, 7);
            let events = (*version..*version + count)
                .map(|k| lead_event(n, k))
                .collect();
            let stream = id(&format!("lead-{n}"));
            block_on(store.append(&stream, ExpectedVersion::Exact(*version), events)).unwrap();
            *version += count;
        }
    }
}

/// Orders to `order-{n}` (aggregate type `order`), initializations and
/// contacts to `contact-{n}`, notes dropped.
fn split_lead(n: u64) -> Migration<'static> {
    Migration::split(id(&format!("lead-{n}")), move |e| {
        let to = match e.name.as_str() {
            "order-submitted" => format!("order-{n}"),
            "note-added" => return Ok(None),
            _ => format!("contact-{n}"),
        };
        Ok(Some(StreamId::new(to)?))
    })
    .transform(|e| {
        let copy = EventCopy::of(e);
        Ok(vec![if e.name == "order-submitted" {
            copy.with_aggregate_type("order")
        } else {
            copy
        }])
    })
}

/// `lead-{first}` .. `lead-{first + 2}` into `lead-all`.
fn merge_leads(first: u64) -> Migration<'static> {
    let sources = (first..first + 3).map(|n| id(&format!("lead-{n}")));
    Migration::merge(sources, id("lead-all"))
}

/// Everything a migration decides about an event: all but the store's own
/// clock (`recorded_at`; a marker's `occurred_at`, which is that clock too).
fn decided(e: &RecordedEvent) -> String {
    let occurred = if e.name == MOVED {
        String::from("-")
    } else {
        e.occurred_at.to_string()
    };
    format!(
        "{} {} {} {} {} {} {} {} {} {}",
        e.position,
        e.stream_id,
        e.version,
        e.event_id,
        e.aggregate_type,
        e.name,
        e.schema_version,
        e.payload().as_str(),
        occurred,
        e.metadata.to_json().unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------
// The scenarios of the es-core tests, through SQLite.
// ---------------------------------------------------------------------------

#[test]
fn split_merge_and_transform_through_sqlite() {
    let dir = scratch_dir();
    let store = SqliteStore::open(dir.path().join("copy.db")).unwrap();
    seed_lead(&store, 12, 700);
    seed_interleaved(&store, 20, 300, &mut Rng::new(7));
    let lead = block_on(stream_events(&store, &id("lead-12")));

    // Split.
    let done = block_on(split_lead(12).chunk_size(64).run(&store)).unwrap();
    assert_eq!(done.targets, [id("contact-12"), id("order-12")]);
    assert_eq!((done.read, done.dropped), (700, 70));
    let contact = block_on(stream_events(&store, &id("contact-12")));
    let order = block_on(stream_events(&store, &id("order-12")));
    assert_eq!((contact.len(), order.len()), (490, 140));
    let mut routed = contact.iter().chain(&order).collect::<Vec<_>>();
    routed.sort_by_key(|e| CopiedFrom::of(&e.metadata).unwrap().version);
    let kept: Vec<&RecordedEvent> = lead.iter().filter(|e| e.name != "note-added").collect();
    for (copy, source) in routed.iter().zip(&kept) {
        assert_eq!(copy.event_id, copy_id(source.event_id, &copy.stream_id, 0));
        assert_eq!(
            CopiedFrom::of(&copy.metadata),
            Some(CopiedFrom::source(source))
        );
        assert_eq!(copy.occurred_at, source.occurred_at);
        assert_eq!(copy.metadata.actor, source.metadata.actor);
        assert_eq!(copy.metadata.reason, source.metadata.reason);
        assert_eq!(copy.payload(), source.payload());
        let expected_type = if source.name == "order-submitted" {
            "order"
        } else {
            "lead"
        };
        assert_eq!(&*copy.aggregate_type, expected_type);
    }
    let after = block_on(stream_events(&store, &id("lead-12")));
    assert_eq!(&after[..700], &lead[..], "the old events are untouched");
    assert_eq!(after.len(), 701);
    assert_eq!(
        moved_to(&after[700].as_event_ref()).unwrap(),
        Some(vec![id("contact-12"), id("order-12")])
    );

    // Merge, in position order.
    let sources: Vec<Vec<RecordedEvent>> = (20..23)
        .map(|n| block_on(stream_events(&store, &id(&format!("lead-{n}")))))
        .collect();
    let done = block_on(merge_leads(20).chunk_size(50).run(&store)).unwrap();
    let merged = block_on(stream_events(&store, &id("lead-all")));
    let mut expected: Vec<&RecordedEvent> = sources.iter().flatten().collect();
    expected.sort_by_key(|e| e.position);
    assert_eq!(merged.len(), expected.len());
    assert_eq!(done.written, expected.len() as u64);
    for (copy, source) in merged.iter().zip(&expected) {
        assert_eq!(
            CopiedFrom::of(&copy.metadata),
            Some(CopiedFrom::source(source))
        );
        assert_eq!(copy.event_id, copy_id(source.event_id, &copy.stream_id, 0));
    }
    for (n, before) in (20..23).zip(&sources) {
        let after = block_on(stream_events(&store, &id(&format!("lead-{n}"))));
        assert_eq!(&after[..before.len()], &before[..]);
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(after.last().unwrap().name, MOVED);
    }

    // Copy-transform: renamed, reshaped, of another aggregate type.
    seed_lead(&store, 30, 20);
    let mut to_customer = Migration::copy(id("lead-30"), id("customer-30")).transform(|e| {
        let copy = EventCopy::of(e).with_aggregate_type("customer");
        Ok(match e.name.as_str() {
            "lead-initialized" => {
                let mut json = e.payload().to_json()?;
                let phone = json.as_object_mut().unwrap().remove("phone").unwrap();
                json["phone_number"] = phone;
                vec![
                    copy.with_name("customer-registered")
                        .with_schema_version(2)
                        .with_payload(json.to_string()),
                ]
            }
            "note-added" => vec![],
            _ => vec![copy],
        })
    });
    block_on(to_customer.run(&store)).unwrap();
    let customer = block_on(stream_events(&store, &id("customer-30")));
    assert_eq!(customer.len(), 18);
    assert_eq!(
        (customer[0].name.as_str(), customer[0].schema_version),
        ("customer-registered", 2)
    );
    assert_eq!(
        customer[0].payload().to_json().unwrap(),
        serde_json::json!({ "name": "Casey 30", "phone_number": "555-0000" })
    );
    assert!(customer.iter().all(|e| &*e.aggregate_type == "customer"));

    // Everything is still there after a reopen.
    let before = block_on(all_events(&store));
    drop(store);
    let store = SqliteStore::open(dir.path().join("copy.db")).unwrap();
    assert_eq!(block_on(all_events(&store)), before);
}

#[test]
fn the_repository_reports_or_follows_a_moved_sqlite_stream() {
    let dir = scratch_dir();
    let store = SqliteStore::open(dir.path().join("moved.db")).unwrap();
    seed_lead(&store, 12, 9);
    let leads = Repository::<Lead, _>::new(store.clone());
    let state = block_on(leads.load("12")).unwrap();
    block_on(Migration::copy(id("lead-12"), id("lead-LD12")).run(&store)).unwrap();

    let moved = block_on(leads.load("12"));
    assert!(
        matches!(&moved, Err(Error::Moved { stream, to }) if stream == &id("lead-12") && to == &[id("lead-LD12")]),
        "{moved:?}"
    );
    let refused = block_on(leads.execute("12", |_| Contacted));
    assert!(
        matches!(refused, Err(ExecuteError::Store(Error::Moved { .. }))),
        "{refused:?}"
    );
    assert_eq!(block_on(store.stream_version(&id("lead-12"))).unwrap(), 10);

    let following = Repository::<Lead, _>::new(store.clone()).with_moved(MovedPolicy::Follow);
    assert_eq!(block_on(following.load("12")).unwrap(), state);
    let done = block_on(following.execute("12", |_| Contacted)).unwrap();
    assert_eq!(done.version, 10);
    assert_eq!(
        block_on(store.stream_version(&id("lead-LD12"))).unwrap(),
        10
    );
    assert_eq!(block_on(store.stream_version(&id("lead-12"))).unwrap(), 10);
}

/// A `SqliteStore` that refuses every append after the first `allowed`, as
/// a process stopped midway would leave the file.
#[derive(Clone)]
struct Stopping {
    inner: SqliteStore,
    allowed: Arc<AtomicUsize>,
    appends: Arc<AtomicUsize>,
}

impl Stopping {
    fn new(inner: SqliteStore, allowed: usize) -> Self {
        Stopping {
            inner,
            allowed: Arc::new(AtomicUsize::new(allowed)),
            appends: Arc::default(),
        }
    }
}

impl EventStore for Stopping {
    async fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> es_core::Result<Vec<AppendResult>> {
        let allowed = self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !allowed {
            return Err(Error::Closed);
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_to_streams(writes).await
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        self.inner.read_stream(stream, range)
    }

    fn read_all(&self, from: u64) -> EventStream {
        self.inner.read_all(from)
    }

    async fn stream_version(&self, stream: &StreamId) -> es_core::Result<u64> {
        self.inner.stream_version(stream).await
    }

    async fn last_position(&self) -> es_core::Result<u64> {
        self.inner.last_position().await
    }

    fn watch(&self) -> es_core::Watch {
        self.inner.watch()
    }
}

/// Closes `store` and copies its file to `to`.
fn copy_file(store: SqliteStore, from: &Path, to: &Path) {
    drop(store);
    std::fs::copy(from, to).unwrap();
}

#[test]
fn a_run_stopped_after_n_appends_is_completed_by_a_rerun() {
    let dir = scratch_dir();
    let pristine = dir.path().join("pristine.db");
    let store = SqliteStore::open(&pristine).unwrap();
    seed_lead(&store, 12, 300);
    seed_interleaved(&store, 20, 80, &mut Rng::new(3));
    copy_file(store, &pristine, &dir.path().join("reference.db"));

    let reference = SqliteStore::open(dir.path().join("reference.db")).unwrap();
    let counting = Stopping::new(reference.clone(), usize::MAX);
    block_on(split_lead(12).chunk_size(40).run(&counting)).unwrap();
    let split_appends = counting.appends.load(Ordering::SeqCst);
    block_on(merge_leads(20).chunk_size(40).run(&counting)).unwrap();
    let appends = counting.appends.load(Ordering::SeqCst);
    let expected: Vec<String> = block_on(all_events(&reference))
        .iter()
        .map(decided)
        .collect();
    assert!(
        split_appends > 3 && appends > split_appends + 3,
        "{split_appends} {appends}"
    );

    for stop in (0..appends).step_by(3) {
        let db = dir.path().join(format!("stopped-{stop}.db"));
        std::fs::copy(&pristine, &db).unwrap();
        let store = SqliteStore::open(&db).unwrap();
        let stopping = Stopping::new(store.clone(), stop);
        let split = block_on(split_lead(12).chunk_size(40).run(&stopping));
        let merge = split.and_then(|_| block_on(merge_leads(20).chunk_size(40).run(&stopping)));
        assert!(
            matches!(merge, Err(MigrationError::Store(Error::Closed))),
            "stopped after {stop}: {merge:?}"
        );
        // The re-run, on a fresh open of the file.
        drop(stopping);
        drop(store);
        let store = SqliteStore::open(&db).unwrap();
        let split = block_on(split_lead(12).chunk_size(40).run(&store)).unwrap();
        let merge = block_on(merge_leads(20).chunk_size(40).run(&store)).unwrap();
        assert_eq!(split.marked, stop < split_appends, "stopped after {stop}");
        assert!(merge.marked);
        let got: Vec<String> = block_on(all_events(&store)).iter().map(decided).collect();
        assert_eq!(got, expected, "stopped after {stop}");
    }
}

// ---------------------------------------------------------------------------
// Killed mid-copy.
// ---------------------------------------------------------------------------

const KILL_TEST: &str = "stream_copy_kill_9_mid_copy";

/// What the crash test copies: a 3,000-event lead split in two, and three
/// interleaved leads of about 1,000 events each merged, 25 copies an append.
fn kill_test_migrations() -> [Migration<'static>; 2] {
    [split_lead(1).chunk_size(25), merge_leads(10).chunk_size(25)]
}

/// The child: runs both migrations, as far as it gets.
fn kill_test_child(db: &Path) {
    let store = SqliteStore::open(db).expect("the child opens the store");
    for mut migration in kill_test_migrations() {
        let done = block_on(migration.run(&store)).expect("the migration runs");
        println!("DONE {} {} {}", done.written, done.found, done.marked);
    }
}

/// Each stream's events, as `decided` shows them.
fn by_stream(store: &SqliteStore) -> BTreeMap<String, Vec<String>> {
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in block_on(all_events(store)) {
        streams
            .entry(e.stream_id.to_string())
            .or_default()
            .push(decided(&e));
    }
    streams
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn stream_copy_kill_9_mid_copy() {
    if role().as_deref() == Some("copier") {
        let db = PathBuf::from(std::env::var(common::DB).expect("database path"));
        return kill_test_child(&db);
    }
    let cycles = env_number("ES_COPY_CYCLES", 10);
    let mut rng = Rng::new(env_number("ES_COPY_SEED", 0xC0_FFEE));
    let dir = scratch_dir();
    let (pristine, reference_db, db) = (
        dir.path().join("pristine.db"),
        dir.path().join("reference.db"),
        dir.path().join("copied.db"),
    );
    let store = SqliteStore::open(&pristine).unwrap();
    seed_lead(&store, 1, 3_000);
    seed_interleaved(&store, 10, 1_000, &mut rng);
    copy_file(store, &pristine, &reference_db);
    std::fs::copy(&pristine, &db).unwrap();
    let before = by_stream(&SqliteStore::open(&pristine).unwrap());

    // The uninterrupted run, on an untouched copy.
    let reference = SqliteStore::open(&reference_db).unwrap();
    let started = Instant::now();
    for mut migration in kill_test_migrations() {
        block_on(migration.run(&reference)).unwrap();
    }
    let uninterrupted = started.elapsed();
    let expected = by_stream(&reference);
    drop(reference);
    let sources = ["lead-1", "lead-10", "lead-11", "lead-12"];
    let targets = ["contact-1", "order-1", "lead-all"];
    for source in sources {
        assert_eq!(expected[source].len(), before[source].len() + 1);
    }

    let mut mid_copy = 0;
    let mut finished = 0;
    let mut completed = 0;
    let mut progress = Vec::new();
    for cycle in 0..cycles {
        let mut child = spawn_child(KILL_TEST, "copier", &db, &[]);
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        child.kill().expect("SIGKILL");
        child.wait().expect("the child is reaped");
        let lines = lines.join().expect("reader thread");
        if lines.iter().filter(|l| l.starts_with("DONE")).count() == 2 {
            finished += 1;
        }

        assert_eq!(check_integrity(&db, false), "ok", "cycle {cycle}");
        let store = SqliteStore::open(&db).unwrap();
        let now = by_stream(&store);
        drop(store);
        let mut copies = 0;
        for target in targets {
            let got = now.get(target).map_or(&[][..], Vec::as_slice);
            assert!(
                expected[target].starts_with(got),
                "cycle {cycle}: `{target}` is not a prefix of the uninterrupted run's"
            );
            copies += got.len();
        }
        let mut marked = 0;
        for source in sources {
            let got = &now[source];
            if got.len() == before[source].len() {
                assert_eq!(
                    got, &before[source],
                    "cycle {cycle}: `{source}` is untouched"
                );
            } else {
                assert_eq!(
                    got, &expected[source],
                    "cycle {cycle}: `{source}` has its marker"
                );
                marked += 1;
            }
        }
        let total: usize = targets.iter().map(|t| expected[*t].len()).sum();
        progress.push(format!("{copies}/{total}"));
        if marked < sources.len() {
            mid_copy += u32::from(copies > 0);
        } else {
            // Done: the same as the uninterrupted run; start over, so that
            // the next kills land mid-copy again.
            assert_eq!(now, expected, "cycle {cycle}: a finished run");
            std::fs::copy(&pristine, &db).unwrap();
            completed += 1;
            progress.push("|".to_owned());
        }
    }

    // The last run, to the end, in this process.
    let store = SqliteStore::open(&db).unwrap();
    for mut migration in kill_test_migrations() {
        block_on(migration.run(&store)).unwrap();
    }
    let got = by_stream(&store);
    assert_eq!(
        got, expected,
        "the result is what an uninterrupted run writes"
    );
    // Nothing more happens on yet another run.
    for mut migration in kill_test_migrations() {
        let again = block_on(migration.run(&store)).unwrap();
        assert_eq!((again.written, again.marked), (0, false));
    }
    drop(store);
    assert_eq!(check_integrity(&db, true), "ok");
    eprintln!(
        "stream copy kill test: {cycles} kills, {mid_copy} mid-copy, {finished} children finished, \
         {completed} copies completed by children (then started over); copies after each kill {}; \
         an uninterrupted run takes {uninterrupted:?}",
        progress.join(" ")
    );
    assert!(mid_copy > 0, "some kills landed mid-copy");
}
