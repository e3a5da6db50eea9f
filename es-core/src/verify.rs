//! The replay check: every stored stream replayed through the current code.
//!
//! The deploy check ([`registry::check_store`](crate::registry::check_store))
//! asks the store which event types it holds and answers in milliseconds; it
//! cannot see a payload that no longer matches its type, an upcaster that
//! fails on some old payloads, an `apply` that panics on a state nobody
//! tested, or a snapshot that disagrees with its events. [`Verify`] reads
//! everything and finds those: run it on a copy of production before a
//! deploy, or on production itself (it only reads).
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::verify::{Finding, Verify};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Deposited { pub amount: u64 }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "account", events(Deposited))]
//! # pub struct Account { balance: u64 }
//! # impl Apply<Deposited> for Account {
//! #     fn apply(&mut self, e: &Deposited) { self.balance += e.amount }
//! # }
//!
//! # es_core::blocking::block_on(async {
//! let store = InMemoryStore::new();
//! Repository::<Account, _>::new(store.clone())
//!     .execute("1", |_| Deposited { amount: 5 })
//!     .await?;
//! let report = Verify::new(&store).aggregate::<Account>().run().await?;
//! assert!(report.is_clean());
//! assert_eq!((report.streams, report.events), (1, 1));
//!
//! // A payload that no longer matches its type:
//! let bad = es_core::NewEvent::new("account", "deposited", 1, r#"{"amount":"five"}"#);
//! store.append(&StreamId::new("account-1")?, ExpectedVersion::Exact(1), vec![bad]).await?;
//! let report = Verify::new(&store).aggregate::<Account>().run().await?;
//! assert!(matches!(&report.findings[..], [Finding::Undecodable { version: 2, .. }]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it does, in two passes: it reads `$all` once to list the streams
//! (no payload is decoded), then folds each stream of a listed aggregate
//! type from its first event, as a repository does without a snapshot, and
//! compares the stream's snapshot, if any, with the state at the
//! snapshot's version. Memory holds the list of streams and one state at a
//! time.
//!
//! Decisions worth knowing:
//!
//! - After the first event of a stream that does not decode, or whose
//!   `apply` panics, the stream's state is no longer the state its events
//!   describe: later events are still decoded (each undecodable one is
//!   reported) but no longer applied, and its snapshot is not compared.
//! - A panic is caught with [`std::panic::catch_unwind`], so
//!   a binary built with `panic = "abort"` stops at the first one. The
//!   panic hook still runs (the default one prints the message to stderr);
//!   a program that prints the report can install a quiet hook for the run.
//! - A snapshot of another state schema version is not drift: repositories
//!   ignore it and take a new one. A snapshot that does not decode, or that
//!   is past the end of its stream, is reported (a repository would ignore
//!   or replace it too, but it says something went wrong).
//! - States are compared as JSON values (the snapshot codec of the derive)
//!   with [`diff`](crate::diff::diff), so the order of a map's keys does
//!   not count, and each differing place is named by its JSON pointer (the
//!   first five); a state whose snapshot is not JSON is compared byte for
//!   byte.
//! - Streams of aggregate types not given to [`Verify::aggregate`] are not
//!   findings: they are counted in [`Report::unchecked`], since one program
//!   often owns only some of a store's aggregates.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::envelope::EventRef;
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::snapshot::SnapshotStore;
use crate::store::{EventStore, next};
use crate::version::ReadRange;

/// How often, in events, progress is reported.
const PROGRESS_EVERY: u64 = 1024;

/// The most differing places a drift finding names.
const DRIFT_PATHS: usize = 5;

/// The replay check over one store: made by [`Verify::new`], given the
/// aggregate types to replay, run by [`Verify::run`].
#[must_use = "a check does nothing until `run` is awaited"]
pub struct Verify<'s, S> {
    store: &'s S,
    replayers: BTreeMap<&'static str, Replayer<S>>,
    progress: Option<Box<dyn FnMut(Progress) + Send + 's>>,
}

/// Replays one stream of an aggregate type: `replay::<A, S>`, type-erased.
type Replayer<S> = for<'a> fn(&'a S, &'a StreamId, &'a mut Tally) -> ReplayFuture<'a>;

type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

impl<S> fmt::Debug for Verify<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("aggregates", &self.replayers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'s, S: EventStore + SnapshotStore> Verify<'s, S> {
    /// A check of `store` replaying no aggregate type yet.
    pub fn new(store: &'s S) -> Self {
        Verify {
            store,
            replayers: BTreeMap::new(),
            progress: None,
        }
    }

    /// Replays the streams of `A` (those whose events are of aggregate
    /// type `A::NAME`) through `A`'s current event decoding and `apply`.
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        self.replayers.insert(A::NAME, |store, stream, tally| {
            Box::pin(replay::<A, S>(store, stream, tally))
        });
        self
    }

    /// Calls `progress` as the check goes: every 1,024 events and at the
    /// end of each pass.
    pub fn progress(mut self, progress: impl FnMut(Progress) + Send + 's) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Runs the check: lists the streams, replays each of a given aggregate
    /// type, and reports what it found.
    ///
    /// # Errors
    ///
    /// When the store cannot be read, or a stream's versions are not
    /// contiguous ([`Error::Corrupt`]): the store itself is damaged, which
    /// is beyond what replaying can judge. What the code cannot do with
    /// what is stored is a [`Finding`], not an error.
    pub async fn run(mut self) -> Result<Report> {
        let streams = self.list_streams().await?;
        let mut report = Report::default();
        let mut unchecked: BTreeMap<Arc<str>, Unchecked> = BTreeMap::new();
        let total = streams
            .iter()
            .filter(|s| self.replayers.contains_key(&*s.aggregate_type))
            .map(|s| s.events)
            .sum();
        let mut done = 0;
        let mut reported = 0;
        for stream in streams {
            if *stream.aggregate_type == *crate::privacy::SUBJECT_AGGREGATE {
                // The framework's record of forgotten subjects.
                continue;
            }
            let Some(replay) = self.replayers.get(&*stream.aggregate_type) else {
                let entry = unchecked
                    .entry(stream.aggregate_type.clone())
                    .or_insert_with(|| Unchecked {
                        aggregate_type: stream.aggregate_type.to_string(),
                        streams: 0,
                        events: 0,
                    });
                entry.streams += 1;
                entry.events += stream.events;
                continue;
            };
            let mut tally = Tally::default();
            replay(self.store, &stream.id, &mut tally).await?;
            report.streams += 1;
            report.events += tally.events;
            report.snapshots_compared += u64::from(tally.snapshot_compared);
            report.findings.append(&mut tally.findings);
            done += stream.events;
            if done - reported >= PROGRESS_EVERY {
                reported = done;
                self.report(Phase::Replay, done, total);
            }
        }
        self.report(Phase::Replay, done, total);
        report.unchecked = unchecked.into_values().collect();
        Ok(report)
    }

    /// The first pass: every stream in `$all`, in the order of its first
    /// event, with its aggregate type and event count.
    async fn list_streams(&mut self) -> Result<Vec<Listed>> {
        let total = self.store.last_position().await?;
        let mut streams: Vec<Listed> = Vec::new();
        let mut index: HashMap<StreamId, usize> = HashMap::new();
        let mut events = self.store.read_all(1);
        let mut read = 0;
        while let Some(event) = next(&mut events).await {
            let event = event?;
            read += 1;
            if let Some(&at) = index.get(&event.stream_id) {
                streams[at].events += 1;
            } else {
                index.insert(event.stream_id.clone(), streams.len());
                streams.push(Listed {
                    id: event.stream_id,
                    aggregate_type: event.aggregate_type,
                    events: 1,
                });
            }
            if read % PROGRESS_EVERY == 0 {
                self.report(Phase::List, event.position, total);
            }
        }
        self.report(Phase::List, total, total);
        Ok(streams)
    }

    fn report(&mut self, phase: Phase, done: u64, total: u64) {
        if let Some(progress) = self.progress.as_mut() {
            progress(Progress { phase, done, total });
        }
    }
}

/// A stream found by the first pass.
struct Listed {
    id: StreamId,
    aggregate_type: Arc<str>,
    events: u64,
}

/// What replaying one stream found.
#[derive(Default)]
struct Tally {
    events: u64,
    snapshot_compared: bool,
    findings: Vec<Finding>,
}

/// Folds one stream of `A` from its first event, catching panics, and
/// compares its snapshot with the state at the snapshot's version.
async fn replay<A: Aggregate, S: EventStore + SnapshotStore>(
    store: &S,
    stream: &StreamId,
    tally: &mut Tally,
) -> Result<()> {
    let snapshot = match A::SNAPSHOT {
        Some(policy) => store
            .load_snapshot(stream)
            .await?
            .filter(|s| s.aggregate_type == A::NAME && s.schema_version == policy.version),
        None => None,
    };
    let mut state = A::default();
    let mut version = 0;
    // The version of the first event the state is missing, once there is one.
    let mut broken: Option<u64> = None;
    let findings = &mut tally.findings;
    let events = &mut tally.events;
    let compared = &mut tally.snapshot_compared;
    store
        .fold_stream(stream, ReadRange::all(), |e| {
            crate::repository::check_contiguous(stream, version, e.version)?;
            version = e.version;
            *events += 1;
            if crate::evolution::moved_to(&e)?.is_some() {
                // The marker of a moved stream: read by the framework, not
                // decoded, and the last event of its stream.
                return Ok(ControlFlow::Continue(()));
            }
            if let Some(finding) = replay_event(&e, &mut state, broken.is_some()) {
                findings.push(finding);
                broken.get_or_insert(e.version);
            }
            if let (Some(snapshot), None) = (&snapshot, broken)
                && snapshot.version == e.version
            {
                *compared = true;
                if let Some(reason) = drift(&state, &snapshot.state) {
                    findings.push(Finding::SnapshotDrift {
                        stream: stream.clone(),
                        version: e.version,
                        reason,
                    });
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
    if let Some(snapshot) = &snapshot
        && snapshot.version > version
        && broken.is_none()
    {
        tally.snapshot_compared = true;
        tally.findings.push(Finding::SnapshotDrift {
            stream: stream.clone(),
            version: snapshot.version,
            reason: format!(
                "the snapshot is at version {} but the stream ends at version {version}",
                snapshot.version
            ),
        });
    }
    Ok(())
}

/// Decodes one stored event (through the upcasters) and, unless the state
/// is already `broken`, applies what it decodes, catching a panic.
fn replay_event<A: Aggregate>(e: &EventRef<'_>, state: &mut A, broken: bool) -> Option<Finding> {
    if e.aggregate_type != A::NAME {
        return Some(Finding::Undecodable {
            stream: e.stream_id.clone(),
            version: e.version,
            name: e.name.to_owned(),
            schema_version: e.schema_version,
            reason: format!(
                "the event is of aggregate type `{}` in a stream of `{}`",
                e.aggregate_type,
                A::NAME
            ),
        });
    }
    let mut panicked = None;
    let decoded = e.decode_each::<A::Event>(|event| {
        if broken || panicked.is_some() {
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| state.apply(&event))) {
            panicked = Some(panic_message(payload.as_ref()));
        }
    });
    match (decoded, panicked) {
        (Err(Error::Decode { source, .. }), _) => Some(Finding::Undecodable {
            stream: e.stream_id.clone(),
            version: e.version,
            name: e.name.to_owned(),
            schema_version: e.schema_version,
            reason: with_sources(&source),
        }),
        (Err(other), _) => Some(Finding::Undecodable {
            stream: e.stream_id.clone(),
            version: e.version,
            name: e.name.to_owned(),
            schema_version: e.schema_version,
            reason: with_sources(&other),
        }),
        (Ok(()), Some(message)) => Some(Finding::ApplyPanicked {
            stream: e.stream_id.clone(),
            version: e.version,
            name: e.name.to_owned(),
            message,
        }),
        (Ok(()), None) => None,
    }
}

/// `error`'s message followed by its sources', so a report says why
/// without the caller walking the chain.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a
/// `String`; anything else is named as such).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// How the snapshot's state differs from `state`, or `None` when they agree.
fn drift<A: Aggregate>(state: &A, stored: &[u8]) -> Option<String> {
    let rebuilt = match state.encode_snapshot()? {
        Ok(rebuilt) => rebuilt,
        Err(error) => return Some(format!("the rebuilt state does not encode: {error}")),
    };
    if let Some(Err(error)) = A::decode_snapshot(stored) {
        return Some(format!("the snapshot does not decode: {error}"));
    }
    match (
        serde_json::from_slice::<serde_json::Value>(stored),
        serde_json::from_slice::<serde_json::Value>(&rebuilt),
    ) {
        (Ok(stored), Ok(rebuilt)) => {
            let changes = crate::diff::diff(&stored, &rebuilt);
            (!changes.is_empty()).then(|| {
                let more = changes.len().saturating_sub(DRIFT_PATHS);
                let mut reason = changes
                    .iter()
                    .take(DRIFT_PATHS)
                    .map(|c| {
                        format!(
                            "`{}`: snapshot {}, events {}",
                            c.shown_path(),
                            crate::diff::shown(c.old.as_ref()),
                            crate::diff::shown(c.new.as_ref())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                if more > 0 {
                    reason = format!("{reason}; and {more} more");
                }
                reason
            })
        }
        _ => (stored != rebuilt.as_slice())
            .then(|| "the snapshot's bytes differ from the rebuilt state's".to_owned()),
    }
}

/// Where the check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Which pass.
    pub phase: Phase,
    /// How far it is: a position of `$all` while listing, events replayed
    /// while replaying.
    pub done: u64,
    /// Where it ends: the last position, or the events to replay.
    pub total: u64,
}

/// The passes of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading `$all` to list the streams.
    List,
    /// Replaying the streams.
    Replay,
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The streams replayed.
    pub streams: u64,
    /// The events replayed.
    pub events: u64,
    /// The snapshots compared with their stream's events.
    pub snapshots_compared: u64,
    /// What the current code cannot do with what is stored, in stream order
    /// then version order.
    pub findings: Vec<Finding>,
    /// The aggregate types found in the store that the check was not given,
    /// by name.
    pub unchecked: Vec<Unchecked>,
}

impl Report {
    /// How many findings the alternate display (`{:#}`) lists.
    pub const LISTED: usize = 100;

    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The summary line (`5 streams, 9 events and 2 snapshots replayed: no
/// findings`); with `{:#}`, then each finding on a line of its own (the
/// first [`Report::LISTED`]), and the aggregate types not checked.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} and {} replayed: ",
            counted(self.streams, "stream"),
            counted(self.events, "event"),
            counted(self.snapshots_compared, "snapshot"),
        )?;
        match self.findings.len() {
            0 => f.write_str("no findings")?,
            n => f.write_str(&counted(n as u64, "finding"))?,
        }
        if !f.alternate() {
            return Ok(());
        }
        for finding in self.findings.iter().take(Self::LISTED) {
            write!(f, "\n  {finding}")?;
        }
        if let Some(more) = self
            .findings
            .len()
            .checked_sub(Self::LISTED)
            .filter(|&n| n > 0)
        {
            write!(f, "\n  ... and {more} more")?;
        }
        for u in &self.unchecked {
            write!(
                f,
                "\n  not checked: {} ({}) of aggregate type `{}`",
                counted(u.streams, "stream"),
                counted(u.events, "event"),
                u.aggregate_type
            )?;
        }
        Ok(())
    }
}

/// `1 event`, `2 events`.
fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Streams of an aggregate type the check was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    /// The aggregate type.
    pub aggregate_type: String,
    /// How many streams.
    pub streams: u64,
    /// How many events they hold.
    pub events: u64,
}

/// One thing the current code cannot do with what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// A stored event that does not decode, or whose upcasting fails.
    Undecodable {
        /// Its stream.
        stream: StreamId,
        /// Its version.
        version: u64,
        /// Its stored name.
        name: String,
        /// Its stored schema version.
        schema_version: u32,
        /// Why.
        reason: String,
    },
    /// An `apply` that panicked on the event at `version`.
    ApplyPanicked {
        /// The stream.
        stream: StreamId,
        /// The event's version.
        version: u64,
        /// The event's stored name.
        name: String,
        /// The panic's message.
        message: String,
    },
    /// A snapshot that differs from the state rebuilt from the events, does
    /// not decode, or is past the end of its stream.
    SnapshotDrift {
        /// The stream.
        stream: StreamId,
        /// The snapshot's version.
        version: u64,
        /// How they differ: each differing place of the state as a JSON
        /// pointer with both values.
        reason: String,
    },
}

impl Finding {
    /// The stream it is about.
    pub fn stream(&self) -> &StreamId {
        match self {
            Finding::Undecodable { stream, .. }
            | Finding::ApplyPanicked { stream, .. }
            | Finding::SnapshotDrift { stream, .. } => stream,
        }
    }

    /// The version it is about.
    pub fn version(&self) -> u64 {
        match self {
            Finding::Undecodable { version, .. }
            | Finding::ApplyPanicked { version, .. }
            | Finding::SnapshotDrift { version, .. } => *version,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Undecodable {
                stream,
                version,
                name,
                schema_version,
                reason,
            } => write!(
                f,
                "{stream} version {version}: `{name}` version {schema_version} does not decode: {reason}"
            ),
            Finding::ApplyPanicked {
                stream,
                version,
                name,
                message,
            } => write!(
                f,
                "{stream} version {version}: applying `{name}` panicked: {message}"
            ),
            Finding::SnapshotDrift {
                stream,
                version,
                reason,
            } => write!(
                f,
                "{stream} version {version}: the snapshot differs from the events: {reason}"
            ),
        }
    }
}
