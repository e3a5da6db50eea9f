//! Who did what and why: the metadata recorded with every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// The id of the command execution; the same id on a retry identifies a repeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// Groups every message of one business transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The message (event or command) that directly caused this one.
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
