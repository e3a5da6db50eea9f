//! RELIABILITY T13: a history checker, in the manner of Elle (Kingsbury and
//! Alvaro, "Elle: inferring isolation anomalies from experimental
//! observations", 2020), for the crash, contention and multi-process tests.
//!
//! A test logs every operation it makes on the store: its invocation (the
//! session making it, the time, what it asks) before the call, and its
//! completion (the time, the outcome) after it. Times are of the system's
//! monotonic clock, so the logs of several processes merge into one
//! history; a session (a task, a thread) makes one operation at a time.
//! An operation invoked but never completed was in flight when its process
//! died: it may or may not have taken effect.
//!
//! [`check`] then compares the history with the store's final contents
//! (`$all` read after the run) and reports every [`Violation`]:
//!
//! - every stream read (and fold) is a prefix of the final stream from
//!   where it starts, every `$all` read a prefix of the final `$all` from
//!   its position;
//! - no read sees an event that only failed appends carried, and the final
//!   state holds none;
//! - every acknowledged append is in the final state, at the versions and
//!   positions it was told; every append is there whole or not at all, and
//!   no read sees part of one;
//! - reads are monotonic per session: once a session has seen a stream at
//!   version `v` (by a read, a version, a conflict, or its own append), a
//!   later read of that stream by it sees `v` at least; the same for
//!   positions of `$all`;
//! - a version a read or a conflict reports (`actual`) was visible: 0, or
//!   the last version of an append invoked before the report completed;
//! - positions are never filled in late: no append invoked after an
//!   observation of position `p` (a read that saw it, an append told it)
//!   stores an event below `p`;
//! - every event stored was carried by an append of the history.
//!
//! `tests/history.rs` feeds it a bad history of each kind and sees it
//! report it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use es_core::store::next;
use es_core::{
    AppendResult, Error, EventRef, EventStore, EventStream, ExpectedVersion, NewEvent, ReadRange,
    RecordedEvent, Result, Snapshot, SnapshotStore, StoredEventType, StreamId, StreamWrite, Uuid,
    Watch,
};
use futures_core::Stream;
use serde::{Deserialize, Serialize};

/// The prefix of a history line a child process prints on its stdout.
pub const LINE: &str = "H ";

/// Nanoseconds of the system's monotonic clock: one clock for every
/// process of the machine.
pub fn now() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// One stream write of an append, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub stream: String,
    /// The expected version, as it reads.
    pub expected: String,
    pub ids: Vec<Uuid>,
}

/// What an operation asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Append(Vec<Write>),
    /// Versions `from..=to` (`to`: the end when `None`).
    ReadStream {
        stream: String,
        from: u64,
        to: Option<u64>,
    },
    /// A fold of the stream from `from`: versions only, no ids or positions.
    Fold {
        stream: String,
        from: u64,
    },
    ReadAll {
        from: u64,
    },
    Version {
        stream: String,
    },
    LastPosition,
}

/// An event as a read saw it (a fold sees no position and no id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub stream: String,
    pub version: u64,
    pub position: Option<u64>,
    pub id: Option<Uuid>,
}

impl Seen {
    /// A stored event as seen by a read.
    pub fn of(e: &RecordedEvent) -> Self {
        Seen {
            stream: e.stream_id.to_string(),
            version: e.version,
            position: Some(e.position),
            id: Some(e.event_id),
        }
    }
}

/// What one write of an acknowledged append was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub stream: String,
    /// The versions of its events (for an empty write: `last + 1..=last`).
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: Option<u64>,
    pub repeated: bool,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Appended(Vec<Written>),
    /// Refused: the stream was at `actual`.
    Conflict {
        stream: String,
        actual: u64,
    },
    /// Any other error: nothing of the operation took effect.
    Failed(String),
    /// A read: what it saw, and whether it went to its end (`false`: it
    /// failed, or its reader stopped early).
    Read {
        events: Vec<Seen>,
        whole: bool,
    },
    /// A version or the last position.
    Number(u64),
}

impl Outcome {
    /// The outcome of an append of `writes`.
    pub fn of_append(writes: &[StreamWrite], result: &Result<Vec<AppendResult>>) -> Self {
        match result {
            Ok(results) => Outcome::Appended(
                writes
                    .iter()
                    .zip(results)
                    .map(|(w, r)| Written {
                        stream: r.stream_id.to_string(),
                        first_version: r.version + 1 - w.events.len() as u64,
                        last_version: r.version,
                        first_position: r.first_position,
                        repeated: r.repeated,
                    })
                    .collect(),
            ),
            Err(Error::Conflict(c)) => Outcome::Conflict {
                stream: c.stream.to_string(),
                actual: c.actual,
            },
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// A line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Line {
    Invoke {
        session: String,
        id: u64,
        at: u64,
        op: Op,
    },
    Complete {
        session: String,
        id: u64,
        at: u64,
        outcome: Outcome,
    },
}

impl Line {
    /// The line as a child prints it.
    pub fn to_text(&self) -> String {
        format!(
            "{LINE}{}",
            serde_json::to_string(self).expect("a line serializes")
        )
    }

    /// The history lines among a child's stdout lines (a line cut by a kill
    /// is not one).
    pub fn parse_all<'a>(lines: impl IntoIterator<Item = &'a String>) -> Vec<Line> {
        lines
            .into_iter()
            .filter_map(|l| serde_json::from_str(l.strip_prefix(LINE)?).ok())
            .collect()
    }
}

/// Where a recorder puts its lines.
#[derive(Clone)]
enum Sink {
    Memory(Arc<Mutex<Vec<Line>>>),
    /// Printed on stdout, one flushed line each, for the parent to read.
    Stdout,
}

/// Logs the operations of any number of sessions.
#[derive(Clone)]
pub struct Recorder {
    sink: Sink,
    next: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder keeping its lines in memory, and the lines.
    pub fn memory() -> (Recorder, Arc<Mutex<Vec<Line>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            sink: Sink::Memory(lines.clone()),
            next: Arc::new(AtomicU64::new(0)),
        };
        (recorder, lines)
    }

    /// A recorder printing its lines on stdout.
    pub fn stdout() -> Recorder {
        Recorder {
            sink: Sink::Stdout,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    fn put(&self, line: Line) {
        match &self.sink {
            Sink::Memory(lines) => lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line),
            Sink::Stdout => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", line.to_text()).expect("stdout");
                out.flush().expect("stdout");
            }
        }
    }

    /// A session: one sequence of operations (a task, a thread), named
    /// uniquely in the history.
    pub fn session(&self, name: impl Into<String>) -> Session {
        Session {
            name: name.into(),
            recorder: self.clone(),
        }
    }
}

/// An operation invoked and not yet completed.
#[derive(Debug)]
#[must_use]
pub struct Invocation(u64);

/// One session of a [`Recorder`].
#[derive(Clone)]
pub struct Session {
    name: String,
    recorder: Recorder,
}

impl Session {
    /// Logs the invocation of `op`, now.
    pub fn invoke(&self, op: Op) -> Invocation {
        let id = self.recorder.next.fetch_add(1, Ordering::Relaxed);
        self.recorder.put(Line::Invoke {
            session: self.name.clone(),
            id,
            at: now(),
            op,
        });
        Invocation(id)
    }

    /// Logs the completion of `invocation`, now. It takes the invocation,
    /// so that none completes twice.
    #[allow(clippy::needless_pass_by_value)]
    pub fn complete(&self, invocation: Invocation, outcome: Outcome) {
        self.recorder.put(Line::Complete {
            session: self.name.clone(),
            id: invocation.0,
            at: now(),
            outcome,
        });
    }

    /// `store.append_to_streams(writes)`, logged.
    pub async fn append_to_streams<S: EventStore>(
        &self,
        store: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>> {
        let invocation = self.invoke(Op::Append(logged_writes(&writes)));
        let result = store.append_to_streams(writes.clone()).await;
        self.complete(invocation, Outcome::of_append(&writes, &result));
        result
    }

    /// `store.append(stream, expected, events)`, logged.
    pub async fn append<S: EventStore>(
        &self,
        store: &S,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let write = StreamWrite::new(stream.clone(), expected, events);
        let mut results = self.append_to_streams(store, vec![write]).await?;
        results.pop().ok_or_else(|| Error::Corrupt {
            detail: "no result for an append".to_owned(),
        })
    }

    /// Reads the whole of `stream` from version `from`, logged.
    pub async fn read_stream<S: EventStore>(
        &self,
        store: &S,
        stream: &StreamId,
        from: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let invocation = self.invoke(Op::ReadStream {
            stream: stream.to_string(),
            from,
            to: None,
        });
        let read = read_to_end(store.read_stream(stream, ReadRange::starting_at(from))).await;
        self.complete(invocation, read_outcome(&read));
        read.1.map(|()| read.0)
    }

    /// Reads `$all` from position `from`, logged.
    pub async fn read_all<S: EventStore>(
        &self,
        store: &S,
        from: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let invocation = self.invoke(Op::ReadAll { from });
        let read = read_to_end(store.read_all(from)).await;
        self.complete(invocation, read_outcome(&read));
        read.1.map(|()| read.0)
    }

    /// `store.stream_version(stream)`, logged.
    pub async fn stream_version<S: EventStore>(&self, store: &S, stream: &StreamId) -> Result<u64> {
        let invocation = self.invoke(Op::Version {
            stream: stream.to_string(),
        });
        let version = store.stream_version(stream).await;
        self.complete(invocation, number_outcome(&version));
        version
    }
}

fn logged_writes(writes: &[StreamWrite]) -> Vec<Write> {
    writes
        .iter()
        .map(|w| Write {
            stream: w.stream.to_string(),
            expected: w.expected.to_string(),
            ids: w.events.iter().map(|e| e.event_id).collect(),
        })
        .collect()
}

async fn read_to_end(mut events: EventStream) -> (Vec<RecordedEvent>, Result<()>) {
    let mut out = Vec::new();
    while let Some(e) = next(&mut events).await {
        match e {
            Ok(e) => out.push(e),
            Err(e) => return (out, Err(e)),
        }
    }
    (out, Ok(()))
}

fn read_outcome(read: &(Vec<RecordedEvent>, Result<()>)) -> Outcome {
    Outcome::Read {
        events: read.0.iter().map(Seen::of).collect(),
        whole: read.1.is_ok(),
    }
}

fn number_outcome(n: &Result<u64>) -> Outcome {
    match n {
        Ok(n) => Outcome::Number(*n),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// A store whose every append, read, fold and version is logged in a
/// session: what a [`Repository`](es_core::Repository) does, seen as a
/// history. Snapshots, lookups and the rest pass through unlogged.
#[derive(Clone)]
pub struct Recorded<S> {
    store: S,
    session: Session,
}

impl<S> Recorded<S> {
    pub fn new(store: S, session: Session) -> Self {
        Recorded { store, session }
    }
}

impl<S: EventStore + Clone> EventStore for Recorded<S> {
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send {
        let (store, session) = (self.store.clone(), self.session.clone());
        async move { session.append_to_streams(&store, writes).await }
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        let invocation = self.session.invoke(Op::ReadStream {
            stream: stream.to_string(),
            from: range.start,
            to: range.end,
        });
        Box::pin(LoggedRead::new(
            self.store.read_stream(stream, range),
            self.session.clone(),
            invocation,
        ))
    }

    fn fold_stream<F>(
        &self,
        stream: &StreamId,
        range: ReadRange,
        mut fold: F,
    ) -> impl Future<Output = Result<()>> + Send
    where
        F: FnMut(EventRef<'_>) -> Result<ControlFlow<()>> + Send,
    {
        let session = self.session.clone();
        let invocation = session.invoke(Op::Fold {
            stream: stream.to_string(),
            from: range.start,
        });
        let store = self.store.clone();
        let (stream, end) = (stream.clone(), range.end);
        async move {
            let mut seen = Vec::new();
            let mut stopped = false;
            let folded = store
                .fold_stream(&stream, range, |e| {
                    seen.push(Seen {
                        stream: e.stream_id.to_string(),
                        version: e.version,
                        position: None,
                        id: None,
                    });
                    let flow = fold(e)?;
                    stopped |= flow.is_break();
                    Ok(flow)
                })
                .await;
            let whole = folded.is_ok() && !stopped && end.is_none();
            session.complete(
                invocation,
                Outcome::Read {
                    events: seen,
                    whole,
                },
            );
            folded
        }
    }

    fn read_all(&self, from: u64) -> EventStream {
        let invocation = self.session.invoke(Op::ReadAll { from });
        Box::pin(LoggedRead::new(
            self.store.read_all(from),
            self.session.clone(),
            invocation,
        ))
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send {
        let (store, session, stream) = (self.store.clone(), self.session.clone(), stream.clone());
        async move { session.stream_version(&store, &stream).await }
    }

    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send {
        let (store, session) = (self.store.clone(), self.session.clone());
        async move {
            let invocation = session.invoke(Op::LastPosition);
            let position = store.last_position().await;
            session.complete(invocation, number_outcome(&position));
            position
        }
    }

    fn watch(&self) -> Watch {
        self.store.watch()
    }

    fn find_event(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send {
        self.store.find_event(event_id)
    }

    fn read_correlated(&self, correlation_id: Uuid) -> EventStream {
        self.store.read_correlated(correlation_id)
    }

    fn event_types(&self) -> impl Future<Output = Result<Vec<StoredEventType>>> + Send {
        self.store.event_types()
    }
}

impl<S: SnapshotStore + Clone> SnapshotStore for Recorded<S> {
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        self.store.load_snapshot(stream)
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        self.store.save_snapshot(snapshot)
    }

    fn queue_snapshot(&self, snapshot: Snapshot) {
        self.store.queue_snapshot(snapshot);
    }

    fn delete_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        self.store.delete_snapshot(stream)
    }
}

/// A read stream that logs what its reader saw when it ends, or when the
/// reader drops it (then as not whole).
struct LoggedRead {
    events: EventStream,
    session: Session,
    invocation: Option<Invocation>,
    seen: Vec<Seen>,
}

impl LoggedRead {
    fn new(events: EventStream, session: Session, invocation: Invocation) -> Self {
        LoggedRead {
            events,
            session,
            invocation: Some(invocation),
            seen: Vec::new(),
        }
    }

    fn finish(&mut self, whole: bool) {
        if let Some(invocation) = self.invocation.take() {
            let events = std::mem::take(&mut self.seen);
            self.session
                .complete(invocation, Outcome::Read { events, whole });
        }
    }
}

impl Stream for LoggedRead {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.events.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(e))) => self.seen.push(Seen::of(e)),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for LoggedRead {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// The final contents of a store: `$all`, as [`check`] takes it.
pub async fn final_state<S: EventStore>(store: &S) -> Vec<Seen> {
    let (events, read) = read_to_end(store.read_all(0)).await;
    read.expect("the final state reads");
    events.iter().map(Seen::of).collect()
}

// ---------------------------------------------------------------------------
// The checker.
// ---------------------------------------------------------------------------

/// Something the history and the final state show that the store must
/// never do. `op` names an operation as `session#id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A completion without its invocation, or a line twice.
    Malformed { detail: String },
    /// A stream read (or fold) is not the final stream from where it starts.
    StreamReadNotPrefix { op: String, detail: String },
    /// A `$all` read is not the final `$all` from where it starts.
    AllReadNotPrefix { op: String, detail: String },
    /// A read saw an event that only failed appends carried.
    SawFailedAppend { op: String, id: Uuid },
    /// The final state holds an event that only failed appends carried.
    FailedAppendStored { op: String, id: Uuid },
    /// An acknowledged append is not in the final state as it was told.
    AcknowledgedLost { op: String, detail: String },
    /// An append is partly stored, or a read saw part of one.
    PartialAppend { op: String, detail: String },
    /// A session read less than it had seen before.
    NotMonotonic { op: String, detail: String },
    /// A version reported (by a read or a conflict) was never the end of an
    /// append invoked before the report.
    NotVisible { op: String, detail: String },
    /// An append invoked after position `observed` was seen stored an event
    /// at `position` below it.
    LateFill {
        op: String,
        position: u64,
        observed: u64,
    },
    /// The final state holds an event no append of the history carried.
    Unattempted { id: Uuid },
}

impl Violation {
    /// The kind, for tests and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::Malformed { .. } => "malformed",
            Violation::StreamReadNotPrefix { .. } => "stream read not a prefix",
            Violation::AllReadNotPrefix { .. } => "$all read not a prefix",
            Violation::SawFailedAppend { .. } => "read saw a failed append",
            Violation::FailedAppendStored { .. } => "failed append stored",
            Violation::AcknowledgedLost { .. } => "acknowledged append lost",
            Violation::PartialAppend { .. } => "partial append",
            Violation::NotMonotonic { .. } => "not monotonic",
            Violation::NotVisible { .. } => "version not visible",
            Violation::LateFill { .. } => "late fill",
            Violation::Unattempted { .. } => "unattempted event stored",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {self:?}", self.kind())
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations in the history, completed or not.
    pub operations: usize,
    pub appends: usize,
    pub reads: usize,
    /// Operations never completed (in flight at a crash).
    pub in_flight: usize,
    /// Events of the final state.
    pub events: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    /// Fails with every violation found.
    #[track_caller]
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.violations.is_empty(),
            "{what}: {} history violations, the first ones:\n{}",
            self.violations.len(),
            self.violations
                .iter()
                .take(20)
                .map(|v| format!("  {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// An operation of the history.
struct Operation<'a> {
    name: String,
    session: &'a str,
    invoked: u64,
    completed: Option<u64>,
    op: &'a Op,
    outcome: Option<&'a Outcome>,
}

/// How an append ended, for the events it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acknowledged,
    Failed,
    Unknown,
}

fn fate(o: &Operation<'_>) -> Fate {
    match o.outcome {
        Some(Outcome::Appended(_)) => Fate::Acknowledged,
        Some(_) => Fate::Failed,
        None => Fate::Unknown,
    }
}

/// The final state, indexed.
struct Final<'a> {
    all: &'a [Seen],
    /// Per stream, its events by version - 1.
    streams: HashMap<&'a str, Vec<&'a Seen>>,
    by_id: HashMap<Uuid, &'a Seen>,
}

impl<'a> Final<'a> {
    fn new(all: &'a [Seen]) -> Self {
        let mut streams: HashMap<&str, Vec<&Seen>> = HashMap::new();
        let mut by_id = HashMap::new();
        for e in all {
            streams.entry(e.stream.as_str()).or_default().push(e);
            if let Some(id) = e.id {
                by_id.insert(id, e);
            }
        }
        for events in streams.values_mut() {
            events.sort_by_key(|e| e.version);
        }
        Final {
            all,
            streams,
            by_id,
        }
    }

    fn stream(&self, stream: &str) -> &[&'a Seen] {
        self.streams.get(stream).map_or(&[], Vec::as_slice)
    }
}

/// Whether a read event is the final one (what a fold cannot see, not
/// compared).
fn matches(seen: &Seen, stored: &Seen) -> bool {
    seen.stream == stored.stream
        && seen.version == stored.version
        && seen.position.is_none_or(|p| Some(p) == stored.position)
        && seen.id.is_none_or(|id| Some(id) == stored.id)
}

/// Checks `lines` against the final state `all` (every event of the store,
/// in position order, with ids and positions).
pub fn check(lines: &[Line], all: &[Seen]) -> Report {
    let mut report = Report {
        events: all.len(),
        ..Report::default()
    };
    let violations = &mut report.violations;
    // Pair invocations with completions.
    let mut ops: Vec<Operation<'_>> = Vec::new();
    let mut index: HashMap<(&str, u64), usize> = HashMap::new();
    for line in lines {
        match line {
            Line::Invoke {
                session,
                id,
                at,
                op,
            } => {
                if index.insert((session.as_str(), *id), ops.len()).is_some() {
                    violations.push(Violation::Malformed {
                        detail: format!("{session}#{id} invoked twice"),
                    });
                }
                ops.push(Operation {
                    name: format!("{session}#{id}"),
                    session,
                    invoked: *at,
                    completed: None,
                    op,
                    outcome: None,
                });
            }
            Line::Complete {
                session,
                id,
                at,
                outcome,
            } => match index.get(&(session.as_str(), *id)) {
                Some(&i) if ops[i].outcome.is_none() => {
                    ops[i].completed = Some(*at);
                    ops[i].outcome = Some(outcome);
                }
                _ => violations.push(Violation::Malformed {
                    detail: format!("{session}#{id} completed without an invocation, or twice"),
                }),
            },
        }
    }
    report.operations = ops.len();
    report.in_flight = ops.iter().filter(|o| o.outcome.is_none()).count();
    report.appends = ops.iter().filter(|o| matches!(o.op, Op::Append(_))).count();
    report.reads = ops.len() - report.appends;
    let fin = Final::new(all);

    // Which appends carried each id, and which one stored it.
    let mut carriers: HashMap<Uuid, Vec<usize>> = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        if let Op::Append(writes) = o.op {
            for id in writes.iter().flat_map(|w| &w.ids) {
                carriers.entry(*id).or_default().push(i);
            }
        }
    }
    let failed_only: HashSet<Uuid> = carriers
        .iter()
        .filter(|(_, c)| c.iter().all(|&i| fate(&ops[i]) == Fate::Failed))
        .map(|(id, _)| *id)
        .collect();
    // The append that stored each stored id: one acknowledged as writing it
    // (not as a repeat), else one in flight.
    let storer = |id: &Uuid| -> Option<usize> {
        let c = carriers.get(id)?;
        c.iter()
            .copied()
            .find(|&i| {
                matches!(ops[i].outcome, Some(Outcome::Appended(w)) if writes_of(ops[i].op).iter().zip(w).any(|(write, written)| !written.repeated && write.ids.contains(id)))
            })
            .or_else(|| c.iter().copied().find(|&i| fate(&ops[i]) == Fate::Unknown))
    };
    let stored_by: HashMap<Uuid, usize> = fin
        .by_id
        .keys()
        .filter_map(|id| Some((*id, storer(id)?)))
        .collect();

    check_appends(&ops, &fin, &failed_only, violations);
    for o in &ops {
        if let Some(outcome) = o.outcome {
            check_read(o, outcome, &ops, &fin, &failed_only, &stored_by, violations);
        }
    }
    check_sessions(&ops, violations);
    check_late_fill(&ops, &fin, &stored_by, violations);
    for e in fin.all {
        if let Some(id) = e.id
            && !carriers.contains_key(&id)
        {
            violations.push(Violation::Unattempted { id });
        }
    }
    report
}

fn writes_of(op: &Op) -> &[Write] {
    match op {
        Op::Append(writes) => writes,
        _ => &[],
    }
}

/// Every acknowledged append stored as told; every append whole or not at
/// all; nothing only failed appends carried is stored.
fn check_appends(
    ops: &[Operation<'_>],
    fin: &Final<'_>,
    failed_only: &HashSet<Uuid>,
    violations: &mut Vec<Violation>,
) {
    for o in ops {
        let writes = writes_of(o.op);
        if writes.is_empty() {
            continue;
        }
        let ids: Vec<Uuid> = writes.iter().flat_map(|w| w.ids.iter().copied()).collect();
        let stored = ids.iter().filter(|id| fin.by_id.contains_key(id)).count();
        // (An acknowledged one missing events is reported event by event.)
        if fate(o) == Fate::Unknown && stored != 0 && stored != ids.len() {
            violations.push(Violation::PartialAppend {
                op: o.name.clone(),
                detail: format!("{stored} of its {} events are stored", ids.len()),
            });
        }
        for id in &ids {
            if failed_only.contains(id) && fin.by_id.contains_key(id) {
                violations.push(Violation::FailedAppendStored {
                    op: o.name.clone(),
                    id: *id,
                });
            }
        }
        let Some(Outcome::Appended(written)) = o.outcome else {
            continue;
        };
        for (write, told) in writes.iter().zip(written) {
            for (k, id) in write.ids.iter().enumerate() {
                let k = k as u64;
                let want_version = told.first_version + k;
                let want_position = told.first_position.map(|p| p + k);
                match fin.by_id.get(id) {
                    None => violations.push(Violation::AcknowledgedLost {
                        op: o.name.clone(),
                        detail: format!("event {id} of `{}` is not stored", write.stream),
                    }),
                    Some(e)
                        if e.stream != write.stream
                            || e.version != want_version
                            || (want_position.is_some() && e.position != want_position) =>
                    {
                        violations.push(Violation::AcknowledgedLost {
                            op: o.name.clone(),
                            detail: format!(
                                "event {id} was told `{}` version {want_version} position {want_position:?}, and is stored at `{}` version {} position {:?}",
                                write.stream, e.stream, e.version, e.position
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// The last version of `stream` stored by the append that stored its
/// event at `version` (the end of that append in the stream).
fn end_of_append(
    fin: &Final<'_>,
    stored_by: &HashMap<Uuid, usize>,
    stream: &str,
    version: u64,
) -> Option<(u64, Option<usize>)> {
    let events = fin.stream(stream);
    let e = events.get(usize::try_from(version).ok()?.checked_sub(1)?)?;
    let storer = e.id.and_then(|id| stored_by.get(&id).copied());
    let mut end = version;
    while let Some(next) = events.get(usize::try_from(end).ok()?) {
        let next_storer = next.id.and_then(|id| stored_by.get(&id).copied());
        if storer.is_none() || next_storer != storer {
            break;
        }
        end += 1;
    }
    Some((end, storer))
}

/// `version` of `stream`, reported by `o`, was visible: 0, or the end of an
/// append invoked before `o` completed.
fn visible(
    o: &Operation<'_>,
    ops: &[Operation<'_>],
    fin: &Final<'_>,
    stored_by: &HashMap<Uuid, usize>,
    stream: &str,
    version: u64,
) -> Option<String> {
    if version == 0 {
        return None;
    }
    let Some((end, storer)) = end_of_append(fin, stored_by, stream, version) else {
        return Some(format!(
            "`{stream}` reported at version {version}, which the final state does not reach"
        ));
    };
    if end != version {
        return Some(format!(
            "`{stream}` reported at version {version}, inside an append that ends at {end}"
        ));
    }
    match storer {
        Some(s) if ops[s].invoked >= o.completed.unwrap_or(u64::MAX) => Some(format!(
            "`{stream}` reported at version {version}, by an append invoked only after the report"
        )),
        _ => None,
    }
}

fn check_read(
    o: &Operation<'_>,
    outcome: &Outcome,
    ops: &[Operation<'_>],
    fin: &Final<'_>,
    failed_only: &HashSet<Uuid>,
    stored_by: &HashMap<Uuid, usize>,
    violations: &mut Vec<Violation>,
) {
    let name = || o.name.clone();
    match (o.op, outcome) {
        (Op::ReadStream { stream, from, to }, Outcome::Read { events, whole }) => {
            check_stream_read(
                o, stream, *from, *to, events, *whole, fin, stored_by, violations,
            );
        }
        (Op::Fold { stream, from }, Outcome::Read { events, whole }) => {
            check_stream_read(
                o, stream, *from, None, events, *whole, fin, stored_by, violations,
            );
        }
        (Op::ReadAll { from }, Outcome::Read { events, whole }) => {
            let start = fin
                .all
                .iter()
                .position(|e| e.position.unwrap_or(0) >= *from)
                .unwrap_or(fin.all.len());
            let expected = &fin.all[start..];
            let at = events
                .iter()
                .zip(expected)
                .position(|(seen, stored)| !matches(seen, stored));
            if at.is_some() || events.len() > expected.len() {
                violations.push(Violation::AllReadNotPrefix {
                    op: name(),
                    detail: format!(
                        "from {from}: saw {} events, the final state has {} from there; first difference at {:?}",
                        events.len(),
                        expected.len(),
                        at.map(|a| (&events[a], expected.get(a)))
                    ),
                });
            } else if *whole && let Some(last) = events.last() {
                // A whole read ends at the end of an append: its last
                // event is the last position of the append storing it.
                let storer = last.id.and_then(|id| stored_by.get(&id));
                let end = expected[events.len()..]
                    .iter()
                    .take_while(|e| {
                        storer.is_some() && e.id.and_then(|id| stored_by.get(&id)) == storer
                    })
                    .count();
                if end > 0 {
                    violations.push(Violation::PartialAppend {
                        op: name(),
                        detail: format!(
                            "$all read from {from} ends at position {:?}, inside an append",
                            last.position
                        ),
                    });
                }
            }
            for seen in events {
                if let Some(id) = seen.id
                    && failed_only.contains(&id)
                {
                    violations.push(Violation::SawFailedAppend { op: name(), id });
                }
            }
        }
        (Op::Version { stream }, Outcome::Number(v)) => {
            if let Some(detail) = visible(o, ops, fin, stored_by, stream, *v) {
                violations.push(Violation::NotVisible { op: name(), detail });
            }
        }
        (Op::Append(_), Outcome::Conflict { stream, actual }) => {
            if let Some(detail) = visible(o, ops, fin, stored_by, stream, *actual) {
                violations.push(Violation::NotVisible {
                    op: name(),
                    detail: format!("the conflict's actual version: {detail}"),
                });
            }
        }
        _ => {}
    }
    if let Outcome::Read { events, .. } = outcome
        && !matches!(o.op, Op::ReadAll { .. })
    {
        for seen in events {
            if let Some(id) = seen.id
                && failed_only.contains(&id)
            {
                violations.push(Violation::SawFailedAppend { op: name(), id });
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_stream_read(
    o: &Operation<'_>,
    stream: &str,
    from: u64,
    to: Option<u64>,
    events: &[Seen],
    whole: bool,
    fin: &Final<'_>,
    stored_by: &HashMap<Uuid, usize>,
    violations: &mut Vec<Violation>,
) {
    let first = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
    let expected: Vec<&Seen> = fin
        .stream(stream)
        .iter()
        .skip(first)
        .take_while(|e| to.is_none_or(|to| e.version <= to))
        .copied()
        .collect();
    let at = events
        .iter()
        .zip(&expected)
        .position(|(seen, stored)| !matches(seen, stored));
    if at.is_some() || events.len() > expected.len() {
        violations.push(Violation::StreamReadNotPrefix {
            op: o.name.clone(),
            detail: format!(
                "`{stream}` from {from}: saw {} events, the final stream has {} from there; first difference at {:?}",
                events.len(),
                expected.len(),
                at.map(|a| (&events[a], expected.get(a)))
            ),
        });
        return;
    }
    if whole
        && to.is_none()
        && let Some(last) = events.last()
        && let Some((end, _)) = end_of_append(fin, stored_by, stream, last.version)
        && end != last.version
    {
        violations.push(Violation::PartialAppend {
            op: o.name.clone(),
            detail: format!(
                "read of `{stream}` ends at version {}, inside an append that ends at {end}",
                last.version
            ),
        });
    }
}

/// Per session, in order: what it has seen never shrinks.
fn check_sessions(ops: &[Operation<'_>], violations: &mut Vec<Violation>) {
    let mut sessions: BTreeMap<&str, Vec<&Operation<'_>>> = BTreeMap::new();
    for o in ops {
        sessions.entry(o.session).or_default().push(o);
    }
    for (_, mut list) in sessions {
        list.sort_by_key(|o| o.invoked);
        let mut versions: HashMap<&str, u64> = HashMap::new();
        let mut position = 0u64;
        for o in list {
            let Some(outcome) = o.outcome else { continue };
            let mut fail = |detail: String| {
                violations.push(Violation::NotMonotonic {
                    op: o.name.clone(),
                    detail,
                });
            };
            match (o.op, outcome) {
                (
                    Op::ReadStream { stream, from, .. } | Op::Fold { stream, from },
                    Outcome::Read { events, whole },
                ) => {
                    let to = match o.op {
                        Op::ReadStream { to, .. } => *to,
                        _ => None,
                    };
                    let floor = versions.get(stream.as_str()).copied().unwrap_or(0);
                    let last = events.last().map_or(0, |e| e.version);
                    if *whole
                        && floor >= (*from).max(1)
                        && to.is_none_or(|to| to >= floor)
                        && last < floor
                    {
                        fail(format!(
                            "read `{stream}` up to version {last}, after seeing version {floor}"
                        ));
                    }
                    versions.insert(stream.as_str(), floor.max(last));
                    if let Some(p) = events.iter().filter_map(|e| e.position).max() {
                        position = position.max(p);
                    }
                }
                (Op::ReadAll { from }, Outcome::Read { events, whole }) => {
                    let last = events.iter().filter_map(|e| e.position).max().unwrap_or(0);
                    if *whole && position >= (*from).max(1) && last < position {
                        fail(format!(
                            "read $all up to position {last}, after seeing position {position}"
                        ));
                    }
                    position = position.max(last);
                    for e in events {
                        let v = versions.entry(e.stream.as_str()).or_default();
                        *v = (*v).max(e.version);
                    }
                }
                (Op::Version { stream }, Outcome::Number(v))
                | (Op::Append(_), Outcome::Conflict { stream, actual: v }) => {
                    let floor = versions.get(stream.as_str()).copied().unwrap_or(0);
                    if *v < floor {
                        fail(format!(
                            "`{stream}` reported at version {v}, after seeing version {floor}"
                        ));
                    }
                    versions.insert(stream.as_str(), floor.max(*v));
                }
                (Op::LastPosition, Outcome::Number(p)) => {
                    if *p < position {
                        fail(format!(
                            "the last position reported {p}, after seeing position {position}"
                        ));
                    }
                    position = position.max(*p);
                }
                (Op::Append(writes), Outcome::Appended(told)) => {
                    for (w, t) in writes.iter().zip(told) {
                        let v = versions.entry(w.stream.as_str()).or_default();
                        *v = (*v).max(t.last_version);
                        if let Some(p) = t.first_position {
                            position = position.max(p + w.ids.len() as u64 - 1);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// No append invoked after a position was observed stores an event below
/// it.
fn check_late_fill(
    ops: &[Operation<'_>],
    fin: &Final<'_>,
    stored_by: &HashMap<Uuid, usize>,
    violations: &mut Vec<Violation>,
) {
    // Observations: (completion time, highest position seen).
    let mut observations: Vec<(u64, u64)> = ops
        .iter()
        .filter_map(|o| {
            let at = o.completed?;
            let highest = match o.outcome? {
                Outcome::Read { events, .. } => events.iter().filter_map(|e| e.position).max(),
                Outcome::Appended(told) => told
                    .iter()
                    .zip(writes_of(o.op))
                    .filter_map(|(t, w)| Some(t.first_position? + w.ids.len() as u64 - 1))
                    .max(),
                Outcome::Number(p) if matches!(o.op, Op::LastPosition) => Some(*p),
                _ => None,
            }?;
            Some((at, highest))
        })
        .collect();
    observations.sort_unstable();
    let mut highest = 0;
    let prefix: Vec<(u64, u64)> = observations
        .into_iter()
        .map(|(at, p)| {
            highest = highest.max(p);
            (at, highest)
        })
        .collect();
    // The highest position observed strictly before `t`.
    let observed_before = |t: u64| -> u64 {
        let n = prefix.partition_point(|(at, _)| *at < t);
        n.checked_sub(1).map_or(0, |i| prefix[i].1)
    };
    for e in fin.all {
        let (Some(id), Some(position)) = (e.id, e.position) else {
            continue;
        };
        let Some(&storer) = stored_by.get(&id) else {
            continue;
        };
        let observed = observed_before(ops[storer].invoked);
        if position < observed {
            violations.push(Violation::LateFill {
                op: ops[storer].name.clone(),
                position,
                observed,
            });
        }
    }
}
