//! Events as stores hold them: [`NewEvent`] going in, [`RecordedEvent`]
//! coming out, and the typed [`Envelope`] the audit trail is made of.

use std::borrow::Cow;
use std::sync::Arc;

use uuid::Uuid;

use crate::event::{DecodeError, EventSet};
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::time::Timestamp;

/// An event ready to append: encoded payload plus what the store records with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event's id (UUID v7 by default). Appending the same ids again after
    /// an unknown outcome is idempotent.
    pub event_id: Uuid,
    /// The aggregate type of the stream (`"ticket"`).
    pub aggregate_type: Cow<'static, str>,
    /// The event's stable name.
    pub name: Cow<'static, str>,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload (JSON, UTF-8).
    pub payload: Vec<u8>,
    /// Who, why, and correlation.
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh UUID v7 id and empty metadata.
    pub fn new(
        aggregate_type: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        schema_version: u32,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            aggregate_type: aggregate_type.into(),
            name: name.into(),
            schema_version,
            payload: payload.into(),
            metadata: Metadata::default(),
        }
    }

    /// Encodes a typed event of aggregate type `aggregate_type`.
    pub fn encode<E: EventSet>(
        aggregate_type: &'static str,
        event: &E,
        metadata: Metadata,
    ) -> Result<Self, crate::EncodeError> {
        Ok(NewEvent {
            event_id: Uuid::now_v7(),
            aggregate_type: Cow::Borrowed(aggregate_type),
            name: Cow::Borrowed(event.name()),
            schema_version: event.version(),
            payload: event.encode()?,
            metadata,
        })
    }

    /// Sets the event id.
    #[must_use]
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as a store returns it: payload still encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// The aggregate type of the stream.
    pub aggregate_type: Arc<str>,
    /// Its version in the stream (1-based, contiguous).
    pub version: u64,
    /// Its position in the store's global order (`$all`), 1-based, strictly
    /// increasing in commit order.
    pub position: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// When the store recorded it (UTC).
    pub recorded_at: Timestamp,
    /// The event's stable name.
    pub name: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload (JSON).
    pub payload: Vec<u8>,
    /// Who, why, and correlation.
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// Decodes the payload as an event of the set `E`.
    pub fn decode<E: EventSet>(&self) -> Result<E, crate::Error> {
        E::decode(&self.name, self.schema_version, &self.payload).map_err(|source| {
            crate::Error::Decode {
                stream: self.stream_id.clone(),
                version: self.version,
                source,
            }
        })
    }

    /// Decodes the payload into a typed [`Envelope`], keeping every field.
    pub fn into_envelope<E: EventSet>(self) -> Result<Envelope<E>, crate::Error> {
        let event = self.decode::<E>()?;
        Ok(Envelope {
            stream_id: self.stream_id,
            aggregate_type: self.aggregate_type,
            version: self.version,
            position: self.position,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            name: self.name,
            schema_version: self.schema_version,
            metadata: self.metadata,
            event,
        })
    }

    /// Decodes only the event, as the raw [`DecodeError`].
    pub fn decode_event<E: EventSet>(&self) -> Result<E, DecodeError> {
        E::decode(&self.name, self.schema_version, &self.payload)
    }
}

/// A stored event as a fold sees it: borrowed from the store's buffers, so
/// folding a stream allocates nothing per event (see
/// [`EventStore::fold_stream`](crate::EventStore::fold_stream)).
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// The stream it belongs to.
    pub stream_id: &'a StreamId,
    /// The aggregate type of the stream.
    pub aggregate_type: &'a str,
    /// Its version in the stream.
    pub version: u64,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
    /// The event's stable name.
    pub name: &'a str,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload (JSON).
    pub payload: &'a [u8],
}

impl EventRef<'_> {
    /// Decodes the payload as an event of the set `E`; the error names the
    /// stream and version.
    pub fn decode<E: EventSet>(&self) -> Result<E, crate::Error> {
        E::decode(self.name, self.schema_version, self.payload).map_err(|source| {
            crate::Error::Decode {
                stream: self.stream_id.clone(),
                version: self.version,
                source,
            }
        })
    }
}

impl<'a> From<&'a RecordedEvent> for EventRef<'a> {
    fn from(e: &'a RecordedEvent) -> Self {
        EventRef {
            stream_id: &e.stream_id,
            aggregate_type: &e.aggregate_type,
            version: e.version,
            recorded_at: e.recorded_at,
            name: &e.name,
            schema_version: e.schema_version,
            payload: &e.payload,
        }
    }
}

/// A stored event with its payload decoded: one line of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// The aggregate type of the stream.
    pub aggregate_type: Arc<str>,
    /// Its version in the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
    /// The stored name.
    pub name: String,
    /// The schema version it was stored at (before upcasting).
    pub schema_version: u32,
    /// Who, why, and correlation.
    pub metadata: Metadata,
    /// The event, upcast to the current type.
    pub event: E,
}
