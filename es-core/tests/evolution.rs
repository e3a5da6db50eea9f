//! Stream split, merge and copy-transform (`es_core::evolution`) on
//! `InMemoryStore`: where each event goes and in which order, transforms,
//! the markers, provenance, the repository's `MovedPolicy`, refused
//! appends to a moved stream, re-runs after a partial run (stopped after N
//! appends, for every N) and the typed errors.

// Helpers unwrap as `#[test]` functions do: a failure there is the test
// failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use es_core::blocking::block_on;
use es_core::evolution::{
    COPIED_FROM, CopiedFrom, EventCopy, MOVED, Migrated, Migration, MigrationError, MovedPolicy,
    copy_id, marker_id, moved_to,
};
use es_core::prelude::*;
use es_core::store::next;
use es_core::{
    AppendResult, Error, EventStream, NewEvent, ReadRange, RecordedEvent, StreamWrite, Uuid,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The domain: the seeds' lead, whose stream also held its orders.
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
#[event(name = "note-added")]
struct NoteAdded {
    text: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "order-submitted")]
struct OrderSubmitted {
    total: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "payment-confirmed")]
struct PaymentConfirmed;

#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(
    name = "lead",
    events(
        LeadInitialized,
        Contacted,
        NoteAdded,
        OrderSubmitted,
        PaymentConfirmed
    )
)]
struct Lead {
    name: String,
    contacts: u32,
    notes: u32,
    ordered: u64,
    paid: bool,
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

impl Apply<NoteAdded> for Lead {
    fn apply(&mut self, _: &NoteAdded) {
        self.notes += 1;
    }
}

impl Apply<OrderSubmitted> for Lead {
    fn apply(&mut self, e: &OrderSubmitted) {
        self.ordered += e.total;
    }
}

impl Apply<PaymentConfirmed> for Lead {
    fn apply(&mut self, _: &PaymentConfirmed) {
        self.paid = true;
    }
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// The time event `k` of a seeded stream occurred.
fn occurred(k: u64) -> Timestamp {
    Timestamp::from_unix_micros(1_590_000_000_000_000 + i64::try_from(k).unwrap() * 1_000_000)
}

/// Event `k` of lead `lead`: a fixed id, a fixed business time, metadata.
fn lead_event(lead: u64, k: u64) -> NewEvent {
    let metadata = Metadata::new()
        .actor(format!("agent-{}", k % 3))
        .reason(format!("call {k}"))
        .with("channel", "phone");
    let event: LeadEvent = match k % 6 {
        0 => LeadInitialized {
            name: format!("Casey {lead}"),
            phone: "555-2951".into(),
        }
        .into(),
        1 | 4 => Contacted.into(),
        2 => NoteAdded {
            text: format!("note {k}"),
        }
        .into(),
        3 => OrderSubmitted { total: k }.into(),
        _ => PaymentConfirmed.into(),
    };
    NewEvent::encode("lead", &event, metadata)
        .unwrap()
        .with_id(Uuid::from_u128(
            (u128::from(lead) << 64) | u128::from(k + 1),
        ))
        .with_occurred_at(occurred(k))
}

/// Appends `count` events to lead `lead`'s stream, `batch` at a time.
fn seed_lead(store: &impl EventStore, lead: u64, count: u64, batch: u64) {
    let stream = id(&format!("lead-{lead}"));
    let mut k = 0;
    while k < count {
        let events: Vec<NewEvent> = (k..count.min(k + batch))
            .map(|k| lead_event(lead, k))
            .collect();
        block_on(store.append(&stream, ExpectedVersion::Exact(k), events)).unwrap();
        k = count.min(k + batch);
    }
}

/// Appends to leads 1, 2 and 3 in turns of 1 to 3 events, `rounds` times:
/// streams whose events interleave in `$all`.
fn seed_interleaved(store: &impl EventStore, rounds: u64) {
    let mut versions = [0u64; 3];
    for round in 0..rounds {
        for (i, version) in versions.iter_mut().enumerate() {
            let lead = i as u64 + 1;
            let n = 1 + (round + lead) % 3;
            let events = (*version..*version + n)
                .map(|k| lead_event(lead, k))
                .collect();
            let stream = id(&format!("lead-{lead}"));
            block_on(store.append(&stream, ExpectedVersion::Exact(*version), events)).unwrap();
            *version += n;
        }
    }
}

fn read(store: &impl EventStore, stream: &StreamId) -> Vec<RecordedEvent> {
    block_on(async {
        let mut out = Vec::new();
        let mut events = store.read_stream(stream, ReadRange::all());
        while let Some(e) = next(&mut events).await {
            out.push(e.unwrap());
        }
        out
    })
}

fn read_all(store: &impl EventStore) -> Vec<RecordedEvent> {
    block_on(async {
        let mut out = Vec::new();
        let mut events = store.read_all(0);
        while let Some(e) = next(&mut events).await {
            out.push(e.unwrap());
        }
        out
    })
}

/// The split of the tests: orders and payments to `order-N`, of aggregate
/// type `order`; initializations and contacts to `contact-N`; notes dropped.
fn split_lead(lead: u64) -> Migration<'static> {
    Migration::split(id(&format!("lead-{lead}")), move |e| {
        let to = match e.name.as_str() {
            "order-submitted" | "payment-confirmed" => format!("order-{lead}"),
            "note-added" => return Ok(None),
            _ => format!("contact-{lead}"),
        };
        Ok(Some(StreamId::new(to)?))
    })
    .transform(|e| {
        let copy = EventCopy::of(e);
        Ok(vec![
            if e.name.starts_with("order") || e.name.starts_with("payment") {
                copy.with_aggregate_type("order")
            } else {
                copy
            },
        ])
    })
}

fn merge_leads() -> Migration<'static> {
    Migration::merge([id("lead-1"), id("lead-2"), id("lead-3")], id("lead-all"))
}

/// Checks that `copy` is a copy of `source`: provenance, metadata, time.
#[track_caller]
fn assert_copy_of(copy: &RecordedEvent, source: &RecordedEvent, index: u32) {
    assert_eq!(
        copy.event_id,
        copy_id(source.event_id, &copy.stream_id, index)
    );
    assert_eq!(copy.occurred_at, source.occurred_at);
    let from = CopiedFrom::of(&copy.metadata).expect("a copy records its source");
    assert_eq!(from, CopiedFrom::source(source));
    let mut metadata = copy.metadata.clone();
    metadata.extra.remove(COPIED_FROM);
    assert_eq!(metadata, source.metadata, "the source's metadata is kept");
}

/// Checks that `after` is `before` plus one marker pointing to `to`.
#[track_caller]
fn assert_marked(before: &[RecordedEvent], after: &[RecordedEvent], to: &[StreamId]) {
    assert_eq!(after.len(), before.len() + 1, "one marker is appended");
    assert_eq!(
        &after[..before.len()],
        before,
        "the old events are untouched"
    );
    let marker = after.last().unwrap();
    assert_eq!(marker.name, MOVED);
    assert_eq!(marker.aggregate_type, before[0].aggregate_type);
    assert_eq!(
        marker.event_id,
        marker_id(&marker.stream_id, marker.version)
    );
    assert_eq!(
        moved_to(&marker.as_event_ref()).unwrap().as_deref(),
        Some(to)
    );
    let payload: serde_json::Value = marker.payload().to_json().unwrap();
    let listed: Vec<&str> = to.iter().map(StreamId::as_str).collect();
    assert_eq!(payload, serde_json::json!({ "to": listed }));
}

// ---------------------------------------------------------------------------
// Split, merge, transform.
// ---------------------------------------------------------------------------

#[test]
fn split_routes_each_event_and_drops_what_the_route_leaves_out() {
    let store = InMemoryStore::new();
    seed_lead(&store, 12, 14, 5);
    let before = read(&store, &id("lead-12"));
    let done = block_on(split_lead(12).run(&store)).unwrap();

    assert_eq!(done.targets, [id("contact-12"), id("order-12")]);
    let contact = read(&store, &id("contact-12"));
    let order = read(&store, &id("order-12"));
    let (expected_contact, expected_order): (Vec<_>, Vec<_>) = before
        .iter()
        .filter(|e| e.name != "note-added")
        .partition(|e| e.name == "lead-initialized" || e.name == "contacted");
    assert_eq!(contact.len(), expected_contact.len());
    assert_eq!(order.len(), expected_order.len());
    for (copy, source) in contact.iter().zip(&expected_contact) {
        assert_eq!(
            (copy.name.as_str(), copy.payload()),
            (source.name.as_str(), source.payload())
        );
        assert_eq!(&*copy.aggregate_type, "lead");
        assert_copy_of(copy, source, 0);
    }
    for (copy, source) in order.iter().zip(&expected_order) {
        assert_eq!(
            (copy.name.as_str(), copy.payload()),
            (source.name.as_str(), source.payload())
        );
        assert_eq!(&*copy.aggregate_type, "order");
        assert_copy_of(copy, source, 0);
    }
    let notes = before.iter().filter(|e| e.name == "note-added").count() as u64;
    assert_eq!(
        (
            done.read,
            done.dropped,
            done.written,
            done.found,
            done.marked
        ),
        (14, notes, 14 - notes, 0, true)
    );
    assert_marked(&before, &read(&store, &id("lead-12")), &done.targets);
}

#[test]
fn merge_orders_the_copies_by_global_position() {
    let store = InMemoryStore::new();
    seed_interleaved(&store, 20);
    let sources: Vec<Vec<RecordedEvent>> = (1..=3)
        .map(|lead| read(&store, &id(&format!("lead-{lead}"))))
        .collect();
    let mut expected: Vec<&RecordedEvent> = sources.iter().flatten().collect();
    expected.sort_by_key(|e| e.position);

    // Small chunks: the merge takes many appends.
    let done = block_on(merge_leads().chunk_size(7).run(&store)).unwrap();
    assert_eq!(done.targets, [id("lead-all")]);
    let merged = read(&store, &id("lead-all"));
    assert_eq!(merged.len(), expected.len());
    for (copy, source) in merged.iter().zip(&expected) {
        assert_copy_of(copy, source, 0);
        assert_eq!(copy.payload(), source.payload());
    }
    let positions: Vec<u64> = merged
        .iter()
        .map(|e| CopiedFrom::of(&e.metadata).unwrap().position)
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    // The three sources appear interleaved, not one after the other.
    assert_ne!(merged[1].metadata, merged[0].metadata);
    assert!(
        merged
            .iter()
            .take(6)
            .any(|e| CopiedFrom::of(&e.metadata).unwrap().stream == id("lead-3"))
    );
    for (lead, before) in (1..=3).zip(&sources) {
        assert_marked(
            before,
            &read(&store, &id(&format!("lead-{lead}"))),
            &done.targets,
        );
    }
}

#[test]
fn the_markers_of_a_merge_are_one_atomic_append() {
    let store = Recording::new(InMemoryStore::new());
    seed_interleaved(&store, 2);
    store.clear();
    block_on(merge_leads().run(&store)).unwrap();
    let appends = store.appends();
    assert_eq!(appends.last().unwrap(), &vec![1, 1, 1], "{appends:?}");
}

#[test]
fn copy_transform_renames_reshapes_expands_and_changes_the_aggregate() {
    let store = InMemoryStore::new();
    seed_lead(&store, 7, 12, 12);
    let before = read(&store, &id("lead-7"));
    let mut migration = Migration::copy(id("lead-7"), id("customer-7")).transform(|e| {
        let copy = EventCopy::of(e).with_aggregate_type("customer");
        Ok(match e.name.as_str() {
            // Renamed and reshaped: `phone` becomes `phone_number`, version 2.
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
            // One event becomes two.
            "payment-confirmed" => vec![
                copy.clone(),
                copy.with_name("customer-converted").with_payload("{}"),
            ],
            // Notes are not kept.
            "note-added" => vec![],
            _ => vec![copy],
        })
    });
    let done = block_on(migration.run(&store)).unwrap();

    let copies = read(&store, &id("customer-7"));
    let mut expected = Vec::new();
    for source in &before {
        match source.name.as_str() {
            "lead-initialized" => expected.push((source, 0, "customer-registered", 2)),
            "payment-confirmed" => {
                expected.push((source, 0, "payment-confirmed", 1));
                expected.push((source, 1, "customer-converted", 1));
            }
            "note-added" => {}
            name => expected.push((source, 0, name, 1)),
        }
    }
    assert_eq!(copies.len(), expected.len());
    for (copy, (source, index, name, version)) in copies.iter().zip(&expected) {
        assert_eq!((copy.name.as_str(), copy.schema_version), (*name, *version));
        assert_eq!(&*copy.aggregate_type, "customer");
        assert_copy_of(copy, source, *index);
    }
    let registered = copies[0].payload().to_json().unwrap();
    assert_eq!(
        registered,
        serde_json::json!({ "name": "Casey 7", "phone_number": "555-2951" })
    );
    // A route that keeps an event but a transform that makes nothing of it:
    // read, not dropped, not written.
    assert_eq!(
        (done.read, done.dropped, done.written),
        (12, 0, copies.len() as u64)
    );
    assert_marked(&before, &read(&store, &id("lead-7")), &[id("customer-7")]);
}

#[test]
fn copies_of_copies_record_their_immediate_source() {
    let store = InMemoryStore::new();
    seed_lead(&store, 5, 3, 3);
    block_on(Migration::copy(id("lead-5"), id("lead-5b")).run(&store)).unwrap();
    block_on(Migration::copy(id("lead-5b"), id("lead-5c")).run(&store)).unwrap();
    let (b, c) = (read(&store, &id("lead-5b")), read(&store, &id("lead-5c")));
    assert_eq!(c.len(), 3, "the marker of lead-5b is not copied");
    for (copy, source) in c.iter().zip(&b) {
        assert_eq!(
            CopiedFrom::of(&copy.metadata).unwrap(),
            CopiedFrom::source(source)
        );
        assert_eq!(copy.metadata.actor, source.metadata.actor);
    }
}

// ---------------------------------------------------------------------------
// The repository and moved streams.
// ---------------------------------------------------------------------------

/// lead-12 with 5 events through the repository, then moved to lead-LD12.
fn moved_lead() -> (InMemoryStore, Lead) {
    let store = InMemoryStore::new();
    seed_lead(&store, 12, 5, 5);
    let leads = Repository::<Lead, _>::new(store.clone());
    let state = block_on(leads.load("12")).unwrap().state;
    block_on(Migration::copy(id("lead-12"), id("lead-LD12")).run(&store)).unwrap();
    (store, state)
}

#[test]
fn a_repository_reports_a_moved_stream_by_default() {
    let (store, _) = moved_lead();
    let leads = Repository::<Lead, _>::new(store.clone()).with_cache(4);
    let moved = |r: Result<_, Error>| match r {
        Err(Error::Moved { stream, to }) => (stream, to),
        other => panic!("expected Error::Moved, got {other:?}"),
    };
    let expected = (id("lead-12"), vec![id("lead-LD12")]);
    assert_eq!(moved(block_on(leads.load("12")).map(|_| ())), expected);
    assert_eq!(moved(block_on(leads.history("12")).map(|_| ())), expected);
    assert_eq!(
        block_on(leads.load("12")).unwrap_err().to_string(),
        "stream `lead-12` has moved to `lead-LD12`"
    );
    // A look back to a version before the move reads the old stream.
    assert_eq!(block_on(leads.load_at("12", 2)).unwrap().version, 2);

    // A command on it is refused, typed, and appends nothing.
    let refused = block_on(leads.execute("12", |_| Contacted));
    assert!(
        matches!(refused, Err(ExecuteError::Store(Error::Moved { ref to, .. })) if to == &[id("lead-LD12")]),
        "{refused:?}"
    );
    assert_eq!(block_on(store.stream_version(&id("lead-12"))).unwrap(), 6);

    // The new stream loads as itself.
    let leads = Repository::<Lead, _>::new(store);
    assert_eq!(block_on(leads.load("LD12")).unwrap().version, 5);
}

#[test]
fn a_repository_follows_a_move_to_one_stream_when_asked() {
    let (store, state) = moved_lead();
    let leads = Repository::<Lead, _>::new(store.clone()).with_moved(MovedPolicy::Follow);
    let loaded = block_on(leads.load("12")).unwrap();
    assert_eq!((loaded.state.clone(), loaded.version), (state.clone(), 5));
    assert_eq!(block_on(leads.history("12")).unwrap().len(), 5);

    // A command through the old id goes to the new stream.
    let done = block_on(leads.execute("12", |_| Contacted)).unwrap();
    assert_eq!(done.version, 6);
    assert_eq!(block_on(store.stream_version(&id("lead-LD12"))).unwrap(), 6);
    assert_eq!(block_on(store.stream_version(&id("lead-12"))).unwrap(), 6);
    assert_eq!(read(&store, &id("lead-12")).last().unwrap().name, MOVED);

    // Moved again: followed twice.
    block_on(Migration::copy(id("lead-LD12"), id("lead-X12")).run(&store)).unwrap();
    let loaded = block_on(leads.load("12")).unwrap();
    assert_eq!(loaded.contacts, state.contacts + 1);
    assert_eq!(block_on(store.stream_version(&id("lead-X12"))).unwrap(), 6);

    // The blocking facade has the same option.
    let blocking = es_core::blocking::Repository::<Lead, _>::new(store.clone())
        .with_moved(MovedPolicy::Follow);
    assert_eq!(blocking.load("12").unwrap().version, 6);
}

#[test]
fn following_a_cached_or_snapshotted_stream_still_sees_the_marker() {
    let store = InMemoryStore::new();
    seed_lead(&store, 12, 5, 5);
    let leads = Repository::<Lead, _>::new(store.clone()).with_cache(4);
    assert_eq!(block_on(leads.load("12")).unwrap().version, 5);
    assert_eq!(leads.cached(), 1);
    block_on(Migration::copy(id("lead-12"), id("lead-LD12")).run(&store)).unwrap();
    assert!(matches!(
        block_on(leads.load("12")),
        Err(Error::Moved { .. })
    ));
    let following = leads.clone().with_moved(MovedPolicy::Follow);
    assert_eq!(block_on(following.load("12")).unwrap().version, 5);
}

#[test]
fn a_split_is_reported_even_when_following() {
    let store = InMemoryStore::new();
    seed_lead(&store, 12, 8, 8);
    block_on(split_lead(12).run(&store)).unwrap();
    let leads = Repository::<Lead, _>::new(store).with_moved(MovedPolicy::Follow);
    let loaded = block_on(leads.load("12"));
    assert!(
        matches!(&loaded, Err(Error::Moved { to, .. }) if to == &[id("contact-12"), id("order-12")]),
        "{loaded:?}"
    );
}

#[test]
fn a_command_racing_the_move_is_refused_or_follows() {
    for policy in [MovedPolicy::Report, MovedPolicy::Follow] {
        let store = InMemoryStore::new();
        seed_lead(&store, 12, 3, 3);
        let leads = Repository::<Lead, _>::new(store.clone()).with_moved(policy);
        let decisions = AtomicUsize::new(0);
        // The migration runs between the command's load and its append.
        let done = block_on(leads.execute("12", |_| {
            if decisions.fetch_add(1, Ordering::SeqCst) == 0 {
                block_on(Migration::copy(id("lead-12"), id("lead-LD12")).run(&store)).unwrap();
            }
            Contacted
        }));
        let old = read(&store, &id("lead-12"));
        assert_eq!(
            old.len(),
            4,
            "{policy:?}: nothing is appended after the marker"
        );
        assert_eq!(old.last().unwrap().name, MOVED);
        match policy {
            MovedPolicy::Report => assert!(
                matches!(done, Err(ExecuteError::Store(Error::Moved { .. }))),
                "{done:?}"
            ),
            MovedPolicy::Follow => {
                assert_eq!(done.unwrap().version, 4);
                assert_eq!(decisions.load(Ordering::SeqCst), 2);
                assert_eq!(
                    read(&store, &id("lead-LD12")).last().unwrap().name,
                    "contacted"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Crashes and re-runs.
// ---------------------------------------------------------------------------

/// An `InMemoryStore` that records the shape of each append (events per
/// stream write) and refuses every append after the first `allowed`, as a
/// process stopped midway would leave the store.
#[derive(Clone)]
struct Recording {
    inner: InMemoryStore,
    allowed: Arc<AtomicUsize>,
    appends: Arc<Mutex<Vec<Vec<usize>>>>,
}

impl Recording {
    fn new(inner: InMemoryStore) -> Self {
        Recording {
            inner,
            allowed: Arc::new(AtomicUsize::new(usize::MAX)),
            appends: Arc::default(),
        }
    }

    fn stopping_after(inner: InMemoryStore, appends: usize) -> Self {
        let store = Recording::new(inner);
        store.allowed.store(appends, Ordering::SeqCst);
        store
    }

    fn appends(&self) -> Vec<Vec<usize>> {
        self.appends.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.appends.lock().unwrap().clear();
    }
}

impl EventStore for Recording {
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
        self.appends
            .lock()
            .unwrap()
            .push(writes.iter().map(|w| w.events.len()).collect());
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

/// Everything a store holds that a migration decides, event by event: all
/// but the store's own clock (`recorded_at`, also inside provenance).
fn fingerprint(store: &impl EventStore) -> Vec<String> {
    read_all(store)
        .into_iter()
        .map(|e| {
            let mut metadata = e.metadata.clone();
            if let Some(from) = metadata.extra.get_mut(COPIED_FROM) {
                from.as_object_mut().unwrap().remove("recorded_at");
            }
            format!(
                "{} {} {} {} {} {} {} {} {}",
                e.position,
                e.stream_id,
                e.version,
                e.event_id,
                e.aggregate_type,
                e.name,
                e.schema_version,
                e.payload().as_str(),
                metadata.to_json().unwrap_or_default(),
            ) + &format!(
                " {}",
                if e.name == MOVED {
                    "-".to_owned()
                } else {
                    e.occurred_at.to_string()
                }
            )
        })
        .collect()
}

/// Runs `migration` stopped after N appends, for every N, then again to the
/// end; each time the store ends as after one uninterrupted run.
fn check_reruns(seed: impl Fn(&InMemoryStore), migration: impl Fn() -> Migration<'static>) {
    let reference = InMemoryStore::new();
    seed(&reference);
    let recording = Recording::new(reference.clone());
    let clean = block_on(migration().run(&recording)).unwrap();
    let appends = recording.appends().len();
    assert!(
        appends > 3,
        "the migration takes several appends ({appends})"
    );
    let expected = fingerprint(&reference);

    for stop in 0..appends {
        let store = InMemoryStore::new();
        seed(&store);
        let stopped = block_on(migration().run(&Recording::stopping_after(store.clone(), stop)));
        assert!(
            matches!(stopped, Err(MigrationError::Store(Error::Closed))),
            "stopped after {stop}: {stopped:?}"
        );
        let resumed: Migrated = block_on(migration().run(&store)).unwrap();
        assert_eq!(
            fingerprint(&store),
            expected,
            "stopped after {stop} appends"
        );
        assert_eq!(resumed.targets, clean.targets);
        assert_eq!(
            resumed.written + resumed.found,
            clean.written,
            "stopped after {stop}"
        );
        assert_eq!(resumed.found > 0, stop > 0, "stopped after {stop}");
        assert!(resumed.marked);
        // And once more: nothing left to do.
        let again = block_on(migration().run(&store)).unwrap();
        assert_eq!(
            (again.written, again.found, again.marked),
            (0, clean.written, false)
        );
        assert_eq!(fingerprint(&store), expected);
    }
}

#[test]
fn a_split_stopped_after_any_append_is_completed_by_a_rerun() {
    check_reruns(
        |s| seed_lead(s, 12, 60, 25),
        || split_lead(12).chunk_size(4),
    );
}

#[test]
fn a_merge_stopped_after_any_append_is_completed_by_a_rerun() {
    check_reruns(|s| seed_interleaved(s, 8), || merge_leads().chunk_size(5));
}

#[test]
fn chunks_are_bounded_and_span_targets_atomically() {
    let store = Recording::new(InMemoryStore::new());
    seed_lead(&store.inner, 12, 30, 30);
    let done = block_on(split_lead(12).chunk_size(4).run(&store)).unwrap();
    let appends = store.appends();
    let (copies, marker) = appends.split_at(appends.len() - 1);
    assert_eq!(marker, [vec![1]]);
    assert_eq!(copies.len() as u64, done.written.div_ceil(4));
    assert!(copies.iter().all(|a| a.iter().sum::<usize>() <= 4));
    assert!(
        copies.iter().any(|a| a.len() == 2),
        "a chunk writes both targets: {copies:?}"
    );
    // A byte budget cuts chunks too.
    let store = Recording::new(InMemoryStore::new());
    seed_lead(&store.inner, 12, 30, 30);
    block_on(split_lead(12).chunk_bytes(1).run(&store)).unwrap();
    assert!(store.appends().iter().all(|a| a.iter().sum::<usize>() == 1));
}

#[test]
fn events_appended_while_copying_are_copied_before_the_marker() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 4, 4);
    seed_lead(&store, 2, 4, 4);
    let late = AtomicUsize::new(0);
    let writer = store.clone();
    let mut migration =
        Migration::merge([id("lead-1"), id("lead-2")], id("lead-all")).transform(move |e| {
            // Another writer appends to both sources while the first is copied.
            if late.fetch_add(1, Ordering::SeqCst) == 0 {
                for lead in [2, 1] {
                    let stream = id(&format!("lead-{lead}"));
                    let event = lead_event(lead, 4);
                    block_on(writer.append(&stream, ExpectedVersion::Exact(4), vec![event]))
                        .unwrap();
                }
            }
            Ok(vec![EventCopy::of(e)])
        });
    let done = block_on(migration.run(&store)).unwrap();
    assert_eq!((done.read, done.written), (10, 10));
    let merged = read(&store, &id("lead-all"));
    let positions: Vec<u64> = merged
        .iter()
        .map(|e| CopiedFrom::of(&e.metadata).unwrap().position)
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for lead in [1, 2] {
        let old = read(&store, &id(&format!("lead-{lead}")));
        assert_eq!(old.len(), 6);
        assert_eq!(old[5].name, MOVED);
    }
}

// ---------------------------------------------------------------------------
// Typed errors.
// ---------------------------------------------------------------------------

#[test]
fn plans_that_cannot_run_are_refused_before_anything_is_written() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 3, 3);
    let head = block_on(store.last_position()).unwrap();
    let cases = [
        (
            Migration::merge([], id("x")),
            "invalid migration: a migration needs at least one source",
        ),
        (
            Migration::merge([id("lead-1"), id("lead-1")], id("x")),
            "invalid migration: a source is named twice (`lead-1`)",
        ),
        (
            Migration::merge([id("lead-1"), id("lead-9")], id("x")),
            "the source stream `lead-9` has no events",
        ),
        (
            Migration::copy(id("lead-1"), id("lead-1")),
            "invalid migration: an event is routed to a source stream (`lead-1`)",
        ),
    ];
    for (mut migration, message) in cases {
        let error = block_on(migration.run(&store)).unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    assert_eq!(block_on(store.last_position()).unwrap(), head);
}

#[test]
fn a_failing_transform_names_the_event() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 6, 6);
    let mut migration = Migration::copy(id("lead-1"), id("lead-1b"))
        .chunk_size(1)
        .transform(|e| {
            if e.version == 3 {
                return Err("cannot reshape this note".into());
            }
            Ok(vec![EventCopy::of(e)])
        });
    let error = block_on(migration.run(&store)).unwrap_err();
    match &error {
        MigrationError::Function {
            stream,
            version,
            source,
        } => {
            assert_eq!((stream, *version), (&id("lead-1"), 3));
            assert_eq!(source.to_string(), "cannot reshape this note");
        }
        other => panic!("{other:?}"),
    }
    // What came before stays; the source is not marked.
    assert_eq!(block_on(store.stream_version(&id("lead-1b"))).unwrap(), 2);
    assert_eq!(block_on(store.stream_version(&id("lead-1"))).unwrap(), 6);
}

#[test]
fn a_target_holding_other_events_is_refused() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 3, 3);
    let foreign = NewEvent::new("lead", "contacted", 1, "{}");
    let foreign_id = foreign.event_id;
    block_on(store.append(&id("lead-1b"), ExpectedVersion::NoStream, vec![foreign])).unwrap();
    let error = block_on(Migration::copy(id("lead-1"), id("lead-1b")).run(&store)).unwrap_err();
    assert!(
        matches!(error, MigrationError::TargetDiverged { ref stream, version: 1, event_id } if stream == &id("lead-1b") && event_id == foreign_id),
        "{error:?}"
    );
    assert_eq!(block_on(store.stream_version(&id("lead-1"))).unwrap(), 3);
}

#[test]
fn a_rerun_with_another_transform_is_refused() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 6, 6);
    let with = |payload: &'static str| {
        Migration::copy(id("lead-1"), id("lead-1b"))
            .chunk_size(2)
            .transform(move |e| Ok(vec![EventCopy::of(e).with_payload(payload)]))
    };
    let stopped = block_on(with("{}").run(&Recording::stopping_after(store.clone(), 1)));
    assert!(stopped.is_err());
    let error = block_on(with(r#"{"v":2}"#).run(&store)).unwrap_err();
    assert!(
        matches!(error, MigrationError::TargetDiverged { version: 1, .. }),
        "{error:?}"
    );
    // A target longer than the plan is refused too.
    let error = block_on(
        Migration::copy(id("lead-1"), id("lead-1b"))
            .transform(|e| {
                Ok(if e.version == 1 {
                    vec![EventCopy::of(e).with_payload("{}")]
                } else {
                    vec![]
                })
            })
            .run(&store),
    )
    .unwrap_err();
    assert!(
        matches!(error, MigrationError::TargetDiverged { version: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn a_stream_moved_elsewhere_is_not_moved_again() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 3, 3);
    block_on(Migration::copy(id("lead-1"), id("lead-1b")).run(&store)).unwrap();
    let error = block_on(Migration::copy(id("lead-1"), id("lead-1c")).run(&store)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "stream `lead-1` has already moved, to `lead-1b`"
    );
    assert_eq!(block_on(store.stream_version(&id("lead-1c"))).unwrap(), 0);

    // Events appended after the marker (past the repository) are refused too.
    let late = lead_event(1, 9);
    block_on(store.append(&id("lead-1"), ExpectedVersion::Exact(4), vec![late])).unwrap();
    let error = block_on(Migration::copy(id("lead-1"), id("lead-1b")).run(&store)).unwrap_err();
    assert!(
        matches!(error, MigrationError::AlreadyMoved { .. }),
        "{error:?}"
    );
}

#[test]
fn a_damaged_marker_is_a_typed_error() {
    let store = InMemoryStore::new();
    seed_lead(&store, 1, 1, 1);
    let marker = NewEvent::new("lead", MOVED, 1, r#"{"to":"lead-1b"}"#);
    block_on(store.append(&id("lead-1"), ExpectedVersion::Exact(1), vec![marker])).unwrap();
    let leads = Repository::<Lead, _>::new(store);
    assert!(matches!(
        block_on(leads.load("1")),
        Err(Error::Corrupt { .. })
    ));
}
