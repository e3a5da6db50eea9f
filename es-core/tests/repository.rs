//! `Repository` over `InMemoryStore`: decisions and what `execute` reports,
//! retries on conflict and the conflict policies, snapshots (RELIABILITY T11),
//! reading back in time, stored events that do not decode, the audit trail,
//! and the blocking facade.

// Helpers and property bodies unwrap as `#[test]` functions do: a failure
// there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use es_core::codec;
use es_core::prelude::*;
use es_core::{
    AppendResult, DecodeError, EncodeError, Error, EventStream, NewEvent, ReadRange, RecordedEvent,
    Snapshot, SnapshotPolicy, StreamIdError, StreamWrite, Uuid,
};
use futures_core::Stream;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The domain: a tally of numbers, plain and with snapshots.
// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "added")]
struct Added {
    n: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "reset")]
struct Reset;

/// What both tallies fold: the running total, every number in order, resets.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sums {
    total: i64,
    seen: Vec<i64>,
    resets: u32,
}

impl Sums {
    fn add(&mut self, n: i64) {
        self.total += n;
        self.seen.push(n);
    }

    fn reset(&mut self) {
        self.total = 0;
        self.resets += 1;
    }
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(name = "tally", events(Added, Reset))]
struct Tally {
    sums: Sums,
}

impl Apply<Added> for Tally {
    fn apply(&mut self, e: &Added) {
        self.sums.add(e.n);
    }
}

impl Apply<Reset> for Tally {
    fn apply(&mut self, _: &Reset) {
        self.sums.reset();
    }
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "snappy", events(Added, Reset), snapshot(every = 3))]
struct Snappy {
    sums: Sums,
}

impl Apply<Added> for Snappy {
    fn apply(&mut self, e: &Added) {
        self.sums.add(e.n);
    }
}

impl Apply<Reset> for Snappy {
    fn apply(&mut self, _: &Reset) {
        self.sums.reset();
    }
}

thread_local! {
    /// Every call of `Flex::conflicts` on this thread: (ours, theirs).
    static CONFLICT_CALLS: RefCell<Vec<(Vec<TallyEvent>, Vec<TallyEvent>)>> =
        const { RefCell::new(Vec::new()) };
}

/// A hand-written aggregate over the tally's events whose
/// `Aggregate::conflicts` answers `CONFLICTS`.
#[derive(Default, Debug, Clone, PartialEq)]
struct Flex<const CONFLICTS: bool> {
    sums: Sums,
}

impl<const CONFLICTS: bool> Apply<TallyEvent> for Flex<CONFLICTS> {
    fn apply(&mut self, event: &TallyEvent) {
        match event {
            TallyEvent::Added(e) => self.sums.add(e.n),
            TallyEvent::Reset(_) => self.sums.reset(),
        }
    }
}

impl<const CONFLICTS: bool> Aggregate for Flex<CONFLICTS> {
    type Event = TallyEvent;
    const NAME: &'static str = "tally";

    fn conflicts(ours: &[TallyEvent], theirs: &[TallyEvent]) -> bool {
        CONFLICT_CALLS.with(|calls| {
            calls.borrow_mut().push((ours.to_vec(), theirs.to_vec()));
        });
        CONFLICTS
    }
}

/// A hand-written aggregate snapshotting every `EVERY` versions, for the
/// property test over snapshot intervals.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snap<const EVERY: u64> {
    sums: Sums,
}

impl<const EVERY: u64> Apply<TallyEvent> for Snap<EVERY> {
    fn apply(&mut self, event: &TallyEvent) {
        match event {
            TallyEvent::Added(e) => self.sums.add(e.n),
            TallyEvent::Reset(_) => self.sums.reset(),
        }
    }
}

impl<const EVERY: u64> Aggregate for Snap<EVERY> {
    type Event = TallyEvent;
    const NAME: &'static str = "snap";
    const SNAPSHOT: Option<SnapshotPolicy> = Some(SnapshotPolicy {
        every: EVERY,
        version: 1,
    });

    fn encode_snapshot(&self) -> Option<Result<Vec<u8>, EncodeError>> {
        Some(codec::encode_snapshot(self))
    }

    fn decode_snapshot(bytes: &[u8]) -> Option<Result<Self, DecodeError>> {
        Some(codec::decode_snapshot(bytes))
    }
}

fn sums_of(events: &[TallyEvent]) -> Sums {
    let mut sums = Sums::default();
    for event in events {
        match event {
            TallyEvent::Added(e) => sums.add(e.n),
            TallyEvent::Reset(_) => sums.reset(),
        }
    }
    sums
}

fn added(n: i64) -> TallyEvent {
    Added { n }.into()
}

// ---------------------------------------------------------------------------
// A store that lets a test look inside and interfere.
// ---------------------------------------------------------------------------

/// An `InMemoryStore` with hooks: another writer's appends slipped in right
/// before ours, a log of reads, and snapshots that can be hidden.
#[derive(Clone, Default)]
struct Probe {
    inner: InMemoryStore,
    hooks: Arc<Hooks>,
}

#[derive(Default)]
struct Hooks {
    /// Appended (by "another writer") before each of the next appends, one each.
    before_append: Mutex<VecDeque<StreamWrite>>,
    /// Every `read_stream` call.
    reads: Mutex<Vec<(StreamId, ReadRange)>>,
    /// Events yielded by every `read_stream`.
    events_read: AtomicUsize,
    /// `load_snapshot` answers `None`, as if every snapshot were deleted.
    hide_snapshots: AtomicBool,
    /// `save_snapshot` and `queue_snapshot` calls.
    snapshots_saved: AtomicUsize,
    /// `delete_snapshot` calls.
    snapshots_deleted: AtomicUsize,
    /// Recorded-at times read back instead of the stored ones, by version:
    /// a store whose clock was stepped back.
    recorded_at: Mutex<std::collections::HashMap<u64, Timestamp>>,
}

impl Probe {
    /// A probe over the same events and snapshots whose snapshots are hidden.
    fn without_snapshots(&self) -> Probe {
        let hooks = Hooks::default();
        hooks.hide_snapshots.store(true, Ordering::SeqCst);
        Probe {
            inner: self.inner.clone(),
            hooks: Arc::new(hooks),
        }
    }

    /// Before the next append through this probe, another writer appends `events`.
    fn interfere(&self, stream: &StreamId, events: Vec<NewEvent>) {
        self.hooks
            .before_append
            .lock()
            .unwrap()
            .push_back(StreamWrite::new(
                stream.clone(),
                ExpectedVersion::Any,
                events,
            ));
    }

    fn forget_reads(&self) {
        self.hooks.reads.lock().unwrap().clear();
        self.hooks.events_read.store(0, Ordering::SeqCst);
    }

    fn reads(&self) -> Vec<(StreamId, ReadRange)> {
        self.hooks.reads.lock().unwrap().clone()
    }

    fn events_read(&self) -> usize {
        self.hooks.events_read.load(Ordering::SeqCst)
    }
}

struct Counting {
    inner: EventStream,
    hooks: Arc<Hooks>,
}

impl Stream for Counting {
    type Item = es_core::Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(event))) = &mut polled {
            self.hooks.events_read.fetch_add(1, Ordering::SeqCst);
            if let Some(at) = self.hooks.recorded_at.lock().unwrap().get(&event.version) {
                event.recorded_at = *at;
            }
        }
        polled
    }
}

impl EventStore for Probe {
    async fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> es_core::Result<Vec<AppendResult>> {
        let other = self.hooks.before_append.lock().unwrap().pop_front();
        if let Some(other) = other {
            self.inner.append_to_streams(vec![other]).await?;
        }
        self.inner.append_to_streams(writes).await
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        self.hooks
            .reads
            .lock()
            .unwrap()
            .push((stream.clone(), range));
        Box::pin(Counting {
            inner: self.inner.read_stream(stream, range),
            hooks: self.hooks.clone(),
        })
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

impl SnapshotStore for Probe {
    async fn load_snapshot(&self, stream: &StreamId) -> es_core::Result<Option<Snapshot>> {
        if self.hooks.hide_snapshots.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> es_core::Result<()> {
        self.hooks.snapshots_saved.fetch_add(1, Ordering::SeqCst);
        self.inner.save_snapshot(snapshot).await
    }

    fn queue_snapshot(&self, snapshot: Snapshot) {
        self.hooks.snapshots_saved.fetch_add(1, Ordering::SeqCst);
        self.inner.queue_snapshot(snapshot);
    }

    async fn delete_snapshot(&self, stream: &StreamId) -> es_core::Result<()> {
        self.hooks.snapshots_deleted.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_snapshot(stream).await
    }
}

/// An event of "another writer" for the tally's streams.
fn theirs(n: i64) -> NewEvent {
    NewEvent::encode("tally", &added(n), Metadata::new().actor("other-writer")).unwrap()
}

// ---------------------------------------------------------------------------
// execute: what a decision returns and what `Executed` reports.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_decision_of_no_events_appends_nothing() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    let done = tallies.execute("t", |_| ()).await.unwrap();
    assert_eq!(done.version, 0);
    assert!(done.events.is_empty());
    assert_eq!(done.position, None);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.state, Tally::default());
    let stream = tallies.stream_id("t").unwrap();
    assert_eq!(tallies.store().stream_version(&stream).await.unwrap(), 0);

    // On an existing stream: the loaded state and version, still nothing written.
    tallies.execute("t", |_| Added { n: 4 }).await.unwrap();
    let none = tallies.execute("t", |_| None::<Added>).await.unwrap();
    assert_eq!((none.version, none.position, none.attempts), (1, None, 1));
    assert_eq!(none.state.sums.seen, [4]);
    assert_eq!(tallies.store().last_position().await.unwrap(), 1);
}

#[tokio::test]
async fn a_decision_of_one_event_appends_it() {
    let store = InMemoryStore::new();
    let tallies = Repository::<Tally, _>::new(store.clone());
    // Another stream first, so positions and versions differ.
    tallies.execute("other", |_| Added { n: 1 }).await.unwrap();

    let done = tallies.execute("t", |_| Added { n: 5 }).await.unwrap();
    assert_eq!(done.version, 1);
    assert_eq!(done.events, [added(5)]);
    assert_eq!(done.position, Some(2));
    assert_eq!(done.attempts, 1);
    assert_eq!(done.state.sums.total, 5);

    let loaded = tallies.load("t").await.unwrap();
    assert_eq!((loaded.version, loaded.sums.total), (1, 5));
    assert!(loaded.exists());
    assert_eq!(store.last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn a_decision_of_several_events_appends_them_in_order() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    tallies.execute("t", |_| Added { n: 10 }).await.unwrap();

    let done = tallies
        .execute("t", |t: &Tally| {
            vec![
                Added {
                    n: t.sums.total + 1,
                },
                Added { n: 2 },
            ]
        })
        .await
        .unwrap();
    assert_eq!(done.version, 3);
    assert_eq!(done.events, [added(11), added(2)]);
    assert_eq!(done.position, Some(3));
    assert_eq!(done.attempts, 1);
    assert_eq!(done.state.sums.seen, [10, 11, 2]);

    // A tuple of different event types.
    let done = tallies
        .execute("t", |_| (Reset, Added { n: 7 }))
        .await
        .unwrap();
    assert_eq!(done.version, 5);
    assert_eq!(done.events, [TallyEvent::Reset(Reset), added(7)]);
    assert_eq!(done.state.sums.total, 7);
    assert_eq!(done.state.sums.resets, 1);

    let loaded = tallies.load("t").await.unwrap();
    assert_eq!(loaded.state, done.state);
    assert_eq!(loaded.version, 5);
}

#[tokio::test]
async fn a_refused_command_is_rejected_and_appends_nothing() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    tallies.execute("t", |_| Added { n: 1 }).await.unwrap();

    let refused = tallies
        .execute("t", |t: &Tally| -> Result<Added, String> {
            Err(format!("total is {}", t.sums.total))
        })
        .await
        .unwrap_err();
    assert!(matches!(&refused, ExecuteError::Rejected(reason) if reason == "total is 1"));
    assert_eq!(refused.rejection().map(String::as_str), Some("total is 1"));
    assert!(refused.as_conflict().is_none());
    assert_eq!(refused.to_string(), "command rejected: total is 1");

    let loaded = tallies.load("t").await.unwrap();
    assert_eq!((loaded.version, loaded.sums.total), (1, 1));
}

#[tokio::test]
async fn an_invalid_id_is_a_typed_error() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    let empty = tallies.execute("", |_| Added { n: 1 }).await.unwrap_err();
    assert!(matches!(
        empty,
        ExecuteError::Store(Error::InvalidStreamId(StreamIdError::Empty))
    ));
    assert!(matches!(
        tallies.load("a\nb").await,
        Err(Error::InvalidStreamId(StreamIdError::ControlCharacter {
            found: '\n',
            ..
        }))
    ));
    let long = "x".repeat(es_core::MAX_STREAM_ID_LEN);
    assert!(matches!(
        tallies.load(&long).await,
        Err(Error::InvalidStreamId(StreamIdError::TooLong { .. }))
    ));
    assert_eq!(tallies.stream_id(&42).unwrap().as_str(), "tally-42");
}

// ---------------------------------------------------------------------------
// Conflicts: retries and the conflict policies.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_conflict_reruns_the_decision_on_fresh_state() {
    let probe = Probe::default();
    let tallies = Repository::<Tally, _>::new(probe.clone());
    let stream = tallies.stream_id("t").unwrap();
    probe.interfere(&stream, vec![theirs(100)]);

    let mut seen_totals = Vec::new();
    let done = tallies
        .execute("t", |t: &Tally| {
            seen_totals.push(t.sums.total);
            Added {
                n: t.sums.total + 1,
            }
        })
        .await
        .unwrap();
    assert_eq!(
        seen_totals,
        [0, 100],
        "the second run sees the other writer"
    );
    assert_eq!(done.attempts, 2);
    assert_eq!(done.version, 2);
    assert_eq!(done.events, [added(101)]);
    assert_eq!(done.state.sums.seen, [100, 101]);
    assert_eq!(done.position, Some(2));

    let history = tallies.history("t").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].metadata.actor.as_deref(), Some("other-writer"));
    assert_eq!(history[1].event, Decoded::Event(added(101)));
    assert_eq!(tallies.load("t").await.unwrap().state, done.state);
}

#[tokio::test]
async fn a_rerun_may_decide_nothing() {
    let probe = Probe::default();
    let tallies = Repository::<Tally, _>::new(probe.clone());
    probe.interfere(&tallies.stream_id("t").unwrap(), vec![theirs(1)]);

    // "Add 1 unless the total is already positive": the rerun decides nothing.
    let done = tallies
        .execute("t", |t: &Tally| {
            (t.sums.total <= 0).then_some(Added { n: 1 })
        })
        .await
        .unwrap();
    assert_eq!(done.attempts, 2);
    assert!(done.events.is_empty());
    assert_eq!(done.version, 1);
    assert_eq!(done.position, None);
    assert_eq!(done.state.sums.seen, [1]);
}

#[tokio::test]
async fn without_retries_a_conflict_is_returned() {
    let probe = Probe::default();
    let tallies = Repository::<Tally, _>::new(probe.clone()).with_retries(0);
    let stream = tallies.stream_id("t").unwrap();
    probe.interfere(&stream, vec![theirs(100)]);

    let mut calls = 0;
    let error = tallies
        .execute("t", |_| {
            calls += 1;
            Added { n: 1 }
        })
        .await
        .unwrap_err();
    assert_eq!(calls, 1);
    assert!(matches!(&error, ExecuteError::Conflict(_)));
    let conflict = error.as_conflict().expect("a conflict");
    assert_eq!(conflict.stream, stream);
    assert_eq!(conflict.expected, ExpectedVersion::Exact(0));
    assert_eq!(conflict.actual, 1);
    assert!(error.rejection().is_none());
    // It carries what it raced against, as stored and decoded.
    let raced = error.as_command_conflict().expect("the command's conflict");
    assert_eq!((raced.attempts, raced.reruns), (1, 0));
    assert_eq!(raced.concurrent.len(), 1);
    assert_eq!(
        raced.concurrent[0].metadata.actor.as_deref(),
        Some("other-writer")
    );
    let missed: Vec<_> = raced.events::<Tally>().unwrap();
    assert_eq!(missed.len(), 1);
    assert_eq!((missed[0].version, &missed[0].event), (1, &added(100)));
    assert!(
        error.to_string().contains("1 events appended meanwhile"),
        "{error}"
    );

    // Only the other writer's event is stored.
    let history = tallies.history("t").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].event, Decoded::Event(added(100)));
}

#[tokio::test]
async fn retries_are_bounded() {
    let probe = Probe::default();
    let tallies = Repository::<Tally, _>::new(probe.clone());
    let stream = tallies.stream_id("t").unwrap();
    let retries = Repository::<Tally, Probe>::DEFAULT_RETRIES;
    // Another writer wins every race: one more time than the retries allow.
    for n in 0..=retries {
        probe.interfere(&stream, vec![theirs(i64::from(n))]);
    }

    let mut calls = 0u32;
    let error = tallies
        .execute("t", |_| {
            calls += 1;
            Added { n: 1 }
        })
        .await
        .unwrap_err();
    assert_eq!(calls, retries + 1);
    let conflict = error.as_conflict().expect("a conflict");
    assert_eq!(
        conflict.expected,
        ExpectedVersion::Exact(u64::from(retries))
    );
    assert_eq!(conflict.actual, u64::from(retries) + 1);
    // The last decision ran on version `retries` and missed one event.
    let raced = error.as_command_conflict().unwrap();
    assert_eq!((raced.attempts, raced.reruns), (retries + 1, retries));
    let missed = raced.events::<Tally>().unwrap();
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].event, added(i64::from(retries)));

    // One race fewer: the last attempt wins.
    let probe = Probe::default();
    let tallies = Repository::<Tally, _>::new(probe.clone()).with_retries(2);
    for n in 0..2 {
        probe.interfere(&stream, vec![theirs(n)]);
    }
    let done = tallies.execute("t", |_| Added { n: 9 }).await.unwrap();
    assert_eq!(done.attempts, 3);
    assert_eq!(
        (done.reruns, done.conflicts(), done.reruns_avoided()),
        (2, 2, 0)
    );
    assert_eq!(done.version, 3);
    assert_eq!(done.state.sums.seen, [0, 1, 9]);
}

#[tokio::test]
async fn check_conflicts_appends_without_rerunning_when_the_aggregate_allows() {
    CONFLICT_CALLS.with(|c| c.borrow_mut().clear());
    let probe = Probe::default();
    let flex = Repository::<Flex<false>, _>::new(probe.clone())
        .with_conflict_policy(ConflictPolicy::CheckConflicts);
    let stream = flex.stream_id("t").unwrap();
    probe.interfere(&stream, vec![theirs(100), theirs(200)]);

    let mut calls = 0;
    let done = flex
        .execute("t", |t: &Flex<false>| {
            calls += 1;
            // One of the shared enum's events: a hand-written aggregate
            // takes them in a `Vec` (or an array).
            vec![Added {
                n: t.sums.total + 1,
            }]
        })
        .await
        .unwrap();
    assert_eq!(calls, 1, "the decision must not run again");
    assert_eq!(
        (done.attempts, done.reruns, done.reruns_avoided()),
        (2, 0, 1)
    );
    // Our event, decided on the empty state, goes after theirs.
    assert_eq!(done.events, [added(1)]);
    assert_eq!(done.version, 3);
    assert_eq!(done.state.sums.seen, [100, 200, 1]);
    assert_eq!(done.position, Some(3));

    let calls = CONFLICT_CALLS.with(|c| c.borrow().clone());
    assert_eq!(calls, [(vec![added(1)], vec![added(100), added(200)])]);

    let loaded = flex.load("t").await.unwrap();
    assert_eq!((loaded.version, loaded.state.clone()), (3, done.state));
}

#[tokio::test]
async fn check_conflicts_reruns_when_the_events_conflict() {
    CONFLICT_CALLS.with(|c| c.borrow_mut().clear());
    let probe = Probe::default();
    let flex = Repository::<Flex<true>, _>::new(probe.clone())
        .with_conflict_policy(ConflictPolicy::CheckConflicts);
    probe.interfere(&flex.stream_id("t").unwrap(), vec![theirs(100)]);

    let mut calls = 0;
    let done = flex
        .execute("t", |t: &Flex<true>| {
            calls += 1;
            // One of the shared enum's events: a hand-written aggregate
            // takes them in a `Vec` (or an array).
            vec![Added {
                n: t.sums.total + 1,
            }]
        })
        .await
        .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(done.attempts, 2);
    assert_eq!((done.reruns, done.reruns_avoided()), (1, 0));
    assert_eq!(done.events, [added(101)]);
    assert_eq!(done.state.sums.seen, [100, 101]);
    assert_eq!(CONFLICT_CALLS.with(|c| c.borrow().len()), 1);
}

/// Kept events that meet a second conflict are judged against every event
/// since their decision, not only the latest ones.
#[tokio::test]
async fn check_conflicts_judges_kept_events_against_everything_since_the_decision() {
    CONFLICT_CALLS.with(|c| c.borrow_mut().clear());
    let probe = Probe::default();
    let flex = Repository::<Flex<false>, _>::new(probe.clone())
        .with_conflict_policy(ConflictPolicy::CheckConflicts);
    let stream = flex.stream_id("t").unwrap();
    probe.interfere(&stream, vec![theirs(100)]);
    probe.interfere(&stream, vec![theirs(200), theirs(300)]);

    let mut calls = 0;
    let done = flex
        .execute("t", |_: &Flex<false>| {
            calls += 1;
            vec![Added { n: 1 }]
        })
        .await
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(
        (done.attempts, done.reruns, done.reruns_avoided()),
        (3, 0, 2)
    );
    assert_eq!(done.state.sums.seen, [100, 200, 300, 1]);
    let calls = CONFLICT_CALLS.with(|c| c.borrow().clone());
    assert_eq!(
        calls,
        [
            (vec![added(1)], vec![added(100)]),
            (vec![added(1)], vec![added(100), added(200), added(300)]),
        ]
    );
}

/// A conflict the aggregate judges real re-runs the decision; when the
/// retries run out, the error lists exactly the events appended after the
/// last decision's state.
#[tokio::test]
async fn check_conflicts_out_of_retries_reports_what_the_last_decision_missed() {
    let probe = Probe::default();
    let flex = Repository::<Flex<true>, _>::new(probe.clone())
        .with_conflict_policy(ConflictPolicy::CheckConflicts)
        .with_retries(1);
    let stream = flex.stream_id("t").unwrap();
    probe.interfere(&stream, vec![theirs(100)]);
    probe.interfere(&stream, vec![theirs(200), theirs(300)]);

    let mut seen = Vec::new();
    let error = flex
        .execute("t", |t: &Flex<true>| {
            seen.push(t.sums.total);
            vec![Added { n: 1 }]
        })
        .await
        .unwrap_err();
    assert_eq!(seen, [0, 100], "decided on the empty state, then on v1");
    let raced = error.as_command_conflict().unwrap();
    assert_eq!((raced.attempts, raced.reruns), (2, 1));
    assert_eq!(raced.conflict.expected, ExpectedVersion::Exact(1));
    assert_eq!(raced.conflict.actual, 3);
    let missed: Vec<_> = raced
        .events::<Flex<true>>()
        .unwrap()
        .into_iter()
        .map(|e| (e.version, e.event))
        .collect();
    assert_eq!(missed, [(2, added(200)), (3, added(300))]);

    // Kept events out of retries: everything since their decision.
    let probe = Probe::default();
    let flex = Repository::<Flex<false>, _>::new(probe.clone())
        .with_conflict_policy(ConflictPolicy::CheckConflicts)
        .with_retries(1);
    probe.interfere(&stream, vec![theirs(100)]);
    probe.interfere(&stream, vec![theirs(200)]);
    let error = flex
        .execute("t", |_: &Flex<false>| vec![Added { n: 1 }])
        .await
        .unwrap_err();
    let raced = error.as_command_conflict().unwrap();
    assert_eq!((raced.attempts, raced.reruns), (2, 0));
    assert_eq!(raced.concurrent.len(), 2);
    assert_eq!(
        flex.load("t").await.unwrap().state.sums.seen,
        [100, 200],
        "ours was never appended"
    );
}

#[tokio::test]
async fn the_default_policy_never_asks_the_aggregate() {
    CONFLICT_CALLS.with(|c| c.borrow_mut().clear());
    let probe = Probe::default();
    let flex = Repository::<Flex<false>, _>::new(probe.clone());
    probe.interfere(&flex.stream_id("t").unwrap(), vec![theirs(100)]);

    let mut calls = 0;
    let done = flex
        .execute("t", |t: &Flex<false>| {
            calls += 1;
            // One of the shared enum's events: a hand-written aggregate
            // takes them in a `Vec` (or an array).
            vec![Added {
                n: t.sums.total + 1,
            }]
        })
        .await
        .unwrap();
    assert_eq!(
        calls, 2,
        "`Rerun` re-decides even when the aggregate says no conflict"
    );
    assert_eq!(done.events, [added(101)]);
    assert!(CONFLICT_CALLS.with(|c| c.borrow().is_empty()));
}

// ---------------------------------------------------------------------------
// Snapshots (RELIABILITY T11).
// ---------------------------------------------------------------------------

/// Seven commands on `snappy-s`: 1, 2, ..., 7.
async fn seven_commands(snappies: &Repository<Snappy, Probe>) {
    for n in 1..=7 {
        snappies.execute("s", |_| Added { n }).await.unwrap();
    }
}

/// The state folded from every stored event, without any snapshot.
async fn replayed(store: &Probe, id: &str) -> (Sums, u64) {
    let stream = StreamId::new(format!("snappy-{id}")).unwrap();
    let mut events = store.inner.read_stream(&stream, ReadRange::all());
    let mut all = Vec::new();
    while let Some(recorded) = es_core::store::next(&mut events).await {
        all.push(recorded.unwrap().decode::<TallyEvent>().unwrap());
    }
    (sums_of(&all), all.len() as u64)
}

#[tokio::test]
async fn t11_snapshot_is_taken_and_load_reads_only_the_tail() {
    let probe = Probe::default();
    let snappies = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&snappies).await;
    let saved = || probe.hooks.snapshots_saved.load(Ordering::SeqCst);
    assert_eq!(saved(), 2, "at versions 3 and 6");

    let stream = snappies.stream_id("s").unwrap();
    let snapshot = probe
        .inner
        .load_snapshot(&stream)
        .await
        .unwrap()
        .expect("a snapshot after 7 commands with every = 3");
    assert_eq!(snapshot.stream_id, stream);
    assert_eq!(snapshot.aggregate_type, "snappy");
    assert_eq!(snapshot.schema_version, 1);
    assert_eq!(snapshot.version, 6);
    let at_six: Snappy = serde_json::from_slice(&snapshot.state).unwrap();
    assert_eq!(at_six, snappies.load_at("s", 6).await.unwrap().state);
    assert_eq!(at_six.sums.seen, [1, 2, 3, 4, 5, 6]);

    probe.forget_reads();
    let loaded = snappies.load("s").await.unwrap();
    assert_eq!(loaded.version, 7);
    assert_eq!(loaded.sums.seen, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(probe.reads(), [(stream.clone(), ReadRange::starting_at(6))]);
    assert_eq!(
        probe.events_read(),
        2,
        "the snapshot's own event, checked, and the one after"
    );
    assert_eq!(saved(), 2, "version 7 is less than an interval past 6");

    // The same answer with every snapshot deleted, reading all 7 events.
    let bare = probe.without_snapshots();
    let without = Repository::<Snappy, _>::new(bare.clone())
        .load("s")
        .await
        .unwrap();
    assert_eq!(without, loaded);
    assert_eq!(bare.events_read(), 7);
    assert_eq!(replayed(&probe, "s").await, (loaded.state.sums.clone(), 7));
}

#[tokio::test]
async fn t11_execute_starts_from_the_snapshot() {
    let probe = Probe::default();
    let snappies = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&snappies).await;

    probe.forget_reads();
    let done = snappies
        .execute("s", |s: &Snappy| Added { n: s.sums.total })
        .await
        .unwrap();
    assert_eq!(done.version, 8);
    assert_eq!(done.events, [SnappyEvent::Added(Added { n: 28 })]);
    assert_eq!(
        probe.events_read(),
        2,
        "the snapshot's own event and the one after"
    );

    // The next snapshot is taken at 9.
    snappies.execute("s", |_| Added { n: 0 }).await.unwrap();
    let stream = snappies.stream_id("s").unwrap();
    let snapshot = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(snapshot.version, 9);
    let state: Snappy = serde_json::from_slice(&snapshot.state).unwrap();
    assert_eq!(state, snappies.load("s").await.unwrap().state);
}

/// Replaces the stored snapshot of `snappy-s` by `make(good)`, where `good`
/// is the one the repository took; then checks that the bad one changes no
/// answer and is replaced by the next load.
async fn check_bad_snapshot_is_ignored(make: impl FnOnce(Snapshot) -> Snapshot) {
    let probe = Probe::default();
    let snappies = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&snappies).await;
    let truth = snappies.load("s").await.unwrap();
    let stream = snappies.stream_id("s").unwrap();

    let good = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    let bad = make(good.clone());
    assert_ne!(bad, good);
    probe.inner.save_snapshot(bad.clone()).await.unwrap();
    assert_eq!(probe.inner.load_snapshot(&stream).await.unwrap(), Some(bad));

    probe.forget_reads();
    let loaded = snappies.load("s").await.unwrap();
    assert_eq!(loaded, truth, "a bad snapshot must not change the answer");
    assert_eq!(probe.events_read(), 7, "replayed from the first event");
    for version in 0..=7 {
        let at = snappies.load_at("s", version).await.unwrap();
        assert_eq!(at.version, version);
        assert_eq!(
            at.sums.seen,
            (1..=i64::try_from(version).unwrap()).collect::<Vec<_>>()
        );
    }

    let replaced = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(replaced.aggregate_type, "snappy");
    assert_eq!(replaced.schema_version, 1);
    assert_eq!(replaced.version, 7);
    let state: Snappy = serde_json::from_slice(&replaced.state).unwrap();
    assert_eq!(state, truth.state);

    // ... and is used from then on.
    probe.forget_reads();
    assert_eq!(snappies.load("s").await.unwrap(), truth);
    assert_eq!(
        probe.events_read(),
        1,
        "only the snapshot's own event, checked"
    );
}

/// A state that would change every answer if a snapshot holding it were used.
fn wrong_state() -> Vec<u8> {
    serde_json::to_vec(&Snappy {
        sums: Sums {
            total: 999,
            seen: vec![999],
            resets: 9,
        },
    })
    .unwrap()
}

#[tokio::test]
async fn t11_snapshot_that_does_not_decode_is_ignored_and_replaced() {
    check_bad_snapshot_is_ignored(|good| Snapshot {
        version: 7,
        state: b"{\"sums\": not json".to_vec(),
        ..good
    })
    .await;
    check_bad_snapshot_is_ignored(|good| Snapshot {
        version: 7,
        state: br#"{"sums":{"total":"seven"}}"#.to_vec(),
        ..good
    })
    .await;
}

#[tokio::test]
async fn t11_snapshot_of_another_schema_version_is_ignored_and_replaced() {
    check_bad_snapshot_is_ignored(|good| Snapshot {
        version: 7,
        schema_version: 2,
        state: wrong_state(),
        ..good
    })
    .await;
}

#[tokio::test]
async fn t11_snapshot_of_another_aggregate_type_is_ignored_and_replaced() {
    check_bad_snapshot_is_ignored(|good| Snapshot {
        version: 7,
        aggregate_type: "tally".into(),
        state: wrong_state(),
        ..good
    })
    .await;
}

#[tokio::test]
async fn t11_a_bad_snapshot_is_replaced_by_execute_at_the_next_interval() {
    let probe = Probe::default();
    let snappies = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&snappies).await;
    let stream = snappies.stream_id("s").unwrap();
    let good = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    probe
        .inner
        .save_snapshot(Snapshot {
            schema_version: 2,
            state: wrong_state(),
            ..good
        })
        .await
        .unwrap();

    // Versions 8 and 9: the answer is right all along, and the stale
    // snapshot is gone once the interval is crossed.
    for n in [8, 9] {
        let done = snappies.execute("s", |_| Added { n }).await.unwrap();
        assert_eq!(done.state.sums.seen, (1..=n).collect::<Vec<_>>());
    }
    let snapshot = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!((snapshot.version, snapshot.schema_version), (9, 1));
    let state: Snappy = serde_json::from_slice(&snapshot.state).unwrap();
    assert_eq!(state.sums.seen, (1..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn t11_load_at_before_the_snapshot_ignores_it() {
    let probe = Probe::default();
    let snappies = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&snappies).await;

    probe.forget_reads();
    let at_four = snappies.load_at("s", 4).await.unwrap();
    assert_eq!(at_four.version, 4);
    assert_eq!(at_four.sums.seen, [1, 2, 3, 4]);
    assert_eq!(probe.events_read(), 4);

    // At or after the snapshot it is used.
    probe.forget_reads();
    let at_seven = snappies.load_at("s", 7).await.unwrap();
    assert_eq!(at_seven.sums.seen, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(probe.events_read(), 2);
}

#[tokio::test]
async fn t11_snapshot_past_the_end_of_the_stream_is_not_trusted() {
    let probe = Probe::default();
    let snappies = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&snappies).await;
    let truth = snappies.load("s").await.unwrap();
    let stream = snappies.stream_id("s").unwrap();
    let good = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    // A snapshot of a future that the events do not hold (restored from
    // another copy of the data, or the events lost their tail).
    probe
        .inner
        .save_snapshot(Snapshot {
            version: 50,
            state: wrong_state(),
            ..good
        })
        .await
        .unwrap();
    assert_eq!(snappies.load("s").await.unwrap(), truth);
    // It is replaced: deleted, and a snapshot of the real state taken.
    assert_eq!(probe.hooks.snapshots_deleted.load(Ordering::SeqCst), 1);
    let replaced = probe.inner.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(replaced.version, truth.version);
    let state: Snappy = serde_json::from_slice(&replaced.state).unwrap();
    assert_eq!(state, truth.state);
    // And used from then on: the next load reads only its own event.
    probe.forget_reads();
    assert_eq!(snappies.load("s").await.unwrap(), truth);
    assert_eq!(probe.events_read(), 1);
}

/// Runs one T11 case with snapshots every `EVERY` versions.
fn t11_case<const EVERY: u64>(
    events: &[i64],
    batch: usize,
    load_every: usize,
) -> Result<(), TestCaseError> {
    es_core::blocking::block_on(async {
        let store = InMemoryStore::new();
        let snaps = Repository::<Snap<EVERY>, _>::new(store.clone());
        let plain = Repository::<Snap<EVERY>, _>::new(
            Probe {
                inner: store.clone(),
                hooks: Arc::default(),
            }
            .without_snapshots(),
        );
        let mut so_far: Vec<TallyEvent> = Vec::new();
        for (i, chunk) in events.chunks(batch).enumerate() {
            let chunk: Vec<TallyEvent> = chunk
                .iter()
                .map(|&n| if n % 7 == 0 { Reset.into() } else { added(n) })
                .collect();
            let done = snaps.execute("p", |_| chunk.clone()).await.unwrap();
            so_far.extend(chunk);
            prop_assert_eq!(&done.state.sums, &sums_of(&so_far));
            if i % load_every == 0 {
                let loaded = snaps.load("p").await.unwrap();
                prop_assert_eq!(loaded.version, so_far.len() as u64);
                prop_assert_eq!(&loaded.sums, &sums_of(&so_far));
            }
        }
        let n = so_far.len() as u64;
        let with = snaps.load("p").await.unwrap();
        let without = plain.load("p").await.unwrap();
        prop_assert_eq!(&with, &without);
        prop_assert_eq!(with.version, n);
        prop_assert_eq!(&with.sums, &sums_of(&so_far));
        for v in 0..=n + 1 {
            let at = snaps.load_at("p", v).await.unwrap();
            prop_assert_eq!(at.version, v.min(n));
            let prefix = &so_far[..usize::try_from(v.min(n)).unwrap()];
            prop_assert_eq!(&at.sums, &sums_of(prefix));
        }
        // After a load, the snapshot is never a whole interval behind.
        let stream = snaps.stream_id("p").unwrap();
        let snapshot = store.load_snapshot(&stream).await.unwrap();
        if n < EVERY {
            prop_assert!(snapshot.is_none(), "no snapshot before {} events", EVERY);
        } else {
            let snapshot = snapshot.expect("a snapshot");
            prop_assert!(snapshot.version <= n && n - snapshot.version < EVERY);
            let state: Snap<EVERY> = serde_json::from_slice(&snapshot.state).unwrap();
            let prefix = &so_far[..usize::try_from(snapshot.version).unwrap()];
            prop_assert_eq!(&state.sums, &sums_of(prefix));
        }
        Ok(())
    })
}

proptest! {
    #[test]
    fn t11_snapshots_never_change_an_answer(
        events in proptest::collection::vec(-20i64..20, 0..40),
        every in 1u64..10,
        batch in 1usize..4,
        load_every in 1usize..5,
    ) {
        match every {
            1 => t11_case::<1>(&events, batch, load_every)?,
            2 => t11_case::<2>(&events, batch, load_every)?,
            3 => t11_case::<3>(&events, batch, load_every)?,
            4 => t11_case::<4>(&events, batch, load_every)?,
            5 => t11_case::<5>(&events, batch, load_every)?,
            6 => t11_case::<6>(&events, batch, load_every)?,
            7 => t11_case::<7>(&events, batch, load_every)?,
            8 => t11_case::<8>(&events, batch, load_every)?,
            _ => t11_case::<9>(&events, batch, load_every)?,
        }
    }
}

// ---------------------------------------------------------------------------
// Reading back in time.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn load_at_bounds() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    for n in 1..=3 {
        tallies.execute("t", |_| Added { n }).await.unwrap();
    }
    let zero = tallies.load_at("t", 0).await.unwrap();
    assert_eq!(zero.version, 0);
    assert!(!zero.exists());
    assert_eq!(zero.state, Tally::default());

    let two = tallies.load_at("t", 2).await.unwrap();
    assert_eq!((two.version, two.sums.seen.clone()), (2, vec![1, 2]));

    let past_the_end = tallies.load_at("t", 1_000).await.unwrap();
    assert_eq!(past_the_end, tallies.load("t").await.unwrap());
    assert_eq!(past_the_end.version, 3);
    let max = tallies.load_at("t", u64::MAX).await.unwrap();
    assert_eq!(max.version, 3);

    let missing = tallies.load_at("nobody", 5).await.unwrap();
    assert_eq!((missing.version, missing.state), (0, Tally::default()));
}

#[tokio::test]
async fn load_as_of_bounds() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    for n in 1..=3 {
        tallies.execute("t", |_| Added { n }).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let history = tallies.history("t").await.unwrap();
    let first = history[0].recorded_at.as_unix_micros();
    let last = history[2].recorded_at.as_unix_micros();

    let before = tallies
        .load_as_of("t", Timestamp::from_unix_micros(first - 1))
        .await
        .unwrap();
    assert_eq!((before.version, before.state), (0, Tally::default()));

    let long_before = tallies
        .load_as_of("t", Timestamp::from_unix_micros(i64::MIN))
        .await
        .unwrap();
    assert_eq!(long_before.version, 0);

    for envelope in &history {
        let at = tallies.load_as_of("t", envelope.recorded_at).await.unwrap();
        let expected = history
            .iter()
            .filter(|e| e.recorded_at <= envelope.recorded_at)
            .count() as u64;
        assert_eq!(at.version, expected, "as of event {}", envelope.version);
        assert_eq!(at.sums.seen.len() as u64, expected);
    }

    let after = tallies
        .load_as_of("t", Timestamp::from_unix_micros(last + 1))
        .await
        .unwrap();
    assert_eq!(after, tallies.load("t").await.unwrap());
    let now = tallies.load_as_of("t", Timestamp::now()).await.unwrap();
    assert_eq!(now.version, 3);
}

#[tokio::test]
async fn load_as_of_counts_each_event_by_its_own_business_time() {
    // Imported events carry their own times, out of order: the second was
    // reported late, the third happened between the first two.
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    for (n, at) in [
        (1, "2020-03-01T00:00:00Z"),
        (2, "2020-01-01T00:00:00Z"),
        (3, "2020-02-01T00:00:00Z"),
    ] {
        tallies
            .command("t")
            .occurred_at(t(at))
            .metadata(Metadata::new().actor("import"))
            .execute(|_| Added { n })
            .await
            .unwrap();
    }
    let cases = [
        ("2019-12-31T00:00:00Z", vec![], 0),
        ("2020-01-15T00:00:00Z", vec![2], 2),
        ("2020-02-15T00:00:00Z", vec![2, 3], 3),
        ("2020-03-15T00:00:00Z", vec![1, 2, 3], 3),
    ];
    for (at, seen, version) in cases {
        let then = tallies
            .load_as_of("t", AsOf::Occurred(t(at)))
            .await
            .unwrap();
        assert_eq!(then.sums.seen, seen, "as of {at}");
        assert_eq!(
            then.version, version,
            "the last event that counts, as of {at}"
        );
    }
    // By the store's clock, all three were recorded just now; a bare
    // timestamp asks about recorded time.
    let now = tallies
        .load_as_of("t", AsOf::Recorded(Timestamp::now()))
        .await;
    assert_eq!(now.unwrap().version, 3);
    assert_eq!(
        tallies
            .load_as_of("t", t("2021-01-01T00:00:00Z"))
            .await
            .unwrap()
            .version,
        0
    );
    let history = tallies.history("t").await.unwrap();
    assert_eq!(history[1].occurred_at, t("2020-01-01T00:00:00Z"));
    assert!(history[1].recorded_at > history[1].occurred_at);
}

#[tokio::test]
async fn load_as_of_does_not_assume_the_store_clock_moves_forward() {
    // The store's clock was stepped back before the third event: it reads
    // as recorded before the second.
    let probe = Probe::default();
    let tallies = Repository::<Tally, _>::new(probe.clone());
    for n in 1..=3 {
        tallies.execute("t", |_| Added { n }).await.unwrap();
    }
    let at = |micros| Timestamp::from_unix_micros(micros);
    {
        let mut clock = probe.hooks.recorded_at.lock().unwrap();
        clock.insert(1, at(1_000));
        clock.insert(2, at(3_000));
        clock.insert(3, at(2_000));
    }
    let seen = |micros| {
        let tallies = tallies.clone();
        async move {
            let then = tallies.load_as_of("t", at(micros)).await.unwrap();
            (then.sums.seen.clone(), then.version)
        }
    };
    assert_eq!(seen(999).await, (vec![], 0));
    assert_eq!(seen(1_500).await, (vec![1], 1));
    // The third counts before the second: each event by its own time.
    assert_eq!(seen(2_500).await, (vec![1, 3], 3));
    assert_eq!(seen(3_000).await, (vec![1, 2, 3], 3));
}

// ---------------------------------------------------------------------------
// Stored events that do not decode.
// ---------------------------------------------------------------------------

/// Stores a good event then `bad` directly in `tally-{id}`; returns the stream.
async fn stream_with_bad_second_event(store: &InMemoryStore, id: &str, bad: NewEvent) -> StreamId {
    let stream = StreamId::new(format!("tally-{id}")).unwrap();
    let good = NewEvent::encode("tally", &added(1), Metadata::new()).unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![good, bad])
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_payload_that_does_not_match_its_type_fails_the_load() {
    let store = InMemoryStore::new();
    let bad = NewEvent::new("tally", "added", 1, r#"{"n":"one"}"#);
    let stream = stream_with_bad_second_event(&store, "p", bad).await;
    let tallies = Repository::<Tally, _>::new(store);

    let error = tallies.load("p").await.unwrap_err();
    match &error {
        Error::Decode {
            stream: s,
            version,
            source: DecodeError::Payload {
                name, version: v, ..
            },
        } => {
            assert_eq!(s, &stream);
            assert_eq!(*version, 2);
            assert_eq!((*name, *v), ("added", 1));
        }
        other => panic!("expected a payload decode error, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "cannot decode the event at version 2 of stream `tally-p`"
    );

    // Every fold reports it, and nothing more is appended; the history
    // still shows the trail, with the stored payload of the bad event.
    let history = tallies.history("p").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].event, Decoded::Event(added(1)));
    match &history[1].event {
        Decoded::Undecodable { payload, error } => {
            assert_eq!(payload.as_str(), r#"{"n":"one"}"#);
            assert_eq!(payload.to_json().unwrap()["n"], "one");
            assert!(matches!(**error, DecodeError::Payload { version: 1, .. }));
        }
        other @ Decoded::Event(_) => panic!("expected the raw event, got {other:?}"),
    }
    assert_eq!((history[1].version, history[1].name.as_str()), (2, "added"));
    assert!(matches!(
        tallies.execute("p", |_| Added { n: 1 }).await,
        Err(ExecuteError::Store(Error::Decode { version: 2, .. }))
    ));
    // Reading back to before the bad event still works.
    assert_eq!(tallies.load_at("p", 1).await.unwrap().sums.seen, [1]);
    assert_eq!(tallies.store().stream_version(&stream).await.unwrap(), 2);
}

#[tokio::test]
async fn an_unknown_event_name_fails_the_load() {
    let store = InMemoryStore::new();
    let bad = NewEvent::new("tally", "subtracted", 1, r#"{"n":1}"#);
    let stream = stream_with_bad_second_event(&store, "u", bad).await;
    let tallies = Repository::<Tally, _>::new(store);

    match tallies.load("u").await.unwrap_err() {
        Error::Decode {
            stream: s,
            version: 2,
            source: DecodeError::UnknownEvent { name, version: 1 },
        } => {
            assert_eq!(s, stream);
            assert_eq!(name, "subtracted");
        }
        other => panic!("expected an unknown event error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_schema_version_newer_than_the_code_fails_the_load() {
    let store = InMemoryStore::new();
    let bad = NewEvent::new("tally", "added", 3, r#"{"n":1}"#);
    let stream = stream_with_bad_second_event(&store, "v", bad).await;
    let tallies = Repository::<Tally, _>::new(store);

    match tallies.load("v").await.unwrap_err() {
        Error::Decode {
            stream: s,
            version: 2,
            source:
                DecodeError::VersionTooNew {
                    name: "added",
                    version: 3,
                    known: 1,
                },
        } => assert_eq!(s, stream),
        other => panic!("expected a version-too-new error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_schema_version_older_than_any_known_fails_the_load() {
    let store = InMemoryStore::new();
    let bad = NewEvent::new("tally", "added", 0, r#"{"n":1}"#);
    stream_with_bad_second_event(&store, "o", bad).await;
    let tallies = Repository::<Tally, _>::new(store);
    assert!(matches!(
        tallies.load("o").await,
        Err(Error::Decode {
            version: 2,
            source: DecodeError::UnknownVersion {
                name: "added",
                version: 0
            },
            ..
        })
    ));
}

#[tokio::test]
async fn a_stream_of_another_aggregate_type_is_not_folded() {
    /// An aggregate whose name extends `tally`: its instance `1` and the
    /// tally `x-1` are both stream `tally-x-1`.
    #[derive(Aggregate, Default, Debug)]
    #[aggregate(name = "tally-x", events(Added))]
    struct TallyX {
        total: i64,
    }
    impl Apply<Added> for TallyX {
        fn apply(&mut self, e: &Added) {
            self.total += e.n;
        }
    }

    let store = InMemoryStore::new();
    let others = Repository::<TallyX, _>::new(store.clone());
    others.execute("1", |_| Added { n: 5 }).await.unwrap();
    assert_eq!(others.load("1").await.unwrap().total, 5);

    let tallies = Repository::<Tally, _>::new(store);
    assert_eq!(
        tallies.stream_id("x-1").unwrap(),
        others.stream_id("1").unwrap()
    );
    // Appending is refused by the store (the stream belongs to `tally-x`) ...
    assert!(matches!(
        tallies.execute("x-1", |_| Added { n: 1 }).await,
        Err(ExecuteError::Store(Error::AggregateMismatch { .. }))
    ));
    // ... and reading it as a tally's is refused, naming both types, on
    // every way of reading.
    let stream = others.stream_id("1").unwrap();
    let mismatch = |result: Result<(), Error>| match result {
        Err(Error::AggregateMismatch {
            stream: s,
            requested,
            actual,
        }) => {
            assert_eq!(s, stream);
            assert_eq!((requested.as_str(), actual.as_str()), ("tally", "tally-x"));
        }
        other => panic!("expected an aggregate mismatch, got {other:?}"),
    };
    mismatch(tallies.load("x-1").await.map(drop));
    mismatch(tallies.load_at("x-1", 1).await.map(drop));
    mismatch(tallies.load_as_of("x-1", Timestamp::now()).await.map(drop));
    mismatch(tallies.history("x-1").await.map(drop));
}

// ---------------------------------------------------------------------------
// The audit trail.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn history_keeps_the_metadata_given_to_execute_with() {
    let tallies = Repository::<Tally, _>::new(InMemoryStore::new());
    let correlation = Uuid::now_v7();
    let meta = Metadata::new()
        .actor("agent-7")
        .command("add-twice")
        .reason("customer asked")
        .correlation_id(correlation)
        .with("channel", "phone");
    let done = tallies
        .execute_with("h", meta.clone(), |_| (Added { n: 1 }, Added { n: 2 }))
        .await
        .unwrap();
    tallies.execute("h", |_| Reset).await.unwrap();
    tallies.execute("other", |_| Added { n: 0 }).await.unwrap();

    let history = tallies.history("h").await.unwrap();
    assert_eq!(history.len(), 3);
    let stream = tallies.stream_id("h").unwrap();
    for (i, envelope) in history.iter().enumerate() {
        assert_eq!(envelope.stream_id, stream);
        assert_eq!(&*envelope.aggregate_type, "tally");
        assert_eq!(envelope.version, i as u64 + 1);
        assert_eq!(envelope.position, i as u64 + 1);
        assert_eq!(envelope.schema_version, 1);
    }
    assert_eq!(history[0].metadata, meta);
    assert_eq!(history[1].metadata, meta);
    assert_eq!(history[2].metadata, Metadata::default());
    assert_eq!(history[0].metadata.extra["channel"], "phone");
    assert_eq!(history[0].metadata.correlation_id, Some(correlation));
    assert_eq!(
        history
            .iter()
            .filter_map(|e| e.event.event().cloned())
            .collect::<Vec<_>>(),
        [added(1), added(2), TallyEvent::Reset(Reset)]
    );
    assert_eq!(
        history.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["added", "added", "reset"]
    );
    assert!(
        history
            .windows(2)
            .all(|w| w[0].recorded_at <= w[1].recorded_at)
    );
    assert_ne!(history[0].event_id, history[1].event_id);
    assert_eq!(done.position, Some(history[1].position));

    assert!(tallies.history("nobody").await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// The blocking facade.
// ---------------------------------------------------------------------------

#[test]
fn blocking_round_trip() {
    let store = InMemoryStore::new();
    let tallies = es_core::blocking::Repository::<Tally, _>::new(store.clone())
        .with_retries(1)
        .with_conflict_policy(ConflictPolicy::Rerun);

    let done = tallies.execute("b", |_| Added { n: 2 }).unwrap();
    assert_eq!((done.version, done.attempts), (1, 1));
    let done = tallies
        .execute_with("b", Metadata::new().actor("cli"), |t: &Tally| Added {
            n: t.sums.total * 10,
        })
        .unwrap();
    assert_eq!(done.events, [added(20)]);
    let refused = tallies.execute("b", |_| Err::<Added, _>("no")).unwrap_err();
    assert_eq!(refused.rejection(), Some(&"no"));

    let loaded = tallies.load("b").unwrap();
    assert_eq!((loaded.version, loaded.sums.seen.clone()), (2, vec![2, 20]));
    assert_eq!(tallies.load_at("b", 1).unwrap().sums.seen, [2]);
    let history = tallies.history("b").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].metadata.actor.as_deref(), Some("cli"));
    let before = Timestamp::from_unix_micros(history[0].recorded_at.as_unix_micros() - 1);
    assert_eq!(tallies.load_as_of("b", before).unwrap().version, 0);
    assert_eq!(
        tallies.load_as_of("b", Timestamp::now()).unwrap().version,
        2
    );

    // The same data through the async repository underneath.
    let async_loaded = es_core::blocking::block_on(tallies.as_async().load("b")).unwrap();
    assert_eq!(async_loaded, loaded);
    let other = Repository::<Tally, _>::new(store);
    assert_eq!(
        es_core::blocking::block_on(other.load("b")).unwrap(),
        loaded
    );
}

#[tokio::test]
async fn t11_without_snapshots_none_is_read_or_taken() {
    let probe = Probe::default();
    let with = Repository::<Snappy, _>::new(probe.clone());
    seven_commands(&with).await;
    let truth = with.load("s").await.unwrap();
    let stream = with.stream_id("s").unwrap();
    assert!(probe.inner.load_snapshot(&stream).await.unwrap().is_some());

    let fresh = Probe::default();
    let without = Repository::<Snappy, _>::new(fresh.clone()).with_snapshots(false);
    seven_commands(&without).await;
    assert_eq!(
        fresh.inner.load_snapshot(&stream).await.unwrap(),
        None,
        "no snapshot taken"
    );

    // Reading ignores the stored snapshot and replays every event.
    let reader = Repository::<Snappy, _>::new(probe.clone()).with_snapshots(false);
    probe.forget_reads();
    assert_eq!(reader.load("s").await.unwrap(), truth);
    assert_eq!(probe.events_read(), 7);
}

#[tokio::test]
async fn the_cache_folds_only_what_was_appended_since() {
    let probe = Probe::default();
    let cached = Repository::<Snappy, _>::new(probe.clone())
        .with_snapshots(false)
        .with_cache(10);
    seven_commands(&cached).await;
    let plain = Repository::<Snappy, _>::new(probe.clone()).with_snapshots(false);

    probe.forget_reads();
    let first = cached.load("s").await.unwrap();
    assert_eq!(
        probe.events_read(),
        0,
        "the last command left its state in the cache"
    );
    assert_eq!(first, plain.load("s").await.unwrap());

    // Another writer (another repository, or another process) appends.
    plain.execute("s", |_| Added { n: 100 }).await.unwrap();
    probe.forget_reads();
    let after = cached.load("s").await.unwrap();
    assert_eq!(probe.events_read(), 1, "only the new event is folded");
    assert_eq!(after, plain.load("s").await.unwrap());
    assert_eq!(after.version, 8);

    // A command on a cached aggregate reads nothing before deciding.
    probe.forget_reads();
    let done = cached
        .execute("s", |s: &Snappy| Added { n: s.sums.total })
        .await
        .unwrap();
    assert_eq!(probe.events_read(), 0);
    assert_eq!(done.state, plain.load("s").await.unwrap().state);

    // Reading back in time does not use the cache.
    assert_eq!(
        cached.load_at("s", 2).await.unwrap(),
        plain.load_at("s", 2).await.unwrap()
    );
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_capacity() {
    let probe = Probe::default();
    let cached = Repository::<Snappy, _>::new(probe.clone())
        .with_snapshots(false)
        .with_cache(4);
    for n in 0..20 {
        cached
            .execute(&format!("c{n}"), |_| Added { n: 1 })
            .await
            .unwrap();
        assert!(cached.cached() <= 4, "after c{n}: {}", cached.cached());
    }
    assert_eq!(
        Repository::<Snappy, _>::new(probe.clone()).cached(),
        0,
        "no cache, nothing cached"
    );
    // Never more than its capacity; when full, the least recently used
    // quarter goes.
    assert!(cached.cached() <= 4, "{}", cached.cached());
    assert!(cached.cached() >= 3, "{}", cached.cached());
    // The most recent ones are cached; old ones are folded again, correctly.
    probe.forget_reads();
    assert_eq!(cached.load("c19").await.unwrap().version, 1);
    assert_eq!(probe.events_read(), 0);
    assert_eq!(cached.load("c0").await.unwrap().version, 1);
    assert_eq!(probe.events_read(), 1);
}
