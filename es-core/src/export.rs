//! The export format: one event per line of JSON, with its whole envelope
//! and its payload exactly as stored (sealed personal fields included),
//! and the planning of an import from it.
//!
//! It is what `es export` writes and `es import` reads, and the way to move
//! events between stores of any kind: a copy to another backend, a store
//! split into shards or shards merged. The format is stored by users, so
//! it outlives this code: a field may be added (with a default), never
//! renamed or removed, and unknown fields are refused rather than dropped.
//!
//! An import is two passes over the lines. The first, [`ImportCheck`],
//! refuses a file that cannot import whole before anything is written;
//! the second, [`ImportBatches`], turns the lines into appends of at most
//! a given number of events, each stream's versions continuing where the
//! file left them.
//!
//! ```
//! use es_core::export::{ExportedEvent, ImportBatches, ImportCheck};
//! use es_core::blocking::block_on;
//! use es_core::store::Limits;
//! use es_core::{EventStore, InMemoryStore, StreamId};
//!
//! let file = concat!(
//!     r#"{"stream":"ticket-1","aggregate_type":"ticket","version":1,"#,
//!     r#""event_id":"0190a2d4-7e00-7000-8000-000000000001","name":"Opened","#,
//!     r#""schema_version":1,"occurred_at":"2026-01-01T00:00:00Z","payload":{"title":"printer"}}"#,
//!     "\n\n",
//!     r#"{"stream":"ticket-1","aggregate_type":"ticket","version":2,"#,
//!     r#""event_id":"0190a2d4-7e00-7000-8000-000000000002","name":"Closed","#,
//!     r#""schema_version":1,"occurred_at":"2026-01-01T00:00:01Z","payload":{}}"#,
//! );
//! let events: Vec<ExportedEvent> = file
//!     .lines()
//!     .filter_map(|line| ExportedEvent::parse(line).transpose())
//!     .collect::<Result<_, _>>()?;
//!
//! let mut check = ImportCheck::new(false, Limits::default());
//! for event in &events {
//!     check.check(event)?;
//! }
//! assert_eq!(check.events(), 2);
//!
//! let store = InMemoryStore::new();
//! let mut batches = ImportBatches::new(false, &Limits::default());
//! for (line, event) in events.into_iter().enumerate() {
//!     if let Some(batch) = batches.push(line + 1, event)? {
//!         block_on(store.append_to_streams(batch.writes))?;
//!     }
//! }
//! if let Some(batch) = batches.finish() {
//!     block_on(store.append_to_streams(batch.writes))?;
//! }
//! let version = block_on(store.stream_version(&StreamId::new("ticket-1")?))?;
//! assert_eq!(version, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::store::Limits;
use crate::store::backend::check_append;
use crate::{
    Error, ExpectedVersion, Metadata, NewEvent, Payload, RecordedEvent, StreamId, StreamIdError,
    StreamWrite, Timestamp, Uuid,
};

/// One event of an export: its whole envelope, and its payload as stored
/// (the exact JSON text).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    /// The stream.
    pub stream: String,
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The version in the stream (1-based).
    pub version: u64,
    /// The position in `$all` of the store it was read from; not kept by
    /// an import, which appends at the end of the store it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The event's id, kept by an import (so importing twice is harmless).
    pub event_id: Uuid,
    /// The stored name.
    pub name: String,
    /// The stored schema version.
    pub schema_version: u32,
    /// When the store it was read from recorded it; an import records its
    /// own time (a store's clock is never set by callers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<Timestamp>,
    /// When it happened, kept by an import.
    pub occurred_at: Timestamp,
    /// Who, why, correlation; kept by an import.
    #[serde(default)]
    pub metadata: Metadata,
    /// The payload, as stored.
    pub payload: Box<RawValue>,
}

impl ExportedEvent {
    /// The export of a stored event.
    ///
    /// # Errors
    ///
    /// When the stored payload is not JSON (a damaged store).
    pub fn of(event: &RecordedEvent) -> Result<Self, serde_json::Error> {
        Ok(ExportedEvent {
            stream: event.stream_id.to_string(),
            aggregate_type: event.aggregate_type.to_string(),
            version: event.version,
            position: Some(event.position),
            event_id: event.event_id,
            name: event.name.clone(),
            schema_version: event.schema_version,
            recorded_at: Some(event.recorded_at),
            occurred_at: event.occurred_at,
            metadata: event.metadata.clone(),
            payload: RawValue::from_string(event.payload().as_str().to_owned())?,
        })
    }

    /// One line of an export file: `None` for a blank line.
    ///
    /// # Errors
    ///
    /// When the line is not an exported event (not JSON, a field missing or
    /// of the wrong type, a field this version does not know).
    pub fn parse(line: &str) -> Result<Option<Self>, serde_json::Error> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(line).map(Some)
    }

    /// The event to append (its stream and version are the caller's).
    pub fn into_new_event(self) -> NewEvent {
        NewEvent {
            event_id: self.event_id,
            aggregate_type: self.aggregate_type.into(),
            name: self.name.into(),
            schema_version: self.schema_version,
            payload: Payload::new(self.payload.get()),
            occurred_at: Some(self.occurred_at),
            metadata: self.metadata,
        }
    }
}

/// Why an export cannot be imported whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportRefusal {
    /// The event breaks a rule every store applies to an event: a name or
    /// aggregate type that is not a valid name, a payload or metadata over
    /// the limits.
    #[error("event {event_id}: {source}")]
    Invalid {
        /// The event.
        event_id: Uuid,
        /// The store's refusal.
        source: Error,
    },
    /// The stream id is not valid.
    #[error("stream `{stream}`: {source}")]
    InvalidStream {
        /// The stream as written.
        stream: String,
        /// What is wrong with it.
        source: StreamIdError,
    },
    /// An event id appears twice.
    #[error("event id {0} appears twice")]
    DuplicateId(Uuid),
    /// A stream's events name two aggregate types.
    #[error("stream `{stream}` is of aggregate type `{first}`, not `{given}`")]
    AggregateMismatch {
        /// The stream.
        stream: String,
        /// The type of its first event.
        first: String,
        /// The type of this one.
        given: String,
    },
    /// A stream's first event has version 0.
    #[error("stream `{stream}`: version 0 (versions start at 1)")]
    VersionZero {
        /// The stream.
        stream: String,
    },
    /// A stream's versions skip some: a salvaged export, which imports
    /// with renumbering.
    #[error(
        "stream `{stream}` version {version} follows version {previous} (a salvage skips damaged events: renumbering closes the gaps)"
    )]
    VersionGap {
        /// The stream.
        stream: String,
        /// This event's version.
        version: u64,
        /// The version before it in the file.
        previous: u64,
    },
    /// A stream's versions go back or repeat.
    #[error("stream `{stream}` version {version} follows version {previous}")]
    VersionOrder {
        /// The stream.
        stream: String,
        /// This event's version.
        version: u64,
        /// The version before it in the file.
        previous: u64,
    },
}

/// The first pass of an import: checks every event of a file before
/// anything is written, by the rules of every store for one event
/// ([`check_append`], under the given [`Limits`]) and of the file. A file it accepts whose streams each begin at
/// version 1 (or any file it accepts, with renumbering) appends whole into
/// a store that holds none of its streams; a stream that begins later
/// continues the stream of that name in the store, and is refused there
/// as a conflict when the store's stream is not at the version before.
#[derive(Debug, Default)]
pub struct ImportCheck {
    renumber: bool,
    limits: Limits,
    /// Each stream's aggregate type and last version so far.
    streams: HashMap<String, (String, u64)>,
    ids: HashSet<Uuid>,
    events: u64,
}

impl ImportCheck {
    /// A check of a file whose streams' versions must each be the previous
    /// plus one or, with `renumber`, only increase (the gaps a salvage
    /// leaves, which [`ImportBatches`] then closes), for a store with
    /// `limits`.
    pub fn new(renumber: bool, limits: Limits) -> Self {
        ImportCheck {
            renumber,
            limits,
            ..ImportCheck::default()
        }
    }

    /// Checks the next event of the file.
    ///
    /// # Errors
    ///
    /// The first thing that keeps the file from importing whole; the
    /// check can go on with the next event, but the file is refused.
    pub fn check(&mut self, event: &ExportedEvent) -> Result<(), ImportRefusal> {
        let stream =
            StreamId::new(&event.stream).map_err(|source| ImportRefusal::InvalidStream {
                stream: event.stream.clone(),
                source,
            })?;
        let alone = StreamWrite::new(
            stream,
            ExpectedVersion::Any,
            vec![event.clone().into_new_event()],
        );
        check_append(&self.limits, vec![alone]).map_err(|source| ImportRefusal::Invalid {
            event_id: event.event_id,
            source,
        })?;
        if self.ids.contains(&event.event_id) {
            return Err(ImportRefusal::DuplicateId(event.event_id));
        }
        match self.streams.get_mut(&event.stream) {
            Some((first, previous)) => {
                if *first != event.aggregate_type {
                    return Err(ImportRefusal::AggregateMismatch {
                        stream: event.stream.clone(),
                        first: first.clone(),
                        given: event.aggregate_type.clone(),
                    });
                }
                let follows = if self.renumber {
                    event.version > *previous
                } else {
                    event.version == previous.saturating_add(1)
                };
                if !follows {
                    let (stream, version, previous) =
                        (event.stream.clone(), event.version, *previous);
                    return Err(if version > previous {
                        ImportRefusal::VersionGap {
                            stream,
                            version,
                            previous,
                        }
                    } else {
                        ImportRefusal::VersionOrder {
                            stream,
                            version,
                            previous,
                        }
                    });
                }
                *previous = event.version;
            }
            None if event.version == 0 => {
                return Err(ImportRefusal::VersionZero {
                    stream: event.stream.clone(),
                });
            }
            None => {
                self.streams.insert(
                    event.stream.clone(),
                    (event.aggregate_type.clone(), event.version),
                );
            }
        }
        self.ids.insert(event.event_id);
        self.events += 1;
        Ok(())
    }

    /// The events checked and accepted so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}

/// Appends of an import, in the file's order: the events of one stream in
/// a row share one write, a batch never holds two writes of one stream, and
/// a batch stays within the store's [`Limits`] for one append (its events
/// and bytes; a stream's run longer than that continues in the next batch).
///
/// A stream's first event expects the stream missing when it is version 1
/// (or with renumbering), else at the version before it: so a file that
/// continues streams of the store appends after them, and a file imported
/// twice is a repeat by event ids, not a second copy.
#[derive(Debug)]
pub struct ImportBatches {
    renumber: bool,
    max_events: usize,
    max_bytes: usize,
    pending: Vec<StreamWrite>,
    first_line: usize,
    events: usize,
    /// Payload and metadata bytes in `pending`, as a store counts them.
    bytes: usize,
    /// With `renumber`: each stream's last version so far.
    last: HashMap<String, u64>,
    /// The streams whose versions renumbering changed.
    changed: HashSet<String>,
}

/// One append of an import.
#[derive(Debug)]
pub struct ImportBatch {
    /// The line (or other number) given with the batch's first event.
    pub first_line: usize,
    /// The writes, for [`EventStore::append_to_streams`](crate::EventStore::append_to_streams).
    pub writes: Vec<StreamWrite>,
    /// The events in `writes`.
    pub events: usize,
}

impl ImportBatches {
    /// Batches that a store with `limits` accepts as one append; with
    /// `renumber`, each stream's versions are renumbered from 1.
    pub fn new(renumber: bool, limits: &Limits) -> Self {
        ImportBatches {
            renumber,
            max_events: limits.max_events_per_append.max(1),
            max_bytes: limits.max_append_bytes,
            pending: Vec::new(),
            first_line: 0,
            events: 0,
            bytes: 0,
            last: HashMap::new(),
            changed: HashSet::new(),
        }
    }

    /// Adds the next event, read at `line`; returns the batch to append
    /// before it when the event does not fit in the pending one.
    ///
    /// # Errors
    ///
    /// When the event's stream id is not valid (which [`ImportCheck`]
    /// refuses first).
    pub fn push(
        &mut self,
        line: usize,
        event: ExportedEvent,
    ) -> Result<Option<ImportBatch>, StreamIdError> {
        let stream = StreamId::new(&event.stream)?;
        let version = if self.renumber {
            let last = self.last.entry(event.stream.clone()).or_insert(0);
            *last += 1;
            if *last != event.version {
                self.changed.insert(event.stream.clone());
            }
            *last
        } else {
            event.version
        };
        let event = event.into_new_event();
        let bytes = event.payload.len() + event.metadata.to_json().map_or(0, |m| m.len());
        let continues = self.pending.last().is_some_and(|w| w.stream == stream);
        let over =
            self.events + 1 > self.max_events || self.bytes.saturating_add(bytes) > self.max_bytes;
        let full = if over || (!continues && self.pending.iter().any(|w| w.stream == stream)) {
            self.finish()
        } else {
            None
        };
        if self.pending.is_empty() {
            self.first_line = line;
        }
        match self.pending.last_mut() {
            Some(write) if write.stream == stream => write.events.push(event),
            _ => self
                .pending
                .push(StreamWrite::new(stream, expected(version), vec![event])),
        }
        self.events += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(full)
    }

    /// The pending batch, if it holds anything.
    pub fn finish(&mut self) -> Option<ImportBatch> {
        if self.pending.is_empty() {
            return None;
        }
        self.bytes = 0;
        Some(ImportBatch {
            first_line: self.first_line,
            writes: std::mem::take(&mut self.pending),
            events: std::mem::take(&mut self.events),
        })
    }

    /// How many streams renumbering changed.
    pub fn renumbered_streams(&self) -> usize {
        self.changed.len()
    }
}

/// The version a stream must be at before an event of version `version`.
fn expected(version: u64) -> ExpectedVersion {
    match version {
        0 | 1 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v - 1),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests of fixed inputs")]

    use super::*;

    fn event(stream: &str, version: u64, n: u128) -> ExportedEvent {
        ExportedEvent {
            stream: stream.into(),
            aggregate_type: "ticket".into(),
            version,
            position: None,
            event_id: Uuid::from_u128(n),
            name: "Opened".into(),
            schema_version: 1,
            recorded_at: None,
            occurred_at: Timestamp::now(),
            metadata: Metadata::default(),
            payload: RawValue::from_string("{}".into()).unwrap(),
        }
    }

    fn limits(max_events_per_append: usize) -> Limits {
        Limits {
            max_events_per_append,
            ..Limits::default()
        }
    }

    #[test]
    fn the_check_refuses_what_cannot_import_whole() {
        let mut check = ImportCheck::new(false, Limits::default());
        check.check(&event("a-1", 1, 1)).unwrap();
        assert!(matches!(
            check.check(&event("a-1", 3, 2)),
            Err(ImportRefusal::VersionGap {
                version: 3,
                previous: 1,
                ..
            })
        ));
        assert!(matches!(
            check.check(&event("a-2", 1, 1)),
            Err(ImportRefusal::DuplicateId(id)) if id == Uuid::from_u128(1)
        ));
        assert!(matches!(
            check.check(&event("", 1, 3)),
            Err(ImportRefusal::InvalidStream { .. })
        ));
        assert!(matches!(
            check.check(&event("a-3", 0, 4)),
            Err(ImportRefusal::VersionZero { .. })
        ));
        let mut other = event("a-1", 2, 5);
        other.aggregate_type = "lead".into();
        assert!(matches!(
            check.check(&other),
            Err(ImportRefusal::AggregateMismatch { .. })
        ));
        // What a store refuses of one event, the check refuses first.
        let mut badly_named = event("a-4", 1, 6);
        badly_named.name = "ticket-opene`".into();
        assert!(matches!(
            check.check(&badly_named),
            Err(ImportRefusal::Invalid {
                source: Error::InvalidName { .. },
                ..
            })
        ));
        let mut large = event("a-5", 1, 7);
        large.payload = RawValue::from_string(format!("\"{}\"", "x".repeat(100))).unwrap();
        let mut small = ImportCheck::new(
            false,
            Limits {
                max_payload_bytes: 64,
                ..Limits::default()
            },
        );
        assert!(matches!(
            small.check(&large),
            Err(ImportRefusal::Invalid {
                source: Error::Limit(_),
                ..
            })
        ));
        assert_eq!(check.events(), 1);

        let mut renumbering = ImportCheck::new(true, Limits::default());
        renumbering.check(&event("a-1", 1, 1)).unwrap();
        renumbering.check(&event("a-1", 3, 2)).unwrap();
        assert!(matches!(
            renumbering.check(&event("a-1", 3, 3)),
            Err(ImportRefusal::VersionOrder { .. })
        ));
    }

    #[test]
    fn batches_stay_within_the_limits_and_keep_streams_apart() {
        let mut batches = ImportBatches::new(false, &limits(2));
        assert!(batches.push(1, event("a-1", 1, 1)).unwrap().is_none());
        assert!(batches.push(2, event("a-1", 2, 2)).unwrap().is_none());
        // A run longer than an append continues in the next batch.
        let full = batches.push(3, event("a-1", 3, 3)).unwrap().unwrap();
        assert_eq!((full.first_line, full.events, full.writes.len()), (1, 2, 1));
        assert_eq!(full.writes[0].expected, ExpectedVersion::NoStream);
        assert!(batches.push(4, event("a-2", 1, 4)).unwrap().is_none());
        let full = batches.push(5, event("a-3", 1, 5)).unwrap().unwrap();
        assert_eq!((full.first_line, full.events, full.writes.len()), (3, 2, 2));
        assert_eq!(full.writes[0].expected, ExpectedVersion::Exact(2));
        let last = batches.finish().unwrap();
        assert_eq!((last.first_line, last.events), (5, 1));
        assert!(batches.finish().is_none());

        // a-1, a-2, then a-1 again: not in the batch that holds a-1 already.
        let mut apart = ImportBatches::new(false, &limits(10));
        assert!(apart.push(1, event("a-1", 1, 1)).unwrap().is_none());
        assert!(apart.push(2, event("a-2", 1, 2)).unwrap().is_none());
        let full = apart.push(3, event("a-1", 2, 3)).unwrap().unwrap();
        assert_eq!(full.events, 2);
        let last = apart.finish().unwrap();
        assert_eq!(last.writes[0].expected, ExpectedVersion::Exact(1));

        // Bytes too: two 40-byte payloads do not share a 64-byte append.
        let mut by_bytes = ImportBatches::new(
            false,
            &Limits {
                max_append_bytes: 64,
                ..Limits::default()
            },
        );
        let big = |version, n| {
            let mut e = event("a-1", version, n);
            e.payload = RawValue::from_string(format!("\"{}\"", "x".repeat(38))).unwrap();
            e
        };
        assert!(by_bytes.push(1, big(1, 1)).unwrap().is_none());
        assert!(by_bytes.push(2, big(2, 2)).unwrap().is_some());
    }

    #[test]
    fn renumbering_closes_gaps() {
        let mut batches = ImportBatches::new(true, &limits(10));
        batches.push(1, event("a-1", 2, 1)).unwrap();
        batches.push(2, event("a-1", 5, 2)).unwrap();
        batches.push(3, event("a-2", 1, 3)).unwrap();
        let batch = batches.finish().unwrap();
        assert_eq!(batch.writes[0].expected, ExpectedVersion::NoStream);
        assert_eq!(batch.writes[0].events.len(), 2);
        assert_eq!(batches.renumbered_streams(), 1);
    }

    #[test]
    fn a_line_reads_back_as_written_and_blank_lines_are_none() {
        let line = serde_json::to_string(&event("a-1", 1, 1)).unwrap();
        let parsed = ExportedEvent::parse(&line).unwrap().unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
        assert!(ExportedEvent::parse("  ").unwrap().is_none());
        let extra = format!("{},\"extra\":1}}", &line[..line.len() - 1]);
        assert!(serde_json::from_str::<serde_json::Value>(&extra).is_ok());
        assert!(ExportedEvent::parse(&extra).is_err());
    }
}
