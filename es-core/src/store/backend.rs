//! What store implementations need and applications do not: the append
//! rules every store shares (so all agree on every case of the contract),
//! the input check, and the commit notifier behind [`Watch`](super::Watch).
//!
//! A new store calls [`check_append`] on every append before anything else,
//! decides each stream write with [`decide_append`] inside its transaction,
//! answers repeats and empty writes with [`AppendDecision::settled`], and
//! calls [`Notifier::notify`] after each commit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_core::Stream;
use uuid::Uuid;

use crate::envelope::RecordedEvent;
use crate::error::{Conflict, Error, LimitError, Result};
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::name::check_name;
use crate::store::{AppendResult, EventStream, Limits, StreamWrite};

pub use super::watch::Notifier;

/// Where an event id of an append is already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAt {
    /// The stream holding it.
    pub stream: StreamId,
    /// Its version there.
    pub version: u64,
    /// Its global position.
    pub position: u64,
}

/// What a store must do with one stream write, given what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendDecision {
    /// Store the events after version `current`.
    Write,
    /// The events are already stored: answer with the original run,
    /// versions `first_version..=last_version` at positions
    /// `first_position..=last_position`.
    Repeat {
        /// The version of the first event.
        first_version: u64,
        /// The version of the last event.
        last_version: u64,
        /// The position of the first event.
        first_position: u64,
        /// The position of the last event.
        last_position: u64,
    },
}

/// The shared append rule every store applies, so all stores agree on every
/// case of the idempotency table (see [`EventStore`](crate::EventStore)).
///
/// `current` is the stream's version; `found[i]` is where the id of event `i`
/// is already stored, if anywhere. Every caller-supplied number is compared
/// with checked arithmetic: `Exact(u64::MAX)` is a conflict, never an
/// overflow.
///
/// # Errors
///
/// [`Error::Conflict`] or [`Error::DuplicateEvent`], as the table says.
pub fn decide_append(
    write: &StreamWrite,
    current: u64,
    found: &[Option<StoredAt>],
) -> Result<AppendDecision> {
    let conflict = || -> Error {
        Conflict {
            stream: write.stream.clone(),
            expected: write.expected,
            actual: current,
        }
        .into()
    };
    let Some((index, first_found)) = found
        .iter()
        .enumerate()
        .find_map(|(i, f)| Some((i, f.as_ref()?)))
    else {
        // Nothing stored yet: the ordinary optimistic-concurrency check.
        return if write.expected.accepts(current) {
            Ok(AppendDecision::Write)
        } else {
            Err(conflict())
        };
    };
    let duplicate = || Error::DuplicateEvent {
        event_id: write.events.get(index).map_or(Uuid::nil(), |e| e.event_id),
        stream: first_found.stream.clone(),
        version: first_found.version,
    };
    let pinned = write.expected.pinned();
    // Every id stored as one run of this stream: a repeat, as long as a
    // pinned expected version points at the same place.
    if let Some(run) = repeated_run(&write.stream, found) {
        return match pinned {
            Some(p) if p.checked_add(1) != Some(run.first_version()) => {
                Err(if write.expected.accepts(current) {
                    duplicate()
                } else {
                    conflict()
                })
            }
            _ => Ok(run),
        };
    }
    // A partial overlap. When it starts where a pinned version says the
    // append goes, it is a retry whose events differ from the original
    // (KurrentDB's "corrupted idempotency"); otherwise report the version
    // mismatch first, as a plain append would.
    let retry_of_other = index == 0
        && pinned.is_some_and(|p| {
            first_found.stream == write.stream && p.checked_add(1) == Some(first_found.version)
        });
    if !retry_of_other && !write.expected.accepts(current) {
        Err(conflict())
    } else {
        Err(duplicate())
    }
}

/// `Some(Repeat)` when every id is stored, in order, as consecutive versions of `stream`.
fn repeated_run(stream: &StreamId, found: &[Option<StoredAt>]) -> Option<AppendDecision> {
    let first = found.first()?.as_ref()?;
    let last = found.last()?.as_ref()?;
    let contiguous = found.iter().enumerate().all(|(i, at)| {
        at.as_ref().is_some_and(|at| {
            &at.stream == stream
                && u64::try_from(i)
                    .ok()
                    .and_then(|i| first.version.checked_add(i))
                    == Some(at.version)
        })
    });
    contiguous.then_some(AppendDecision::Repeat {
        first_version: first.version,
        last_version: last.version,
        first_position: first.position,
        last_position: last.position,
    })
}

impl AppendDecision {
    /// The answer to `write` when nothing is to be written: the original
    /// result of a repeat, or the stream's version for an empty append.
    /// `None` when the events must be written after version `current`.
    pub fn settled(&self, write: &StreamWrite, current: u64) -> Option<AppendResult> {
        match *self {
            AppendDecision::Repeat {
                last_version,
                first_position,
                last_position,
                ..
            } => Some(AppendResult {
                stream_id: write.stream.clone(),
                version: last_version,
                first_position: Some(first_position),
                last_position: Some(last_position),
                repeated: true,
            }),
            AppendDecision::Write if write.events.is_empty() => Some(AppendResult {
                stream_id: write.stream.clone(),
                version: current,
                first_position: None,
                last_position: None,
                repeated: false,
            }),
            AppendDecision::Write => None,
        }
    }

    fn first_version(&self) -> u64 {
        match self {
            AppendDecision::Write => 0,
            AppendDecision::Repeat { first_version, .. } => *first_version,
        }
    }
}

/// The deepest nesting of metadata `extra` values: with the metadata object
/// and the map around them, what a JSON reader with the usual limit of 128
/// levels reads back.
pub const MAX_METADATA_DEPTH: usize = 100;

/// The nesting depth of the deepest `extra` value when it is over `limit`.
/// Walks without recursion, so a hostile value cannot exhaust the stack.
fn metadata_depth(metadata: &Metadata, limit: usize) -> Option<usize> {
    let mut stack: Vec<(&serde_json::Value, usize)> =
        metadata.extra.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > limit {
            return Some(depth);
        }
        match value {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    None
}

/// An append that passed [`check_append`], with each event's metadata in its
/// stored form, serialized once.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedAppend {
    /// The writes, as given.
    pub writes: Vec<StreamWrite>,
    /// The stored form of each event's metadata (`None` when empty), write by
    /// write and event by event: `metadata[w][e]` is event `e` of write `w`.
    pub metadata: Vec<Vec<Option<String>>>,
}

/// Checks an append against `limits` and the shape rules every store
/// shares: names follow the [name rule](crate::name), one aggregate type per
/// stream write, each stream and each event id at most once. Serializes each
/// event's metadata once, for the store to write as it is.
///
/// # Errors
///
/// [`Error::Limit`], [`Error::InvalidName`] or [`Error::InvalidEvent`], for
/// the first rule broken.
pub fn check_append(limits: &Limits, writes: Vec<StreamWrite>) -> Result<CheckedAppend> {
    let over = |what, size: usize, limit: usize| {
        if size > limit {
            Err(Error::Limit(LimitError { what, size, limit }))
        } else {
            Ok(())
        }
    };
    let events: usize = writes.iter().map(|w| w.events.len()).sum();
    over("events in one append", events, limits.max_events_per_append)?;
    let mut total = 0usize;
    let mut ids = std::collections::HashSet::with_capacity(events);
    let mut metadata = Vec::with_capacity(writes.len());
    for (i, write) in writes.iter().enumerate() {
        if writes[..i].iter().any(|w| w.stream == write.stream) {
            return Err(Error::InvalidEvent {
                name: write.stream.to_string(),
                reason: "the same stream appears twice in one append",
            });
        }
        let mut stored = Vec::with_capacity(write.events.len());
        for event in &write.events {
            if !ids.insert(event.event_id) {
                return Err(Error::InvalidEvent {
                    name: event.name.to_string(),
                    reason: "the same event id appears twice in one append",
                });
            }
            for name in [&event.name, &event.aggregate_type] {
                check_name(name).map_err(|reason| Error::InvalidName {
                    name: name.to_string(),
                    reason,
                })?;
            }
            if event.aggregate_type != write.events[0].aggregate_type {
                return Err(Error::InvalidEvent {
                    name: event.name.to_string(),
                    reason: "events of one stream write must share one aggregate type",
                });
            }
            over(
                "event payload bytes",
                event.payload.len(),
                limits.max_payload_bytes,
            )?;
            if let Some(depth) = metadata_depth(&event.metadata, MAX_METADATA_DEPTH) {
                return Err(Error::Limit(LimitError {
                    what: "levels of nesting in event metadata",
                    size: depth,
                    limit: MAX_METADATA_DEPTH,
                }));
            }
            let json = event.metadata.to_json();
            let meta = json.as_ref().map_or(0, String::len);
            over("event metadata bytes", meta, limits.max_metadata_bytes)?;
            total = total.saturating_add(event.payload.len() + meta);
            stored.push(json);
        }
        metadata.push(stored);
    }
    over("bytes in one append", total, limits.max_append_bytes)?;
    Ok(CheckedAppend { writes, metadata })
}

/// One failure given to every request of a failed batch: the fieldless
/// errors, [`Error::Io`], [`Error::Corrupt`] and [`Error::WritesRefused`]
/// as themselves (a caller matches on them to stop writing), anything else
/// as [`Error::Backend`] sharing the original, which stays reachable as its
/// `source()`.
pub fn shared_error(error: &Arc<Error>) -> Error {
    match &**error {
        Error::Busy => Error::Busy,
        Error::StorageFull => Error::StorageFull,
        Error::ReadOnly => Error::ReadOnly,
        Error::Closed => Error::Closed,
        Error::SyncFailed => Error::SyncFailed,
        Error::Io { detail } => Error::Io {
            detail: detail.clone(),
        },
        Error::Corrupt { detail } => Error::Corrupt {
            detail: detail.clone(),
        },
        Error::WritesRefused { detail } => Error::WritesRefused {
            detail: detail.clone(),
        },
        _ => Error::Backend(Box::new(SharedError(error.clone()))),
    }
}

/// An error shared by several requesters (see [`shared_error`]). It reads
/// as the error it shares: for an [`Error::Backend`], as the backend's own
/// cause, so the chain of causes says what happened once.
#[derive(Debug, Clone)]
pub struct SharedError(pub Arc<Error>);

impl SharedError {
    /// The shared error.
    pub fn error(&self) -> &Error {
        &self.0
    }

    fn shown(&self) -> &(dyn std::error::Error + 'static) {
        match &*self.0 {
            Error::Backend(cause) => &**cause,
            other => other,
        }
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.shown(), f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.shown().source()
    }
}

/// An empty [`EventStream`], or one that yields a single error.
pub fn stream_of(result: Option<Error>) -> EventStream {
    let mut item = result.map(Err);
    Box::pin(futures_stream(move || Poll::Ready(item.take())))
}

fn futures_stream<F>(f: F) -> impl Stream<Item = Result<RecordedEvent>> + Send
where
    F: FnMut() -> Poll<Option<Result<RecordedEvent>>> + Send + Unpin,
{
    struct FromFn<F>(F);
    impl<F> Stream for FromFn<F>
    where
        F: FnMut() -> Poll<Option<Result<RecordedEvent>>> + Unpin,
    {
        type Item = Result<RecordedEvent>;
        fn poll_next(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Self::Item>> {
            (self.0)()
        }
    }
    FromFn(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExpectedVersion, NewEvent};

    fn write(expected: ExpectedVersion) -> StreamWrite {
        let event = NewEvent::new("t", "e", 1, "{}");
        StreamWrite::new(StreamId::new("t-1").unwrap(), expected, vec![event])
    }

    #[test]
    fn exact_u64_max_with_stored_ids_is_a_conflict_not_an_overflow() {
        let stored = Some(StoredAt {
            stream: StreamId::new("t-1").unwrap(),
            version: 1,
            position: 1,
        });
        for found in [vec![stored.clone()], vec![None]] {
            let decided = decide_append(&write(ExpectedVersion::Exact(u64::MAX)), 1, &found);
            assert!(
                matches!(decided, Err(Error::Conflict(ref c)) if c.actual == 1),
                "{decided:?}"
            );
        }
        let other = Some(StoredAt {
            stream: StreamId::new("t-2").unwrap(),
            version: u64::MAX,
            position: 7,
        });
        let decided = decide_append(&write(ExpectedVersion::Exact(u64::MAX - 1)), 0, &[other]);
        assert!(decided.is_err(), "{decided:?}");
    }
}
