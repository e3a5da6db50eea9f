//! The store conformance suite: what every [`EventStore`] must do.
//!
//! Run it on a store with one line in a test file:
//!
//! ```
//! es_core::store_conformance_tests!(es_core::InMemoryStore::new());
//! ```
//!
//! Each function below is one test; the macro makes a `#[test]` of each,
//! calling the expression once per test for a fresh, empty store. The suite
//! needs no async runtime: it blocks on the store's futures, and runs its
//! concurrent cases on threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use uuid::Uuid;

use crate::checkpoint::CheckpointStore;
use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::{Conflict, Error, Result};
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::shard::{ShardCheckpoints, ShardedStore, encode_position, shard_of};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::{AppendResult, EventStore, Limits, StreamWrite, next};
use crate::time::Timestamp;
use crate::version::{ExpectedVersion, ReadRange};

pub use super::model::{model_check, model_check_in};

/// What the suite needs of a store.
pub trait ConformanceStore: EventStore + SnapshotStore + CheckpointStore + Clone {}
impl<S: EventStore + SnapshotStore + CheckpointStore + Clone> ConformanceStore for S {}

/// Where a store under test keeps its streams and how it numbers
/// positions: one `$all` for an ordinary store ([`Layout::single`]), or
/// the shards of a [`ShardedStore`] ([`Layout::of`]). The cases that name
/// positions, or append to several streams at once, take one (the `_in`
/// functions), so one body checks both; with [`Layout::single`] each is
/// exactly the case of the same name without `_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    shards: usize,
}

impl Layout {
    /// One `$all`: every ordinary store.
    pub fn single() -> Self {
        Layout { shards: 1 }
    }

    /// The layout of `store`.
    pub fn of<S>(store: &ShardedStore<S>) -> Self {
        Layout {
            shards: store.shards().len(),
        }
    }

    /// The number of shards (1: one `$all`).
    pub fn shards(self) -> usize {
        self.shards
    }

    /// The shard of `stream`.
    pub fn shard_of(self, stream: &StreamId) -> usize {
        u32::try_from(self.shards).map_or(0, |n| shard_of(stream, n) as usize)
    }

    /// `base` when it is in the shard of `with` (always, with one shard),
    /// else the first of `base-1`, `base-2`, ... that is: a stream to
    /// append to atomically with `with`.
    pub fn beside(self, with: &StreamId, base: &str) -> StreamId {
        find_stream(base, |s| self.shard_of(s) == self.shard_of(with))
    }

    /// The first of `base`, `base-1`, `base-2`, ... that is in a shard
    /// other than `with`'s; `None` with one shard.
    pub fn apart(self, with: &StreamId, base: &str) -> Option<StreamId> {
        (self.shards > 1).then(|| find_stream(base, |s| self.shard_of(s) != self.shard_of(with)))
    }

    fn tally(self) -> Tally {
        Tally {
            layout: self,
            counts: vec![0; self.shards],
            positions: Vec::new(),
        }
    }
}

/// The first of `base`, `base-1`, `base-2`, ... that `fits`.
fn find_stream(base: &str, fits: impl Fn(&StreamId) -> bool) -> StreamId {
    let first = stream(base);
    if fits(&first) {
        return first;
    }
    (1..1_000_000u32)
        .map(|n| stream(&format!("{base}-{n}")))
        .find(|s| fits(s))
        .expect("some suffix lands in any shard")
}

/// The positions a store of one layout gives the events appended so far,
/// as a case expects them.
struct Tally {
    layout: Layout,
    /// Events per shard.
    counts: Vec<u64>,
    /// Every position given, in append order.
    positions: Vec<u64>,
}

impl Tally {
    /// The positions of `n` events appended to `stream`.
    fn append(&mut self, stream: &StreamId, n: u64) -> Vec<u64> {
        let shard = self.layout.shard_of(stream);
        let given: Vec<u64> = (0..n)
            .map(|_| {
                self.counts[shard] += 1;
                encode_position(shard, self.counts[shard], self.layout.shards)
                    .expect("test positions are small")
            })
            .collect();
        self.positions.extend(&given);
        given
    }

    /// The store's last position.
    fn last(&self) -> u64 {
        self.positions.iter().copied().max().unwrap_or(0)
    }

    /// The positions `read_all(from)` reads, in order.
    fn from(&self, from: u64) -> Vec<u64> {
        let mut positions: Vec<u64> = self
            .positions
            .iter()
            .copied()
            .filter(|&p| p >= from)
            .collect();
        positions.sort_unstable();
        positions
    }
}

/// Makes one `#[test]` per conformance case for the store built by `$make`.
///
/// `$make` is evaluated once per test and must give a fresh, empty store with
/// default [`Limits`].
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            append_and_read_back, expected_version_cases, conflict_writes_nothing,
            positions_are_gapless_and_ordered, read_stream_ranges, read_all_from_position,
            missing_stream_reads_empty, repeat_append_is_idempotent, idempotency_matrix,
            duplicate_event_id_elsewhere, duplicate_id_within_one_append, empty_append_checks_version,
            limits_are_enforced, invalid_events_are_refused, aggregate_type_mismatch,
            multi_stream_append_is_atomic, multi_stream_append_reports_the_first_refusal,
            concurrent_appends_one_winner_per_version,
            concurrent_appends_lose_no_update, hostile_stream_ids_round_trip, metadata_round_trips,
            snapshots_keep_the_latest, checkpoints_round_trip, watch_wakes_on_commit,
            extreme_expected_versions_are_conflicts, two_times_round_trip,
            event_types_count_what_is_stored, find_event_by_id, read_correlated_events,
        );
        #[test]
        fn conformance_model_check() {
            $crate::testing::conformance::model_check(|| $make);
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::conformance::$case($make);
            }
        )*
    };
}

/// Makes one `#[test]` per conformance case for the
/// [`ShardedStore`](crate::ShardedStore) built by `$make`: every case of
/// [`store_conformance_tests!`](crate::store_conformance_tests) on the
/// store's [`Layout`] (with one shard, each exactly as for any store), and
/// the cases of sharding: positions gapless per shard, `read_all` the
/// merge of the shards, appends across shards refused, concurrent appends
/// across shards, the merged feed resumed exactly once, per-shard
/// checkpoints, watches woken through a shard.
///
/// `$make` is evaluated once per test (and once more for the layout of the
/// model check) and must give a fresh `ShardedStore` of empty shards with
/// default [`Limits`], always of the same number of shards:
///
/// ```
/// use es_core::{InMemoryStore, ShardedStore};
///
/// es_core::sharded_store_conformance_tests!(
///     ShardedStore::new(vec![InMemoryStore::new(), InMemoryStore::new()]).expect("two shards")
/// );
/// ```
#[macro_export]
macro_rules! sharded_store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            expected_version_cases, read_stream_ranges, missing_stream_reads_empty,
            repeat_append_is_idempotent, idempotency_matrix, duplicate_id_within_one_append,
            limits_are_enforced, invalid_events_are_refused, aggregate_type_mismatch,
            concurrent_appends_lose_no_update, hostile_stream_ids_round_trip, metadata_round_trips,
            snapshots_keep_the_latest, checkpoints_round_trip,
            extreme_expected_versions_are_conflicts, two_times_round_trip,
            event_types_count_what_is_stored,
            streams_live_in_their_shard, positions_are_gapless_per_shard,
            read_all_is_the_merge_of_the_shards, cross_shard_appends_are_refused,
            concurrent_appends_across_shards, every_shard_is_read, feed_resumes_exactly_once,
            shard_checkpoints_round_trip, watch_wakes_on_a_commit_through_a_shard,
        );
        $crate::sharded_store_conformance_tests!(@layout $make;
            append_and_read_back => append_and_read_back_in,
            conflict_writes_nothing => conflict_writes_nothing_in,
            positions_are_gapless_and_ordered => positions_are_gapless_and_ordered_in,
            read_all_from_position => read_all_from_position_in,
            duplicate_event_id_elsewhere => duplicate_event_id_elsewhere_in,
            empty_append_checks_version => empty_append_checks_version_in,
            multi_stream_append_is_atomic => multi_stream_append_is_atomic_in,
            multi_stream_append_reports_the_first_refusal
                => multi_stream_append_reports_the_first_refusal_in,
            concurrent_appends_one_winner_per_version
                => concurrent_appends_one_winner_per_version_in,
            find_event_by_id => find_event_by_id_in,
            read_correlated_events => read_correlated_events_in,
            watch_wakes_on_commit => watch_wakes_on_commit_in,
        );
        #[test]
        fn conformance_model_check() {
            let layout = $crate::testing::conformance::Layout::of(&$make);
            $crate::testing::conformance::model_check_in(layout, || $make);
        }
    };
    (@layout $make:expr; $($case:ident => $with_layout:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let store = $make;
                let layout = $crate::testing::conformance::Layout::of(&store);
                $crate::testing::conformance::$with_layout(layout, store);
            }
        )*
    };
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("test stream ids are valid")
}

/// An event of aggregate `test` named `name`, payload `{"n":n}`.
pub fn event(name: &str, n: u64) -> NewEvent {
    NewEvent::new("test", name.to_owned(), 1, format!(r#"{{"n":{n}}}"#))
}

fn events(count: u64) -> Vec<NewEvent> {
    (0..count).map(|n| event("happened", n)).collect()
}

fn read(store: &impl EventStore, s: &StreamId, range: impl Into<ReadRange>) -> Vec<RecordedEvent> {
    block(async {
        let mut out = Vec::new();
        let mut events = store.read_stream(s, range.into());
        while let Some(e) = next(&mut events).await {
            out.push(e.expect("reading a stream succeeds"));
        }
        out
    })
}

fn read_all(store: &impl EventStore, from: u64) -> Vec<RecordedEvent> {
    block(async {
        let mut out = Vec::new();
        let mut events = store.read_all(from);
        while let Some(e) = next(&mut events).await {
            out.push(e.expect("reading $all succeeds"));
        }
        out
    })
}

fn append(
    store: &impl EventStore,
    s: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult> {
    block(store.append(s, expected, events))
}

fn version(store: &impl EventStore, s: &StreamId) -> u64 {
    block(store.stream_version(s)).expect("stream_version succeeds")
}

fn last_position(store: &impl EventStore) -> u64 {
    block(store.last_position()).expect("last_position succeeds")
}

#[track_caller]
fn assert_conflict(
    result: Result<AppendResult>,
    s: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(Error::Conflict(c)) => assert_eq!(
            c,
            Conflict {
                stream: s.clone(),
                expected,
                actual
            }
        ),
        other => {
            panic!("expected a conflict (expected {expected}, actual {actual}), got {other:?}")
        }
    }
}

/// Appended events read back with every field as written, versions from 1,
/// positions from 1, recorded-at between the call's start and end.
pub fn append_and_read_back<S: ConformanceStore>(store: S) {
    append_and_read_back_in(Layout::single(), store);
}

/// [`append_and_read_back`] on a store of `layout`.
pub fn append_and_read_back_in<S: ConformanceStore>(layout: Layout, store: S) {
    let s = stream("order-1");
    let written: Vec<NewEvent> = (0..3)
        .map(|n| event("order-placed", n).with_metadata(Metadata::new().actor("ada")))
        .collect();
    let mut tally = layout.tally();
    let positions = tally.append(&s, 3);
    let before = Timestamp::now();
    let result =
        append(&store, &s, ExpectedVersion::NoStream, written.clone()).expect("append succeeds");
    let after = Timestamp::now();
    assert_eq!(
        result,
        AppendResult {
            stream_id: s.clone(),
            version: 3,
            first_position: positions.first().copied(),
            last_position: positions.last().copied(),
            repeated: false
        }
    );
    let stored = read(&store, &s, ..);
    assert_eq!(stored.len(), 3);
    for (i, (got, want)) in stored.iter().zip(&written).enumerate() {
        let n = i as u64 + 1;
        assert_eq!(got.stream_id, s);
        assert_eq!(&*got.aggregate_type, "test");
        assert_eq!((got.version, got.position), (n, positions[i]));
        assert_eq!(got.event_id, want.event_id);
        assert_eq!(got.name, want.name);
        assert_eq!(got.schema_version, want.schema_version);
        assert_eq!(got.event, want.payload, "payload bytes are stored exactly");
        assert_eq!(got.metadata, want.metadata);
        assert!(
            before <= got.recorded_at && got.recorded_at <= after,
            "recorded_at is the append's time"
        );
    }
    assert_eq!(version(&store, &s), 3);
    assert_eq!(last_position(&store), tally.last());
}

/// Every [`ExpectedVersion`] against a missing and an existing stream.
pub fn expected_version_cases<S: ConformanceStore>(store: S) {
    use ExpectedVersion::{Any, Exact, NoStream, StreamExists};
    let s = stream("case-1");
    assert_conflict(
        append(&store, &s, StreamExists, events(1)),
        &s,
        StreamExists,
        0,
    );
    assert_conflict(append(&store, &s, Exact(1), events(1)), &s, Exact(1), 0);
    assert_eq!(
        append(&store, &s, Exact(0), events(1))
            .expect("Exact(0) creates")
            .version,
        1
    );
    assert_conflict(append(&store, &s, NoStream, events(1)), &s, NoStream, 1);
    assert_conflict(append(&store, &s, Exact(0), events(1)), &s, Exact(0), 1);
    assert_conflict(append(&store, &s, Exact(2), events(1)), &s, Exact(2), 1);
    assert_eq!(
        append(&store, &s, Exact(1), events(2))
            .expect("Exact(1) appends")
            .version,
        3
    );
    assert_eq!(
        append(&store, &s, StreamExists, events(1))
            .expect("exists")
            .version,
        4
    );
    assert_eq!(append(&store, &s, Any, events(1)).expect("any").version, 5);
    let fresh = stream("case-2");
    assert_eq!(
        append(&store, &fresh, Any, events(2))
            .expect("any creates")
            .version,
        2
    );
    let new = stream("case-3");
    assert_eq!(
        append(&store, &new, NoStream, events(1))
            .expect("no stream creates")
            .version,
        1
    );
}

/// A conflicting append changes nothing: versions and positions stay.
pub fn conflict_writes_nothing<S: ConformanceStore>(store: S) {
    conflict_writes_nothing_in(Layout::single(), store);
}

/// [`conflict_writes_nothing`] on a store of `layout`.
pub fn conflict_writes_nothing_in<S: ConformanceStore>(layout: Layout, store: S) {
    let s = stream("c-1");
    let mut tally = layout.tally();
    tally.append(&s, 2);
    append(&store, &s, ExpectedVersion::NoStream, events(2)).expect("append");
    let before = (
        version(&store, &s),
        last_position(&store),
        read_all(&store, 0),
    );
    assert!(append(&store, &s, ExpectedVersion::Exact(1), events(3)).is_err());
    assert_eq!(
        (
            version(&store, &s),
            last_position(&store),
            read_all(&store, 0)
        ),
        before
    );
    // The next successful append takes the next position: no gap.
    let ok = append(&store, &s, ExpectedVersion::Exact(2), events(1)).expect("append");
    assert_eq!(ok.first_position, tally.append(&s, 1).first().copied());
}

/// Interleaved appends to several streams: per-stream versions contiguous
/// from 1, `$all` positions 1, 2, 3, ... in append order.
pub fn positions_are_gapless_and_ordered<S: ConformanceStore>(store: S) {
    positions_are_gapless_and_ordered_in(Layout::single(), store);
}

/// [`positions_are_gapless_and_ordered`] on a store of `layout`.
pub fn positions_are_gapless_and_ordered_in<S: ConformanceStore>(layout: Layout, store: S) {
    let streams: Vec<StreamId> = (0..3).map(|i| stream(&format!("s-{i}"))).collect();
    let mut tally = layout.tally();
    let mut expected = Vec::new();
    for round in 0..4u64 {
        for s in &streams {
            let batch = events(round % 3 + 1);
            let positions = tally.append(s, batch.len() as u64);
            expected.extend(positions.into_iter().zip(batch.iter().map(|e| e.event_id)));
            append(&store, s, ExpectedVersion::Any, batch).expect("append");
        }
    }
    // In position order: with one `$all`, the order of the appends.
    expected.sort_unstable();
    let all = read_all(&store, 0);
    assert_eq!(
        all.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        expected.iter().map(|(_, id)| *id).collect::<Vec<_>>()
    );
    for (e, (position, _)) in all.iter().zip(&expected) {
        assert_eq!(e.position, *position, "positions are gapless and ordered");
    }
    for s in &streams {
        let versions: Vec<u64> = read(&store, s, ..).iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
}

/// `read_stream` honours every range form.
pub fn read_stream_ranges<S: ConformanceStore>(store: S) {
    let s = stream("r-1");
    append(&store, &s, ExpectedVersion::NoStream, events(10)).expect("append");
    let versions = |r: ReadRange| {
        read(&store, &s, r)
            .iter()
            .map(|e| e.version)
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(ReadRange::all()), (1..=10).collect::<Vec<_>>());
    assert_eq!(versions((3..).into()), (3..=10).collect::<Vec<_>>());
    assert_eq!(versions((..=4).into()), (1..=4).collect::<Vec<_>>());
    assert_eq!(versions((3..=5).into()), vec![3, 4, 5]);
    assert_eq!(versions((0..).into()), (1..=10).collect::<Vec<_>>());
    assert_eq!(versions((11..).into()), Vec::<u64>::new());
    assert_eq!(
        versions(ReadRange {
            start: 5,
            end: Some(4)
        }),
        Vec::<u64>::new()
    );
    assert_eq!(versions((10..=u64::MAX).into()), vec![10]);
}

/// `read_all(from)` starts at `from`, inclusive.
pub fn read_all_from_position<S: ConformanceStore>(store: S) {
    read_all_from_position_in(Layout::single(), store);
}

/// [`read_all_from_position`] on a store of `layout`.
pub fn read_all_from_position_in<S: ConformanceStore>(layout: Layout, store: S) {
    let mut tally = layout.tally();
    tally.append(&stream("a"), 3);
    tally.append(&stream("b"), 3);
    append(&store, &stream("a"), ExpectedVersion::Any, events(3)).expect("append");
    append(&store, &stream("b"), ExpectedVersion::Any, events(3)).expect("append");
    let positions = |from| {
        read_all(&store, from)
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>()
    };
    // With one `$all`: 1..=6 from 0 and from 1, 4, 5, 6 from 4, none from 7.
    for from in 0..=tally.last() + 1 {
        assert_eq!(positions(from), tally.from(from), "read_all({from})");
    }
    assert_eq!(positions(u64::MAX), Vec::<u64>::new());
}

/// A stream never written reads empty, at version 0.
pub fn missing_stream_reads_empty<S: ConformanceStore>(store: S) {
    let s = stream("nobody");
    assert!(read(&store, &s, ..).is_empty());
    assert_eq!(version(&store, &s), 0);
    assert_eq!(last_position(&store), 0);
    assert!(read_all(&store, 0).is_empty());
}

/// Sending the same append again returns the original result and writes
/// nothing, for every expected-version kind.
pub fn repeat_append_is_idempotent<S: ConformanceStore>(store: S) {
    for (i, expected) in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
    ]
    .into_iter()
    .enumerate()
    {
        let s = stream(&format!("idem-{i}"));
        if expected == ExpectedVersion::StreamExists {
            append(&store, &s, ExpectedVersion::NoStream, events(1)).expect("create");
        }
        let batch = events(3);
        let first = append(&store, &s, expected, batch.clone()).expect("first append");
        let count = read_all(&store, 0).len();
        let again = append(&store, &s, expected, batch.clone()).expect("repeat succeeds");
        assert_eq!(
            again,
            AppendResult {
                repeated: true,
                ..first.clone()
            },
            "{expected:?}"
        );
        assert_eq!(
            read_all(&store, 0).len(),
            count,
            "a repeat writes nothing ({expected:?})"
        );
        // A suffix of the original append repeats too.
        let tail =
            append(&store, &s, ExpectedVersion::Any, batch[1..].to_vec()).expect("suffix repeat");
        assert!(tail.repeated);
        assert_eq!(tail.version, first.version);
    }
}

/// The outcome of one step of [`idempotency_matrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    Repeated,
    Conflict,
    Duplicate,
}

/// RELIABILITY T16: KurrentDB's append sequences
/// (`appending_to_implicitly_created_stream.cs`) with our documented outcomes.
///
/// Notation as in KurrentDB: `3e2` appends event 3 expecting revision 2
/// (our `Exact(3)`, versions being 1-based), `em1` expects no stream, `any`
/// expects any; `S..E` is one multi-event append. Where KurrentDB writes a
/// second copy of an event id, we cannot (ids are unique in the store) and
/// answer `DuplicateEvent`: those rows say so.
pub fn idempotency_matrix<S: ConformanceStore>(store: S) {
    type Step = (&'static [usize], ExpectedVersion, Outcome);
    use ExpectedVersion::{Any, Exact, NoStream};
    use Outcome::{Conflict as Wev, Duplicate, Repeated, Written};
    let six = [
        (0, NoStream),
        (1, Exact(1)),
        (2, Exact(2)),
        (3, Exact(3)),
        (4, Exact(4)),
        (5, Exact(5)),
    ];
    let six_written: Vec<Step> = six
        .iter()
        .map(|&(i, e)| (&[0usize, 1, 2, 3, 4, 5][i..=i], e, Written))
        .collect();
    let with = |tail: Step| {
        six_written
            .iter()
            .copied()
            .chain([tail])
            .collect::<Vec<Step>>()
    };
    let sequences: Vec<(&str, Vec<Step>)> = vec![
        (
            "0em1_1e0_2e1_3e2_4e3_5e4_0em1_idempotent",
            with((&[0], NoStream, Repeated)),
        ),
        (
            "0em1_1e0_2e1_3e2_4e3_4e4_0any_idempotent",
            with((&[0], Any, Repeated)),
        ),
        // KurrentDB writes a second e0 here.
        (
            "0em1_1e0_2e1_3e2_4e3_5e4_0e5_non_idempotent",
            with((&[0], Exact(6), Duplicate)),
        ),
        (
            "0em1_1e0_2e1_3e2_4e3_5e4_0e6_wev",
            with((&[0], Exact(7), Wev)),
        ),
        (
            "0em1_1e0_2e1_3e2_4e3_5e4_0e4_wev",
            with((&[0], Exact(5), Wev)),
        ),
        (
            "0em1_1e0_2e1_3e2_4e3_5e4_5e4_idempotent",
            with((&[5], Exact(5), Repeated)),
        ),
        (
            "0em1_0e0_non_idempotent",
            vec![(&[0], NoStream, Written), (&[0], Exact(1), Duplicate)],
        ),
        (
            "0em1_0any_idempotent",
            vec![(&[0], NoStream, Written), (&[0], Any, Repeated)],
        ),
        (
            "0em1_0em1_idempotent",
            vec![(&[0], NoStream, Written), (&[0], NoStream, Repeated)],
        ),
        (
            "0em1_1e0_2e1_1any_1any_idempotent",
            vec![
                (&[0], NoStream, Written),
                (&[1], Exact(1), Written),
                (&[2], Exact(2), Written),
                (&[1], Any, Repeated),
                (&[1], Any, Repeated),
            ],
        ),
        (
            "S_0em1_1em1_E_S_0em1_E_idempotent",
            vec![(&[0, 1], NoStream, Written), (&[0], NoStream, Repeated)],
        ),
        (
            "S_0em1_1em1_E_S_0any_E_idempotent",
            vec![(&[0, 1], NoStream, Written), (&[0], Any, Repeated)],
        ),
        (
            "S_0em1_1em1_E_S_1e0_E_idempotent",
            vec![(&[0, 1], NoStream, Written), (&[1], Exact(1), Repeated)],
        ),
        (
            "S_0em1_1em1_E_S_1any_E_idempotent",
            vec![(&[0, 1], NoStream, Written), (&[1], Any, Repeated)],
        ),
        (
            "S_0em1_1em1_E_S_0em1_1em1_2em1_E_idempotancy_fail",
            vec![
                (&[0, 1], NoStream, Written),
                (&[0, 1, 2], NoStream, Duplicate),
            ],
        ),
        (
            "S_0em1_1em1_E_S_1em1_0em1_E_out_of_order",
            vec![(&[0, 1], NoStream, Written), (&[1, 0], NoStream, Wev)],
        ),
    ];
    for (n, (name, steps)) in sequences.into_iter().enumerate() {
        let s = stream(&format!("t16-{n}"));
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        for (step, (which, expected, want)) in steps.into_iter().enumerate() {
            let batch: Vec<NewEvent> = which
                .iter()
                .map(|&i| event("e", i as u64).with_id(ids[i]))
                .collect();
            let before = read_all(&store, 0).len();
            let got = match append(&store, &s, expected, batch) {
                Ok(r) if r.repeated => Repeated,
                Ok(_) => Written,
                Err(Error::Conflict(_)) => Wev,
                Err(Error::DuplicateEvent { .. }) => Duplicate,
                Err(e) => panic!("{name} step {step}: unexpected error {e}"),
            };
            assert_eq!(got, want, "T16 {name}, step {step}");
            if want != Written {
                assert_eq!(
                    read_all(&store, 0).len(),
                    before,
                    "{name} step {step} wrote nothing"
                );
            }
        }
    }
}

/// An id stored in one stream cannot be appended to another.
pub fn duplicate_event_id_elsewhere<S: ConformanceStore>(store: S) {
    duplicate_event_id_elsewhere_in(Layout::single(), store);
}

/// [`duplicate_event_id_elsewhere`] on a store of `layout`.
pub fn duplicate_event_id_elsewhere_in<S: ConformanceStore>(layout: Layout, store: S) {
    // Event ids are unique per shard: "two" is in the shard of "one".
    let two = layout.beside(&stream("one"), "two");
    let e = event("x", 1);
    append(
        &store,
        &stream("one"),
        ExpectedVersion::Any,
        vec![e.clone()],
    )
    .expect("append");
    match append(&store, &two, ExpectedVersion::Any, vec![e.clone()]) {
        Err(Error::DuplicateEvent {
            event_id,
            stream: s,
            version,
        }) => {
            assert_eq!((event_id, s, version), (e.event_id, stream("one"), 1));
        }
        other => panic!("expected DuplicateEvent, got {other:?}"),
    }
    // Mixed: one new id plus one stored id.
    let mixed = vec![event("x", 2), e];
    assert!(matches!(
        append(&store, &stream("one"), ExpectedVersion::Any, mixed),
        Err(Error::DuplicateEvent { .. })
    ));
    assert_eq!(version(&store, &two), 0);
    assert_eq!(version(&store, &stream("one")), 1);
}

/// One append holding one id twice is refused.
pub fn duplicate_id_within_one_append<S: ConformanceStore>(store: S) {
    let e = event("x", 1);
    let result = append(
        &store,
        &stream("d"),
        ExpectedVersion::Any,
        vec![e.clone(), e],
    );
    assert!(
        matches!(result, Err(Error::InvalidEvent { .. })),
        "{result:?}"
    );
    assert_eq!(last_position(&store), 0);
}

/// An empty append checks the version and writes nothing.
pub fn empty_append_checks_version<S: ConformanceStore>(store: S) {
    empty_append_checks_version_in(Layout::single(), store);
}

/// [`empty_append_checks_version`] on a store of `layout`.
pub fn empty_append_checks_version_in<S: ConformanceStore>(layout: Layout, store: S) {
    let s = stream("empty");
    let r =
        append(&store, &s, ExpectedVersion::NoStream, vec![]).expect("empty append on no stream");
    assert_eq!((r.version, r.first_position, r.repeated), (0, None, false));
    assert_eq!(version(&store, &s), 0);
    assert_conflict(
        append(&store, &s, ExpectedVersion::Exact(5), vec![]),
        &s,
        ExpectedVersion::Exact(5),
        0,
    );
    append(&store, &s, ExpectedVersion::NoStream, events(2)).expect("append");
    let mut tally = layout.tally();
    tally.append(&s, 2);
    let r = append(&store, &s, ExpectedVersion::Exact(2), vec![]).expect("empty append at version");
    assert_eq!((r.version, r.last_position), (2, None));
    assert_eq!(last_position(&store), tally.last());
    let multi = block(store.append_to_streams(vec![])).expect("no writes at all");
    assert!(multi.is_empty());
}

/// RELIABILITY S2: inputs at the default limits pass, one past fails with
/// [`Error::Limit`], and nothing is written.
pub fn limits_are_enforced<S: ConformanceStore>(store: S) {
    let limits = Limits::default();
    let s = stream("big");
    let json_of_len = |len: usize| format!("\"{}\"", "x".repeat(len - 2));
    let at_limit = NewEvent::new("test", "big", 1, json_of_len(limits.max_payload_bytes));
    append(&store, &s, ExpectedVersion::Any, vec![at_limit])
        .expect("payload at the limit is accepted");
    let over = NewEvent::new("test", "big", 1, json_of_len(limits.max_payload_bytes + 1));
    assert!(matches!(
        append(&store, &s, ExpectedVersion::Any, vec![over]),
        Err(Error::Limit(_))
    ));
    let many = events(limits.max_events_per_append as u64 + 1);
    assert!(matches!(
        append(&store, &s, ExpectedVersion::Any, many),
        Err(Error::Limit(_))
    ));
    append(
        &store,
        &s,
        ExpectedVersion::Any,
        events(limits.max_events_per_append as u64),
    )
    .expect("events at the limit are accepted");
    let big_meta = Metadata::new().reason("r".repeat(limits.max_metadata_bytes));
    let meta_over = event("m", 0).with_metadata(big_meta);
    assert!(matches!(
        append(&store, &s, ExpectedVersion::Any, vec![meta_over]),
        Err(Error::Limit(_))
    ));
    let long_name = "n".repeat(crate::name::MAX_NAME_LEN);
    let named = NewEvent::new("test", long_name.clone(), 1, "{}");
    append(&store, &s, ExpectedVersion::Any, vec![named]).expect("a name at the limit");
    let named = NewEvent::new("test", long_name + "n", 1, "{}");
    assert!(matches!(
        append(&store, &s, ExpectedVersion::Any, vec![named]),
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(version(&store, &s), 2 + limits.max_events_per_append as u64);
}

/// Caller-supplied numbers at their extremes (`Exact(u64::MAX)`, with and
/// without event ids already stored) are conflicts, never an overflow: the
/// store goes on working (in a debug build an overflow would panic).
pub fn extreme_expected_versions_are_conflicts<S: ConformanceStore>(store: S) {
    let s = stream("extreme");
    let stored = event("x", 0);
    append(&store, &s, ExpectedVersion::NoStream, vec![stored.clone()]).expect("append");
    for expected in [u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MAX as u64 + 1] {
        for events in [
            vec![stored.clone()],
            vec![event("x", 1)],
            vec![stored.clone(), event("x", 2)],
        ] {
            let result = append(&store, &s, ExpectedVersion::Exact(expected), events);
            assert!(
                matches!(&result, Err(Error::Conflict(c)) if c.actual == 1 || c.actual == 0)
                    || matches!(result, Err(Error::DuplicateEvent { .. })),
                "Exact({expected}): {result:?}"
            );
        }
    }
    let range = ReadRange {
        start: u64::MAX,
        end: Some(u64::MAX),
    };
    assert!(read(&store, &s, range).is_empty());
    assert_eq!(read(&store, &s, ReadRange::starting_at(u64::MAX)).len(), 0);
    assert_eq!(read_all(&store, u64::MAX).len(), 0);
    // Still working.
    append(&store, &s, ExpectedVersion::Exact(1), vec![event("x", 3)]).expect("append after");
    assert_eq!(version(&store, &s), 2);
}

/// Malformed events are refused whole, with typed errors: names that break
/// the [name rule](crate::name), and one stream write mixing aggregate types.
pub fn invalid_events_are_refused<S: ConformanceStore>(store: S) {
    use crate::name::NameError;
    let s = stream("bad");
    let names = [
        (NewEvent::new("test", "", 1, "{}"), NameError::Empty),
        (
            NewEvent::new("test", "a\0b", 1, "{}"),
            NameError::InvalidCharacter { at: 1 },
        ),
        (
            NewEvent::new("test", "ticket opened", 1, "{}"),
            NameError::InvalidCharacter { at: 6 },
        ),
        (NewEvent::new("", "ok", 1, "{}"), NameError::Empty),
        (
            NewEvent::new("1test", "ok", 1, "{}"),
            NameError::InvalidStart,
        ),
    ];
    for (event, expected) in names {
        let result = append(&store, &s, ExpectedVersion::Any, vec![event.clone()]);
        assert!(
            matches!(result, Err(Error::InvalidName { reason, .. }) if reason == expected),
            "{event:?} gave {result:?}"
        );
    }
    let mixed = vec![event("ok", 1), NewEvent::new("other", "ok", 1, "{}")];
    let result = append(&store, &s, ExpectedVersion::Any, mixed);
    assert!(
        matches!(result, Err(Error::InvalidEvent { .. })),
        "{result:?}"
    );
    assert_eq!(last_position(&store), 0);
}

/// A stream keeps the aggregate type it was created with.
pub fn aggregate_type_mismatch<S: ConformanceStore>(store: S) {
    let s = stream("typed");
    append(&store, &s, ExpectedVersion::Any, events(1)).expect("append");
    let other = NewEvent::new("other", "x", 1, "{}");
    match append(&store, &s, ExpectedVersion::Any, vec![other]) {
        Err(Error::AggregateMismatch {
            requested, actual, ..
        }) => {
            assert_eq!((requested.as_str(), actual.as_str()), ("other", "test"));
        }
        result => panic!("expected AggregateMismatch, got {result:?}"),
    }
}

/// Several streams in one append: all written, or none.
pub fn multi_stream_append_is_atomic<S: ConformanceStore>(store: S) {
    multi_stream_append_is_atomic_in(Layout::single(), store);
}

/// [`multi_stream_append_is_atomic`] on a store of `layout`.
pub fn multi_stream_append_is_atomic_in<S: ConformanceStore>(layout: Layout, store: S) {
    let a = stream("multi-a");
    let b = layout.beside(&a, "multi-b");
    let mut tally = layout.tally();
    let in_a = tally.append(&a, 2);
    let in_b = tally.append(&b, 1);
    let both = vec![
        StreamWrite::new(a.clone(), ExpectedVersion::NoStream, events(2)),
        StreamWrite::new(b.clone(), ExpectedVersion::NoStream, events(1)),
    ];
    let results = block(store.append_to_streams(both)).expect("both streams");
    assert_eq!(results.len(), 2);
    assert_eq!(
        (
            results[0].version,
            results[0].first_position,
            results[0].last_position
        ),
        (2, in_a.first().copied(), in_a.last().copied())
    );
    assert_eq!(
        (results[1].version, results[1].first_position),
        (1, in_b.first().copied())
    );
    let one_stale = vec![
        StreamWrite::new(a.clone(), ExpectedVersion::Exact(2), events(1)),
        StreamWrite::new(b.clone(), ExpectedVersion::Exact(0), events(1)),
    ];
    match block(store.append_to_streams(one_stale)) {
        Err(Error::Conflict(c)) => assert_eq!((c.stream, c.actual), (b.clone(), 1)),
        other => panic!("expected a conflict on the second stream, got {other:?}"),
    }
    assert_eq!(
        (
            version(&store, &a),
            version(&store, &b),
            last_position(&store)
        ),
        (2, 1, tally.last())
    );
    let twice = vec![
        StreamWrite::new(a.clone(), ExpectedVersion::Any, events(1)),
        StreamWrite::new(a.clone(), ExpectedVersion::Any, events(1)),
    ];
    assert!(matches!(
        block(store.append_to_streams(twice)),
        Err(Error::InvalidEvent { .. })
    ));
    assert_eq!(last_position(&store), tally.last());
}

/// When several writes of one append are refused, the answer is the first
/// refusal in the order the writes are given, whatever each one is refused
/// for (found by the T12 model test: a store that decides a write whose
/// version holds without looking its ids up reported a later write's
/// conflict instead of an earlier write's duplicate id).
pub fn multi_stream_append_reports_the_first_refusal<S: ConformanceStore>(store: S) {
    multi_stream_append_reports_the_first_refusal_in(Layout::single(), store);
}

/// [`multi_stream_append_reports_the_first_refusal`] on a store of `layout`.
pub fn multi_stream_append_reports_the_first_refusal_in<S: ConformanceStore>(
    layout: Layout,
    store: S,
) {
    let a = stream("first-refusal-a");
    let b = layout.beside(&a, "first-refusal-b");
    let mut tally = layout.tally();
    tally.append(&a, 1);
    let stored = event("e", 1);
    append(&store, &a, ExpectedVersion::NoStream, vec![stored.clone()]).expect("stored");
    let reused = || vec![stored.clone(), event("e", 2)];
    let stale = || events(1);
    let duplicate_first = vec![
        StreamWrite::new(a.clone(), ExpectedVersion::Any, reused()),
        StreamWrite::new(b.clone(), ExpectedVersion::Exact(5), stale()),
    ];
    match block(store.append_to_streams(duplicate_first)) {
        Err(Error::DuplicateEvent {
            event_id,
            stream,
            version,
        }) => assert_eq!((event_id, stream, version), (stored.event_id, a.clone(), 1)),
        other => panic!("expected the first write's duplicate id, got {other:?}"),
    }
    let conflict_first = vec![
        StreamWrite::new(b.clone(), ExpectedVersion::Exact(5), stale()),
        StreamWrite::new(a.clone(), ExpectedVersion::Any, reused()),
    ];
    assert_conflict(
        block(store.append_to_streams(conflict_first)).map(|mut results| results.remove(0)),
        &b,
        ExpectedVersion::Exact(5),
        0,
    );
    assert_eq!((version(&store, &a), version(&store, &b)), (1, 0));
    assert_eq!(
        last_position(&store),
        tally.last(),
        "nothing of either was written"
    );
}

/// RELIABILITY T3b in process: writers released together at one expected
/// version; exactly one wins each round, and losers consume no position.
pub fn concurrent_appends_one_winner_per_version<S: ConformanceStore>(store: S) {
    concurrent_appends_one_winner_per_version_in(Layout::single(), store);
}

/// [`concurrent_appends_one_winner_per_version`] on a store of `layout`.
pub fn concurrent_appends_one_winner_per_version_in<S: ConformanceStore>(layout: Layout, store: S) {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 25;
    let s = stream("race");
    let barrier = Arc::new(Barrier::new(WRITERS));
    let wins: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, s, barrier) = (store.clone(), s.clone(), barrier.clone());
                scope.spawn(move || {
                    let mut won = Vec::new();
                    for round in 0..ROUNDS {
                        barrier.wait();
                        match append(&store, &s, ExpectedVersion::Exact(round), events(1)) {
                            Ok(r) => won.push(r.version),
                            Err(Error::Conflict(c)) => assert_eq!(c.actual, round + 1),
                            Err(e) => panic!("unexpected error in a race: {e}"),
                        }
                        barrier.wait();
                    }
                    won
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let mut all_wins: Vec<u64> = wins.into_iter().flatten().collect();
    all_wins.sort_unstable();
    assert_eq!(
        all_wins,
        (1..=ROUNDS).collect::<Vec<_>>(),
        "exactly one winner per round"
    );
    let mut tally = layout.tally();
    tally.append(&s, ROUNDS);
    assert_eq!(
        last_position(&store),
        tally.last(),
        "losers consumed no position"
    );
}

/// Reads the version of `s` and appends one event `name` `n` at exactly
/// it, again after each conflict, until it lands; its id.
fn append_retrying(store: &impl EventStore, s: &StreamId, name: &str, n: u64) -> Uuid {
    loop {
        let v = version(store, s);
        let e = event(name, n);
        match append(store, s, ExpectedVersion::Exact(v), vec![e.clone()]) {
            Ok(_) => return e.event_id,
            Err(Error::Conflict(_)) => {}
            Err(err) => panic!("unexpected error: {err}"),
        }
    }
}

/// RELIABILITY T3 in process: writers read the version and append, retrying
/// on conflict; every increment lands exactly once.
pub fn concurrent_appends_lose_no_update<S: ConformanceStore>(store: S) {
    const WRITERS: usize = 8;
    const EACH: usize = 20;
    let s = stream("counter");
    let written: Vec<Vec<Uuid>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, s) = (store.clone(), s.clone());
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for n in 0..EACH {
                        ids.push(append_retrying(&store, &s, "inc", n as u64));
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let stored = read(&store, &s, ..);
    assert_eq!(stored.len(), WRITERS * EACH);
    let mut stored_ids: Vec<Uuid> = stored.iter().map(|e| e.event_id).collect();
    let mut acked: Vec<Uuid> = written.into_iter().flatten().collect();
    stored_ids.sort_unstable();
    acked.sort_unstable();
    assert_eq!(stored_ids, acked, "every acknowledged event stored once");
}

/// RELIABILITY S1: stream ids with quotes, wildcards and SQL round-trip
/// exactly, and never match each other.
pub fn hostile_stream_ids_round_trip<S: ConformanceStore>(store: S) {
    let ids = [
        "'; DROP TABLE events; --",
        "%",
        "_",
        "a%",
        "a_",
        "ab",
        "*",
        "[x]",
        "\"quoted\"",
        "\u{202e}rtl",
        "emoji-\u{1f4a5}",
        "A",
        "a",
    ];
    for (i, id) in ids.iter().enumerate() {
        append(
            &store,
            &stream(id),
            ExpectedVersion::NoStream,
            events(i as u64 + 1),
        )
        .expect("append");
    }
    let max = "m".repeat(crate::MAX_STREAM_ID_LEN);
    append(&store, &stream(&max), ExpectedVersion::NoStream, events(1)).expect("longest id");
    for (i, id) in ids.iter().enumerate() {
        let stored = read(&store, &stream(id), ..);
        assert_eq!(
            stored.len(),
            i + 1,
            "stream {id:?} reads only its own events"
        );
        assert!(stored.iter().all(|e| e.stream_id.as_str() == *id));
        assert_eq!(version(&store, &stream(id)), i as u64 + 1);
    }
    assert_eq!(read(&store, &stream(&max), ..).len(), 1);
}

/// Every metadata field round-trips.
pub fn metadata_round_trips<S: ConformanceStore>(store: S) {
    let meta = Metadata::new()
        .actor("agent-7")
        .command("escalate")
        .reason("waited 3 days; \"urgent\"")
        .command_id(Uuid::now_v7())
        .correlation_id(Uuid::now_v7())
        .causation_id(Uuid::now_v7())
        .compensates(Uuid::now_v7())
        .with("ip", "10.0.0.1")
        .with("nested", serde_json::json!({"a": [1, 2, {"b": null}]}));
    let s = stream("meta");
    append(
        &store,
        &s,
        ExpectedVersion::Any,
        vec![event("m", 1).with_metadata(meta.clone()), event("m", 2)],
    )
    .expect("append");
    let stored = read(&store, &s, ..);
    assert_eq!(stored[0].metadata, meta);
    assert_eq!(stored[1].metadata, Metadata::default());
}

/// Every event has two times: `recorded_at` from the store's clock, and
/// `occurred_at` as the caller gave it (before or after the recording, in
/// any order), or `recorded_at` when not given. Both come back on every
/// read.
pub fn two_times_round_trip<S: ConformanceStore>(store: S) {
    let s = stream("times");
    let before = Timestamp::now();
    let long_ago = Timestamp::from_unix_micros(1_500_000_000_000_000);
    let later = Timestamp::from_unix_micros(1_000_000_000_000_000);
    let in_the_future = Timestamp::from_unix_micros(before.as_unix_micros() + 86_400_000_000);
    let events = vec![
        event("t", 1).with_occurred_at(long_ago),
        event("t", 2),
        event("t", 3).with_occurred_at(later),
        event("t", 4).with_occurred_at(in_the_future),
    ];
    append(&store, &s, ExpectedVersion::Any, events).expect("append");
    let after = Timestamp::now();
    for stored in [read(&store, &s, ..), read_all(&store, 0)] {
        assert_eq!(stored.len(), 4);
        for e in &stored {
            assert!(
                before <= e.recorded_at && e.recorded_at <= after,
                "recorded by the store's clock: {e:?}"
            );
        }
        let occurred: Vec<Timestamp> = stored.iter().map(|e| e.occurred_at).collect();
        assert_eq!(
            occurred,
            [long_ago, stored[1].recorded_at, later, in_the_future]
        );
    }
}

/// `event_types` lists every stored (aggregate type, name, schema version)
/// with its count, sorted: what `$all` holds, no more (refused, conflicting
/// and repeated appends add nothing).
pub fn event_types_count_what_is_stored<S: ConformanceStore>(store: S) {
    assert_eq!(block(store.event_types()).expect("event types"), []);
    let (a, b) = (stream("types-a"), stream("types-b"));
    let v2 = NewEvent::new("test", "happened", 2, "{}");
    let other = NewEvent::new("other", "happened", 1, "{}");
    let first = vec![event("happened", 1), event("happened", 2), v2.clone()];
    append(&store, &a, ExpectedVersion::NoStream, first.clone()).expect("append");
    append(&store, &b, ExpectedVersion::NoStream, vec![other]).expect("append");
    // A repeat, a conflict and a refused name write nothing.
    append(&store, &a, ExpectedVersion::NoStream, first).expect("a repeat");
    assert!(
        append(
            &store,
            &a,
            ExpectedVersion::Exact(1),
            vec![event("happened", 9)]
        )
        .is_err()
    );
    assert!(
        append(
            &store,
            &a,
            ExpectedVersion::Any,
            vec![event("not a name!", 9)]
        )
        .is_err()
    );
    append(&store, &a, ExpectedVersion::Any, vec![event("noted", 3)]).expect("append");
    let mut model = std::collections::BTreeMap::new();
    for e in read_all(&store, 0) {
        *model
            .entry((
                e.aggregate_type.to_string(),
                e.name.clone(),
                e.schema_version,
            ))
            .or_insert(0) += 1;
    }
    let types = block(store.event_types()).expect("event types");
    assert_eq!(types, crate::StoredEventType::from_counts(model));
    let keys: Vec<(&str, &str, u32, u64)> = types
        .iter()
        .map(|t| {
            (
                t.aggregate_type.as_str(),
                t.name.as_str(),
                t.schema_version,
                t.count,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("other", "happened", 1, 1),
            ("test", "happened", 1, 2),
            ("test", "happened", 2, 1),
            ("test", "noted", 1, 1)
        ]
    );
}

/// `find_event` gives the stored event with an id, wherever it is (any
/// stream, one of several in an append, one of a multi-stream append), as
/// `$all` reads it; `None` for an id never stored, and for the ids of a
/// refused append. A repeat leaves the original in place.
pub fn find_event_by_id<S: ConformanceStore>(store: S) {
    find_event_by_id_in(Layout::single(), store);
}

/// [`find_event_by_id`] on a store of `layout`.
pub fn find_event_by_id_in<S: ConformanceStore>(layout: Layout, store: S) {
    let a = stream("find-a");
    let b = layout.beside(&a, "find-b");
    assert_eq!(block(store.find_event(Uuid::now_v7())).expect("find"), None);
    let first = vec![event("happened", 1), event("happened", 2)];
    append(&store, &a, ExpectedVersion::NoStream, first.clone()).expect("append");
    let meta = Metadata::new().actor("finder").command_id(Uuid::now_v7());
    let writes = vec![
        StreamWrite::new(
            a.clone(),
            ExpectedVersion::Exact(2),
            vec![event("noted", 3).with_metadata(meta)],
        ),
        StreamWrite::new(b.clone(), ExpectedVersion::NoStream, events(3)),
    ];
    block(store.append_to_streams(writes)).expect("multi-stream append");
    append(&store, &a, ExpectedVersion::NoStream, first).expect("a repeat");
    let refused = event("refused", 9);
    let refused_id = refused.event_id;
    assert!(append(&store, &b, ExpectedVersion::NoStream, vec![refused]).is_err());

    let all = read_all(&store, 0);
    assert_eq!(all.len(), 6);
    for stored in &all {
        let found = block(store.find_event(stored.event_id)).expect("find");
        assert_eq!(found.as_ref(), Some(stored), "found as $all reads it");
    }
    assert_eq!(block(store.find_event(refused_id)).expect("find"), None);
    assert_eq!(block(store.find_event(Uuid::nil())).expect("find"), None);
}

/// `read_correlated` gives every event of one business transaction, in
/// position order, across streams and appends: those whose metadata names
/// the correlation id, and the one whose own id it is (a root records
/// none). The same id elsewhere in the metadata (a causation id, a free
/// key holding it) does not count; neither do other transactions.
pub fn read_correlated_events<S: ConformanceStore>(store: S) {
    read_correlated_events_in(Layout::single(), store);
}

/// [`read_correlated_events`] on a store of `layout`.
pub fn read_correlated_events_in<S: ConformanceStore>(layout: Layout, store: S) {
    let a = stream("corr-a");
    let b = layout.beside(&a, "corr-b");
    let root = event("started", 1);
    let c = root.event_id;
    let member = |name: &str, n: u64| {
        event(name, n).with_metadata(Metadata::new().correlation_id(c).causation_id(c))
    };
    let other = Uuid::now_v7();
    let stranger = |n: u64| {
        event("elsewhere", n).with_metadata(
            Metadata::new()
                .correlation_id(other)
                .causation_id(c)
                .with("correlation_id", c.to_string())
                .with("nested", serde_json::json!({ "correlation_id": c })),
        )
    };
    assert!(
        block(collect(store.read_correlated(c)))
            .expect("read")
            .is_empty()
    );
    append(
        &store,
        &a,
        ExpectedVersion::NoStream,
        vec![root, stranger(1)],
    )
    .expect("append");
    append(
        &store,
        &b,
        ExpectedVersion::NoStream,
        vec![event("plain", 2)],
    )
    .expect("append");
    let writes = vec![
        StreamWrite::new(
            b.clone(),
            ExpectedVersion::Exact(1),
            vec![member("joined", 3)],
        ),
        StreamWrite::new(
            a.clone(),
            ExpectedVersion::Exact(2),
            vec![stranger(4), member("joined", 5)],
        ),
    ];
    block(store.append_to_streams(writes)).expect("multi-stream append");
    append(&store, &b, ExpectedVersion::Any, vec![member("last", 6)]).expect("append");

    let got = block(collect(store.read_correlated(c))).expect("read");
    let want: Vec<RecordedEvent> = read_all(&store, 0)
        .into_iter()
        .filter(|e| e.event_id == c || e.metadata.correlation_id == Some(c))
        .collect();
    assert_eq!(got, want);
    assert!(got.windows(2).all(|w| w[0].position < w[1].position));
    let mut members: Vec<(&str, u64)> = got
        .iter()
        .map(|e| (e.stream_id.as_str(), e.version))
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            ("corr-a", 1),
            ("corr-a", 4),
            (b.as_str(), 2),
            (b.as_str(), 3)
        ]
    );
    let others = block(collect(store.read_correlated(other))).expect("read");
    assert_eq!(others.len(), 2);
    assert!(
        block(collect(store.read_correlated(Uuid::now_v7())))
            .expect("read")
            .is_empty()
    );
}

async fn collect(mut events: crate::store::EventStream) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    while let Some(e) = next(&mut events).await {
        out.push(e?);
    }
    Ok(out)
}

/// The latest snapshot per stream is kept; older ones do not replace it.
pub fn snapshots_keep_the_latest<S: ConformanceStore>(store: S) {
    let s = stream("snap");
    let snap = |version: u64, schema_version: u32| Snapshot {
        stream_id: s.clone(),
        aggregate_type: "test".into(),
        version,
        schema_version,
        state: format!(r#"{{"v":{version}}}"#).into_bytes(),
        taken_at: Timestamp::from_unix_micros(1_700_000_000_000_000),
    };
    assert_eq!(block(store.load_snapshot(&s)).expect("load"), None);
    block(store.save_snapshot(snap(10, 1))).expect("save");
    block(store.save_snapshot(snap(5, 1))).expect("an older save is accepted and ignored");
    assert_eq!(
        block(store.load_snapshot(&s)).expect("load"),
        Some(snap(10, 1))
    );
    block(store.save_snapshot(snap(20, 2))).expect("save");
    assert_eq!(
        block(store.load_snapshot(&s)).expect("load"),
        Some(snap(20, 2))
    );
    assert_eq!(
        block(store.load_snapshot(&stream("other"))).expect("load"),
        None
    );
}

/// Checkpoints round-trip per projection name.
pub fn checkpoints_round_trip<S: ConformanceStore>(store: S) {
    assert_eq!(block(store.load_checkpoint("search")).expect("load"), None);
    block(store.save_checkpoint("search", 42)).expect("save");
    block(store.save_checkpoint("analysis", 7)).expect("save");
    block(store.save_checkpoint("search", 43)).expect("save");
    let got: BTreeMap<&str, Option<u64>> = ["search", "analysis", "'; DROP"]
        .into_iter()
        .map(|n| (n, block(store.load_checkpoint(n)).expect("load")))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([
            ("search", Some(43)),
            ("analysis", Some(7)),
            ("'; DROP", None)
        ])
    );
}

/// A [`Watch`](crate::store::Watch) wakes when another thread commits,
/// with the position of the last committed event.
pub fn watch_wakes_on_commit<S: ConformanceStore>(store: S) {
    watch_wakes_on_commit_in(Layout::single(), store);
}

/// [`watch_wakes_on_commit`] on a store of `layout`.
pub fn watch_wakes_on_commit_in<S: ConformanceStore>(layout: Layout, store: S) {
    let mut tally = layout.tally();
    tally.append(&stream("before"), 1);
    let first = tally.last();
    tally.append(&stream("w"), 2);
    append(&store, &stream("before"), ExpectedVersion::Any, events(1)).expect("append");
    let mut watch = store.watch();
    assert_eq!(watch.last_position(), first);
    let writer = store.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        // A refused append commits nothing and wakes nobody.
        assert!(
            append(
                &writer,
                &stream("before"),
                ExpectedVersion::NoStream,
                events(1)
            )
            .is_err()
        );
        append(&writer, &stream("w"), ExpectedVersion::Any, events(2)).expect("append");
    });
    assert_eq!(block(watch.changed()), tally.last());
    handle.join().expect("writer thread");
    assert_eq!(watch.last_position(), tally.last());
}

/// A stream's events are all in its shard ([`ShardedStore::shard_for`]),
/// and no other shard knows the stream.
pub fn streams_live_in_their_shard<S: ConformanceStore>(store: ShardedStore<S>) {
    let streams: Vec<StreamId> = (0..16).map(|i| stream(&format!("home-{i}"))).collect();
    for (i, s) in streams.iter().enumerate() {
        append(
            &store,
            s,
            ExpectedVersion::NoStream,
            events(i as u64 % 3 + 1),
        )
        .expect("append");
    }
    for (i, s) in streams.iter().enumerate() {
        let home = store.shard_for(s);
        assert_eq!(home, Layout::of(&store).shard_of(s));
        for (n, shard) in store.shards().iter().enumerate() {
            let want = if n == home { i as u64 % 3 + 1 } else { 0 };
            assert_eq!(version(shard, s), want, "stream {s} in shard {n}");
        }
        let read = read(&store, s, ..);
        assert!(
            read.iter()
                .all(|e| store.split_position(e.position).map(|p| p.0) == Some(home))
        );
    }
}

/// Interleaved appends to streams of every shard: each shard's own `$all`
/// has positions 1, 2, 3, ... in its append order, and each stream's
/// versions are contiguous from 1.
pub fn positions_are_gapless_per_shard<S: ConformanceStore>(store: ShardedStore<S>) {
    let streams: Vec<StreamId> = (0..8).map(|i| stream(&format!("gapless-{i}"))).collect();
    let mut per_shard: Vec<Vec<Uuid>> = vec![Vec::new(); store.shards().len()];
    for round in 0..4u64 {
        for s in &streams {
            let batch = events(round % 3 + 1);
            per_shard[store.shard_for(s)].extend(batch.iter().map(|e| e.event_id));
            append(&store, s, ExpectedVersion::Any, batch).expect("append");
        }
    }
    for (i, shard) in store.shards().iter().enumerate() {
        let all = read_all(shard, 0);
        assert_eq!(
            all.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            per_shard[i],
            "shard {i} holds its streams' events in append order"
        );
        for (n, e) in all.iter().enumerate() {
            assert_eq!(
                e.position,
                n as u64 + 1,
                "shard {i}'s positions are gapless"
            );
        }
    }
    for s in &streams {
        let versions: Vec<u64> = read(&store, s, ..).iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
}

/// `read_all(from)` of a sharded store is the merge of its shards' `$all`
/// in encoded position order, from every position; each event's position
/// splits into its shard and its position there; `last_position` is the
/// largest.
pub fn read_all_is_the_merge_of_the_shards<S: ConformanceStore>(store: ShardedStore<S>) {
    for i in 0..10u64 {
        let s = stream(&format!("merge-{}", i % 5));
        append(&store, &s, ExpectedVersion::Any, events(i % 2 + 1)).expect("append");
    }
    let mut merged: Vec<(u64, Uuid)> = Vec::new();
    for (i, shard) in store.shards().iter().enumerate() {
        for e in read_all(shard, 0) {
            let position = store.position(i, e.position).expect("small positions");
            assert_eq!(store.split_position(position), Some((i, e.position)));
            merged.push((position, e.event_id));
        }
    }
    merged.sort_unstable();
    let last = merged.last().map_or(0, |m| m.0);
    assert_eq!(last_position(&store), last);
    for from in 0..=last + 1 {
        let got: Vec<(u64, Uuid)> = read_all(&store, from)
            .iter()
            .map(|e| (e.position, e.event_id))
            .collect();
        let want: Vec<(u64, Uuid)> = merged.iter().copied().filter(|m| m.0 >= from).collect();
        assert_eq!(got, want, "read_all({from})");
    }
    for e in read_all(&store, 0) {
        let (shard, _) = store.split_position(e.position).expect("a position");
        assert_eq!(shard, store.shard_for(&e.stream_id));
        assert_eq!(block(store.find_event(e.event_id)).expect("find"), Some(e));
    }
}

/// An atomic append over streams of more than one shard is refused with
/// [`Error::CrossShard`], naming each stream's shard, and writes nothing;
/// one whose streams share a shard is written.
pub fn cross_shard_appends_are_refused<S: ConformanceStore>(store: ShardedStore<S>) {
    let layout = Layout::of(&store);
    let a = stream("cross-a");
    let Some(b) = layout.apart(&a, "cross-b") else {
        return; // One shard: every append is in it.
    };
    let c = layout.beside(&a, "cross-c");
    append(&store, &c, ExpectedVersion::NoStream, events(1)).expect("append");
    let before = read_all(&store, 0);
    let writes = vec![
        StreamWrite::new(a.clone(), ExpectedVersion::NoStream, events(1)),
        StreamWrite::new(c.clone(), ExpectedVersion::Exact(1), events(2)),
        StreamWrite::new(b.clone(), ExpectedVersion::NoStream, events(1)),
    ];
    match block(store.append_to_streams(writes)) {
        Err(Error::CrossShard { streams, shards }) => {
            assert_eq!(streams, [a.clone(), c.clone(), b.clone()]);
            assert_eq!(
                shards,
                [
                    layout.shard_of(&a),
                    layout.shard_of(&c),
                    layout.shard_of(&b)
                ]
            );
            let message = Error::CrossShard { streams, shards }.to_string();
            assert!(message.contains("one shard"), "{message}");
        }
        other => panic!("expected a cross-shard refusal, got {other:?}"),
    }
    assert_eq!(read_all(&store, 0), before, "nothing was written");
    assert_eq!((version(&store, &a), version(&store, &b)), (0, 0));
    // The same streams of one shard: written together.
    let together = vec![
        StreamWrite::new(a.clone(), ExpectedVersion::NoStream, events(1)),
        StreamWrite::new(c.clone(), ExpectedVersion::Exact(1), events(2)),
    ];
    let results = block(store.append_to_streams(together)).expect("one shard");
    assert_eq!((results[0].version, results[1].version), (1, 3));
}

/// Writers on streams of every shard at once, each reading the version
/// and appending with `Exact`, retrying on conflict: every acknowledged
/// event is stored once, each stream's versions are contiguous, and each
/// shard's positions gapless.
pub fn concurrent_appends_across_shards<S: ConformanceStore>(store: ShardedStore<S>) {
    const WRITERS: usize = 6;
    const EACH: usize = 30;
    let streams: Vec<StreamId> = (0..9).map(|i| stream(&format!("busy-{i}"))).collect();
    let acked: Vec<Uuid> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, streams) = (store.clone(), &streams);
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for n in 0..EACH {
                        let s = &streams[(w + n) % streams.len()];
                        ids.push(append_retrying(&store, s, "busy", n as u64));
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let mut stored: Vec<Uuid> = Vec::new();
    for s in &streams {
        let events = read(&store, s, ..);
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
        stored.extend(events.iter().map(|e| e.event_id));
    }
    for (i, shard) in store.shards().iter().enumerate() {
        for (n, e) in read_all(shard, 0).iter().enumerate() {
            assert_eq!(e.position, n as u64 + 1, "shard {i} is gapless");
        }
    }
    let mut acked = acked;
    acked.sort_unstable();
    stored.sort_unstable();
    assert_eq!(stored, acked, "every acknowledged event stored once");
}

/// `find_event`, `event_types` and `read_correlated` see every shard:
/// an event is found wherever it is, the counts add up, and a business
/// transaction's events come in encoded position order from all shards.
pub fn every_shard_is_read<S: ConformanceStore>(store: ShardedStore<S>) {
    let root = event("started", 0);
    let c = root.event_id;
    append(
        &store,
        &stream("spread-0"),
        ExpectedVersion::NoStream,
        vec![root],
    )
    .expect("append");
    let mut ids = vec![c];
    for i in 1..12u64 {
        let e = event("joined", i).with_metadata(Metadata::new().correlation_id(c));
        ids.push(e.event_id);
        let s = stream(&format!("spread-{i}"));
        append(&store, &s, ExpectedVersion::NoStream, vec![e]).expect("append");
    }
    for id in &ids {
        let found = block(store.find_event(*id)).expect("find").expect("stored");
        assert_eq!(found.event_id, *id);
    }
    let types = block(store.event_types()).expect("types");
    let counts: Vec<(&str, u64)> = types.iter().map(|t| (t.name.as_str(), t.count)).collect();
    assert_eq!(counts, [("joined", 11), ("started", 1)]);
    let correlated = block(collect(store.read_correlated(c))).expect("read");
    let want: Vec<RecordedEvent> = read_all(&store, 0);
    assert_eq!(correlated, want);
}

/// A tiny deterministic generator, for the stops of
/// [`feed_resumes_exactly_once`].
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A projection reads the merged feed ([`ShardedStore::read_all_from`])
/// while writers append to streams of every shard; it stops after a random
/// number of events, and resumes from its per-shard checkpoints as saved
/// ([`ShardCheckpoints::save_shard`], after each event). When the writers
/// are done and the feed is drained, it has handled every event exactly
/// once, each stream's in version order.
pub fn feed_resumes_exactly_once<S: ConformanceStore>(store: ShardedStore<S>) {
    const WRITERS: usize = 4;
    const EACH: u64 = 60;
    const NAME: &str = "exactly-once";
    let shards = store.shards().len();
    let mut handled: Vec<Uuid> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut last_version: BTreeMap<StreamId, u64> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut consume = |limit: u64| -> u64 {
        let mut checkpoints =
            block(ShardCheckpoints::load(&store, NAME, shards)).expect("load checkpoints");
        let mut feed = store.read_all_from(&checkpoints);
        let mut n = 0;
        while n < limit {
            let Some(e) = block(next(&mut feed)) else {
                break;
            };
            let e = e.expect("the feed reads");
            assert!(
                seen.insert(e.event_id),
                "event {} handled twice",
                e.event_id
            );
            let last = last_version.entry(e.stream_id.clone()).or_insert(0);
            assert_eq!(e.version, *last + 1, "{} in version order", e.stream_id);
            *last = e.version;
            handled.push(e.event_id);
            let (shard, _) = checkpoints.advance(e.position).expect("a position");
            block(checkpoints.save_shard(&store, NAME, shard)).expect("save");
            n += 1;
        }
        n
    };
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                scope.spawn(move || {
                    for n in 0..EACH {
                        let s = stream(&format!("feed-{w}-{}", n % 5));
                        append(&store, &s, ExpectedVersion::Any, events(n % 2 + 1))
                            .expect("append");
                    }
                })
            })
            .collect();
        // Stop and resume, again and again, while the writers write.
        while !writers
            .iter()
            .all(std::thread::ScopedJoinHandle::is_finished)
        {
            let limit = xorshift(&mut rng) % 17;
            consume(limit);
        }
    });
    while consume(u64::MAX) > 0 {}
    let mut stored: Vec<Uuid> = store
        .shards()
        .iter()
        .flat_map(|s| read_all(s, 0))
        .map(|e| e.event_id)
        .collect();
    stored.sort_unstable();
    handled.sort_unstable();
    let expected: u64 = (0..EACH).map(|n| n % 2 + 1).sum::<u64>() * WRITERS as u64;
    assert_eq!(stored.len() as u64, expected);
    assert_eq!(handled, stored, "every event handled exactly once");
}

/// Per-shard checkpoints round-trip by name, through the sharded store
/// (kept in shard 0); loading them for another number of shards is
/// [`Error::ShardCheckpoints`]; the feed refuses checkpoints of another
/// number of shards.
pub fn shard_checkpoints_round_trip<S: ConformanceStore>(store: ShardedStore<S>) {
    let shards = store.shards().len();
    let fresh = block(ShardCheckpoints::load(&store, "search", shards)).expect("load");
    assert_eq!(fresh, ShardCheckpoints::new(shards));
    let mut saved = ShardCheckpoints::new(shards);
    for i in 0..shards {
        assert!(saved.set(i, 10 * i as u64 + 3));
    }
    block(saved.save(&store, "search")).expect("save");
    assert_eq!(
        block(ShardCheckpoints::load(&store, "search", shards)).expect("load"),
        saved
    );
    assert_eq!(
        block(store.shards()[0].load_checkpoint("search@shard-0")).expect("load"),
        Some(3),
        "kept in shard 0, under a stored name"
    );
    assert!(matches!(
        block(ShardCheckpoints::load(&store, "search", shards + 1)),
        Err(Error::ShardCheckpoints { found, shards: s, .. }) if found == shards as u64 && s == shards + 1
    ));
    let mut feed = store.read_all_from(&ShardCheckpoints::new(shards + 1));
    assert!(matches!(
        block(next(&mut feed)),
        Some(Err(Error::ShardCheckpoints { .. }))
    ));
}

/// A watch of the sharded store wakes on a commit made through one of its
/// shards directly, with the encoded position.
pub fn watch_wakes_on_a_commit_through_a_shard<S: ConformanceStore>(store: ShardedStore<S>) {
    let mut watch = store.watch();
    assert_eq!(watch.last_position(), 0);
    let s = stream("watched");
    let home = store.shard_for(&s);
    let shard = store.shards()[home].clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        append(&shard, &s, ExpectedVersion::NoStream, events(2)).expect("append");
    });
    let woke = watch
        .wait_timeout(std::time::Duration::from_secs(30))
        .expect("woken by the shard's commit");
    handle.join().expect("writer thread");
    assert_eq!(woke, store.position(home, 2).expect("a position"));
}
