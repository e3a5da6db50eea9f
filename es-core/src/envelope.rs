//! Events as stores hold them: [`NewEvent`] going in, the [`Envelope`] coming
//! out (with its payload still encoded: [`RecordedEvent`]; or decoded), and
//! [`EventRef`], the borrowed view a fold sees.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::Error;
use crate::event::{DecodeError, EventSet};
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::payload::Payload;
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
    /// The payload.
    pub payload: Payload,
    /// When it happened in the business's world, if not when it is
    /// recorded: for imports and facts reported late. `None` (the default)
    /// means "when the store records it".
    pub occurred_at: Option<Timestamp>,
    /// Who, why, and correlation.
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh UUID v7 id, empty metadata, occurring when
    /// it is recorded.
    pub fn new(
        aggregate_type: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        schema_version: u32,
        payload: impl Into<Payload>,
    ) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            aggregate_type: aggregate_type.into(),
            name: name.into(),
            schema_version,
            payload: payload.into(),
            occurred_at: None,
            metadata: Metadata::default(),
        }
    }

    /// Encodes a typed event of aggregate type `aggregate_type`.
    ///
    /// # Errors
    ///
    /// When the event does not serialize.
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
            occurred_at: None,
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

    /// Sets when the event happened in the business's world (see
    /// [`NewEvent::occurred_at`]).
    #[must_use]
    pub fn with_occurred_at(mut self, occurred_at: Timestamp) -> Self {
        self.occurred_at = Some(occurred_at);
        self
    }
}

/// A stored event and everything recorded with it: one line of the audit
/// trail.
///
/// `E` is the event: its encoded [`Payload`] as a store returns it
/// ([`RecordedEvent`]), the aggregate's event enum once decoded
/// ([`into_envelope`](Envelope::into_envelope)), or [`Decoded`] in a history
/// that keeps what it cannot decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
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
    /// When the store recorded it (UTC, the store's clock; never set by
    /// callers): the audit time.
    pub recorded_at: Timestamp,
    /// When it happened in the business's world (UTC): the time the caller
    /// gave, or `recorded_at`.
    pub occurred_at: Timestamp,
    /// The event's stable name, as stored.
    pub name: String,
    /// The schema version it was stored at (before upcasting).
    pub schema_version: u32,
    /// Who, why, and correlation.
    pub metadata: Metadata,
    /// The event.
    pub event: E,
}

/// An event as a store returns it: the envelope with the payload still encoded.
pub type RecordedEvent = Envelope<Payload>;

impl Envelope<Payload> {
    /// The encoded payload.
    pub fn payload(&self) -> &Payload {
        &self.event
    }

    /// Decodes the payload as an event of the set `E`, through the raw
    /// upcasters and the typed chain.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming the stream and version, when this program
    /// cannot decode the stored (name, schema version, payload), or when a
    /// raw upcaster turns it into other than one event
    /// ([`DecodeError::NotOne`](crate::DecodeError::NotOne): use
    /// [`into_envelopes`](Envelope::into_envelopes)).
    pub fn decode<E: EventSet>(&self) -> Result<E, Error> {
        self.as_event_ref().decode()
    }

    /// Decodes the payload into a typed envelope, keeping every other field.
    ///
    /// # Errors
    ///
    /// As [`decode`](Envelope::decode).
    pub fn into_envelope<E: EventSet>(self) -> Result<Envelope<E>, Error> {
        let event = self.decode::<E>()?;
        Ok(self.with_event(event))
    }

    /// Runs the stored event through the raw upcasters
    /// ([`upcast`](crate::upcast)): the events readers see in its place,
    /// each with this envelope's stream, version, position, id, times and
    /// metadata, and its own aggregate type, name, schema version and
    /// payload. Without an upcaster for it, the event itself.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when an upcaster fails.
    pub fn upcast(self) -> Result<Vec<RecordedEvent>, Error> {
        let upcast = crate::upcast::upcast(
            &self.aggregate_type,
            &self.name,
            self.schema_version,
            self.event.as_str(),
        )
        .map_err(|source| Error::Decode {
            stream: self.stream_id.clone(),
            version: self.version,
            source,
        })?;
        let Some(events) = upcast else {
            return Ok(vec![self]);
        };
        let (envelope, _) = self.split();
        events
            .into_iter()
            .map(|raw| {
                let payload = Payload::new(raw.payload.to_string());
                let mut e = envelope.clone().put(payload);
                if *e.aggregate_type != raw.aggregate_type {
                    e.aggregate_type = Arc::from(raw.aggregate_type);
                }
                e.name = raw.name;
                e.schema_version = raw.version;
                Ok(e)
            })
            .collect()
    }

    /// The typed envelopes of the events readers see in this one's place
    /// ([`upcast`](Envelope::upcast), then each decoded as `E`).
    ///
    /// # Errors
    ///
    /// As [`upcast`](Envelope::upcast) and [`decode`](Envelope::decode).
    pub fn into_envelopes<E: EventSet>(self) -> Result<Vec<Envelope<E>>, Error> {
        self.upcast()?
            .into_iter()
            .map(Envelope::into_envelope)
            .collect()
    }

    /// The borrowed view of this event that folds see.
    pub fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            stream_id: &self.stream_id,
            aggregate_type: &self.aggregate_type,
            version: self.version,
            recorded_at: self.recorded_at,
            occurred_at: self.occurred_at,
            name: &self.name,
            schema_version: self.schema_version,
            payload: self.event.as_str(),
        }
    }
}

impl Envelope<()> {
    /// This envelope holding `event`.
    fn put<F>(self, event: F) -> Envelope<F> {
        let Envelope {
            stream_id,
            aggregate_type,
            version,
            position,
            event_id,
            recorded_at,
            occurred_at,
            name,
            schema_version,
            metadata,
            event: (),
        } = self;
        Envelope {
            stream_id,
            aggregate_type,
            version,
            position,
            event_id,
            recorded_at,
            occurred_at,
            name,
            schema_version,
            metadata,
            event,
        }
    }
}

impl<E> Envelope<E> {
    /// The business transaction this event belongs to: its metadata's
    /// correlation id, or, when it has none, its own id (it is the root of
    /// its transaction). See [`Metadata::correlation_id`] and
    /// [`audit::trail_of`](crate::audit::trail_of).
    pub fn correlation(&self) -> Uuid {
        self.metadata.correlation_id.unwrap_or(self.event_id)
    }

    /// The same envelope with its event mapped by `f`.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> Envelope<F> {
        let (envelope, event) = self.split();
        envelope.put(f(event))
    }

    /// The same envelope holding `event` instead.
    pub fn with_event<F>(self, event: F) -> Envelope<F> {
        self.split().0.put(event)
    }

    /// The event, and the envelope without it (to put another event in with
    /// [`with_event`](Envelope::with_event)): every field moves, none is
    /// cloned.
    pub fn split(self) -> (Envelope<()>, E) {
        let Envelope {
            stream_id,
            aggregate_type,
            version,
            position,
            event_id,
            recorded_at,
            occurred_at,
            name,
            schema_version,
            metadata,
            event,
        } = self;
        let envelope = Envelope {
            stream_id,
            aggregate_type,
            version,
            position,
            event_id,
            recorded_at,
            occurred_at,
            name,
            schema_version,
            metadata,
            event: (),
        };
        (envelope, event)
    }

    /// The id of the aggregate this event belongs to, as text: the stream id
    /// after `"{aggregate_type}-"` (see [`StreamId::aggregate_id`]).
    pub fn aggregate_id(&self) -> &str {
        aggregate_id(&self.stream_id, &self.aggregate_type)
    }

    /// The id of the aggregate, parsed as the application's id type.
    ///
    /// ```
    /// # use es_core::{RecordedEvent, StreamId, Payload, Metadata, Timestamp, Uuid};
    /// # let envelope = RecordedEvent {
    /// #     stream_id: StreamId::new("lead-12")?, aggregate_type: "lead".into(), version: 1,
    /// #     position: 1, event_id: Uuid::nil(), recorded_at: Timestamp::from_unix_micros(0),
    /// #     occurred_at: Timestamp::from_unix_micros(0), name: "lead-created".into(),
    /// #     schema_version: 1, metadata: Metadata::new(), event: Payload::from("{}"),
    /// # };
    /// assert_eq!(envelope.aggregate_id(), "12");
    /// assert_eq!(envelope.parse_aggregate_id::<u64>()?, 12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// What `I`'s `FromStr` reports for [`aggregate_id`](Envelope::aggregate_id).
    pub fn parse_aggregate_id<I: FromStr>(&self) -> Result<I, I::Err> {
        self.aggregate_id().parse()
    }
}

fn aggregate_id<'a>(stream: &'a StreamId, aggregate_type: &str) -> &'a str {
    stream
        .aggregate_id(aggregate_type)
        .unwrap_or(stream.as_str())
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
    /// When it happened in the business's world.
    pub occurred_at: Timestamp,
    /// The event's stable name.
    pub name: &'a str,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload (JSON).
    pub payload: &'a str,
}

impl EventRef<'_> {
    /// Decodes the payload as an event of the set `E`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming the stream and version.
    pub fn decode<E: EventSet>(&self) -> Result<E, Error> {
        let mut decoded = None;
        let mut count = 0;
        self.decode_each::<E>(|event| {
            count += 1;
            decoded = Some(event);
        })?;
        match decoded {
            Some(event) if count == 1 => Ok(event),
            _ => Err(self.error(DecodeError::NotOne {
                name: self.name.to_owned(),
                version: self.schema_version,
                count,
            })),
        }
    }

    /// Decodes every event readers see in this one's place (the raw
    /// upcasters may remove it, or split it into several), calling `each`
    /// with each in order. Without a raw upcaster for it, one typed decode
    /// and no allocation beyond the event.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming the stream and version.
    pub fn decode_each<E: EventSet>(&self, mut each: impl FnMut(E)) -> Result<(), Error> {
        self.for_each_upcast(|e| {
            each(
                E::decode(e.name, e.schema_version, e.payload)
                    .map_err(|source| self.error(source))?,
            );
            Ok(())
        })
    }

    /// Calls `each` with every event readers see in this one's place,
    /// before typed decoding: this event itself when no raw upcaster
    /// applies to it, else each event the upcasters produce (same stream,
    /// version and times; its own aggregate type, name, schema version and
    /// payload).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when an upcaster fails; what `each` returns.
    pub fn for_each_upcast(
        &self,
        mut each: impl FnMut(EventRef<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let upcast = crate::upcast::upcast(
            self.aggregate_type,
            self.name,
            self.schema_version,
            self.payload,
        )
        .map_err(|source| self.error(source))?;
        let Some(events) = upcast else {
            return each(*self);
        };
        for raw in events {
            let payload = raw.payload.to_string();
            each(EventRef {
                aggregate_type: &raw.aggregate_type,
                name: &raw.name,
                schema_version: raw.version,
                payload: &payload,
                ..*self
            })?;
        }
        Ok(())
    }

    fn error(&self, source: DecodeError) -> Error {
        Error::Decode {
            stream: self.stream_id.clone(),
            version: self.version,
            source,
        }
    }

    /// The id of the aggregate this event belongs to, as text (see
    /// [`Envelope::aggregate_id`]).
    pub fn aggregate_id(&self) -> &str {
        aggregate_id(self.stream_id, self.aggregate_type)
    }
}

/// An event of a history: decoded, or kept as stored when this program
/// cannot decode it (an event written by a newer program, or one whose type
/// was removed), so the rest of the trail is still shown.
#[derive(Clone)]
pub enum Decoded<E> {
    /// The event, upcast to its current type.
    Event(E),
    /// The stored payload, which this program cannot decode, and why.
    Undecodable {
        /// The payload as stored (JSON text: see [`Payload::to_json`]).
        payload: Payload,
        /// Why it does not decode.
        error: Arc<DecodeError>,
    },
}

impl<E> Decoded<E> {
    /// The event, when it decoded.
    pub fn event(&self) -> Option<&E> {
        match self {
            Decoded::Event(e) => Some(e),
            Decoded::Undecodable { .. } => None,
        }
    }

    /// The event, when it decoded.
    pub fn into_event(self) -> Option<E> {
        match self {
            Decoded::Event(e) => Some(e),
            Decoded::Undecodable { .. } => None,
        }
    }

    /// Whether this program could not decode the event.
    pub fn is_undecodable(&self) -> bool {
        matches!(self, Decoded::Undecodable { .. })
    }
}

impl<E: fmt::Debug> fmt::Debug for Decoded<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decoded::Event(e) => f.debug_tuple("Event").field(e).finish(),
            Decoded::Undecodable { payload, error } => f
                .debug_struct("Undecodable")
                .field("payload", payload)
                .field("error", &error.to_string())
                .finish(),
        }
    }
}

/// Two undecodable events are equal when their payloads and the reasons
/// they do not decode are.
impl<E: PartialEq> PartialEq for Decoded<E> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Decoded::Event(a), Decoded::Event(b)) => a == b,
            (
                Decoded::Undecodable { payload, error },
                Decoded::Undecodable {
                    payload: other_payload,
                    error: other_error,
                },
            ) => payload == other_payload && error.to_string() == other_error.to_string(),
            _ => false,
        }
    }
}
