//! Who did what and why: the metadata recorded with every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::Envelope;

/// What is recorded with an event besides its payload: who (actor), which
/// command and why (reason), how it relates to other messages (correlation,
/// causation and command ids), which earlier event it corrects
/// (compensates), and a free map for anything else.
///
/// Every field is optional; an empty `Metadata` costs nothing in the store.
///
/// ```
/// use es_core::Metadata;
///
/// let meta = Metadata::new()
///     .actor("agent-7")
///     .command("escalate")
///     .reason("customer waited 3 days")
///     .with("channel", "phone");
/// assert_eq!(meta.actor.as_deref(), Some("agent-7"));
/// assert_eq!(meta.extra["channel"], "phone");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// Who caused the event: a user, an agent, a system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The command that produced the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Why the command was given, in the actor's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The id of the command, chosen by whoever sends it: the same id on a
    /// retry identifies a repeat. A [`Repository`](crate::Repository)
    /// command that carries one is idempotent: its events get ids derived
    /// from it ([`audit::command_event_id`](crate::audit::command_event_id)),
    /// and executing it again returns the first outcome instead of
    /// appending (see [`Command::command_id`](crate::Command::command_id)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// The business transaction the event belongs to: every event that one
    /// request set off, across aggregates, shares it. `None` means the
    /// event is the root of its own transaction, whose id is then the
    /// event's id ([`Envelope::correlation`]).
    ///
    /// A repository command that names none gets one: its command id when
    /// it has one, else the id of its first new event (which stores none,
    /// being the root; its other events store it). See
    /// [`Command::caused_by`](crate::Command::caused_by) for commands run
    /// because of an event, and [`audit::trail_of`](crate::audit::trail_of)
    /// to read a transaction back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event that directly caused this one's command (a process manager
    /// or a projection reacting to it): the parent of this event in its
    /// transaction's causation tree. `None` for an event of a command that
    /// no event caused (a root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The id of the earlier event of the same stream that this event
    /// corrects: this is a *compensating event*. Set it with
    /// [`Command::compensating`](crate::Command::compensating), which checks
    /// that the stream holds that event; [`Trail`](crate::Trail) reads it to
    /// show a history raw or effective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensates: Option<Uuid>,
    /// Anything else, by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets who caused the event.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the command's name.
    #[must_use]
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// Sets why the command was given.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the command id.
    #[must_use]
    pub fn command_id(mut self, id: Uuid) -> Self {
        self.command_id = Some(id);
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Records that the command was run because of the event `cause` (a
    /// process manager, a projection reacting to it): the causation id
    /// becomes the event's id, and the correlation id the event's
    /// correlation ([`Envelope::correlation`]: its correlation id, or its
    /// own id when it is the root of its transaction). So every event of
    /// one business transaction, however many commands and aggregates it
    /// crosses, shares one correlation id, and each names its parent.
    ///
    /// ```
    /// use es_core::{Envelope, Metadata, StreamId, Timestamp, Uuid};
    ///
    /// # let at = Timestamp::from_unix_micros(0);
    /// let root = Envelope {
    ///     stream_id: StreamId::new("order-1")?, aggregate_type: "order".into(), version: 1,
    ///     position: 7, event_id: Uuid::now_v7(), recorded_at: at, occurred_at: at,
    ///     name: "order-placed".into(), schema_version: 1, metadata: Metadata::new(), event: (),
    /// };
    /// let meta = Metadata::new().actor("shipping-policy").caused_by(&root);
    /// assert_eq!(meta.causation_id, Some(root.event_id));
    /// assert_eq!(meta.correlation_id, Some(root.event_id));   // the root's own id
    ///
    /// // Further down the chain the correlation is carried forward.
    /// let child = Envelope { event_id: Uuid::now_v7(), metadata: meta.clone(), ..root.clone() };
    /// let next = Metadata::new().caused_by(&child);
    /// assert_eq!(next.causation_id, Some(child.event_id));
    /// assert_eq!(next.correlation_id, Some(root.event_id));
    /// # Ok::<(), es_core::StreamIdError>(())
    /// ```
    #[must_use]
    pub fn caused_by<E>(mut self, cause: &Envelope<E>) -> Self {
        self.causation_id = Some(cause.event_id);
        self.correlation_id = Some(cause.correlation());
        self
    }

    /// Marks the event as compensating (correcting) the event with id
    /// `event_id`, an earlier event of the same stream.
    ///
    /// ```
    /// use es_core::{Metadata, Uuid};
    ///
    /// let wrong = Uuid::now_v7();
    /// let meta = Metadata::new().reason("escalated the wrong ticket").compensates(wrong);
    /// assert_eq!(meta.compensates, Some(wrong));
    /// assert!(meta.to_json().unwrap().contains(r#""compensates":""#));
    /// // Metadata stored before compensations existed reads without the key.
    /// assert_eq!(Metadata::from_json(r#"{"actor":"agent-7"}"#)?.compensates, None);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn compensates(mut self, event_id: Uuid) -> Self {
        self.compensates = Some(event_id);
        self
    }

    /// Adds a free key and value.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Metadata::default()
    }

    /// The JSON form stored next to the payload; `None` when empty.
    pub fn to_json(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        // Serializing a struct of strings, uuids and a map of `Value`s cannot
        // fail: every key is a string.
        serde_json::to_string(self).ok()
    }

    /// Reads the stored JSON form.
    ///
    /// # Errors
    ///
    /// When the text is not the JSON of a `Metadata`.
    pub fn from_json(json: impl AsRef<[u8]>) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json.as_ref())
    }
}
