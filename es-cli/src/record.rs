//! One event as a JSON line: what `export` writes, `import` reads, and
//! `events --json` and `tail --json` print.

use es_core::{Metadata, RecordedEvent, Timestamp, Uuid};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An event with its whole envelope, and its payload as stored (the exact
/// JSON text, sealed personal fields included).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Line {
    /// The stream.
    pub(crate) stream: String,
    /// The stream's aggregate type.
    pub(crate) aggregate_type: String,
    /// The version in the stream (1-based).
    pub(crate) version: u64,
    /// The position in `$all` of the store it was read from; not kept by
    /// an import, which appends at the end of the store it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) position: Option<u64>,
    /// The event's id, kept by an import.
    pub(crate) event_id: Uuid,
    /// The stored name.
    pub(crate) name: String,
    /// The stored schema version.
    pub(crate) schema_version: u32,
    /// When the store it was read from recorded it; an import records its
    /// own time (a store's clock is never set by callers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recorded_at: Option<Timestamp>,
    /// When it happened, kept by an import.
    pub(crate) occurred_at: Timestamp,
    /// Who, why, correlation; kept by an import.
    #[serde(default)]
    pub(crate) metadata: Metadata,
    /// The payload, as stored.
    pub(crate) payload: Box<RawValue>,
}

impl Line {
    /// The line of a stored event.
    ///
    /// # Errors
    ///
    /// When the stored payload is not JSON (a damaged store).
    pub(crate) fn of(event: &RecordedEvent) -> Result<Line, serde_json::Error> {
        Ok(Line {
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
}
