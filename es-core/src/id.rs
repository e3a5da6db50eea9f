//! Stream identifiers.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The longest stream id accepted, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 256;

/// The identity of one event stream: one aggregate instance's history.
///
/// A stream id is non-empty UTF-8 of at most [`MAX_STREAM_ID_LEN`] bytes with no
/// NUL and no other control character. Any other text is accepted and stored
/// exactly: quotes, `%`, `_` and `'; DROP TABLE` are just characters.
///
/// [`Repository`](crate::Repository) names the stream of aggregate `ticket`
/// with id `42` as `ticket-42` (the category-id convention of KurrentDB and
/// Eventuous), so two aggregate types can use the same ids without sharing a
/// stream. Cloning is cheap: the text is reference counted.
///
/// ```
/// use es_core::StreamId;
///
/// let id = StreamId::new("ticket-42")?;
/// assert_eq!(id.as_str(), "ticket-42");
/// assert!(StreamId::new("").is_err());
/// # Ok::<(), es_core::StreamIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(Arc<str>);

/// Why a text is not a valid [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    /// The id is the empty string.
    #[error("stream id is empty")]
    Empty,
    /// The id is longer than [`MAX_STREAM_ID_LEN`] bytes.
    #[error("stream id is {len} bytes long, over the limit of {MAX_STREAM_ID_LEN}")]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id contains a NUL or another control character.
    #[error("stream id contains the control character {found:?} at byte {at}")]
    ControlCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

impl StreamId {
    /// Validates `id` and makes it a stream id.
    ///
    /// # Errors
    ///
    /// When `id` is empty, too long, or holds a control character.
    pub fn new(id: impl AsRef<str>) -> Result<Self, StreamIdError> {
        let id = id.as_ref();
        Self::validate(id)?;
        Ok(StreamId(Arc::from(id)))
    }

    /// Checks `id` without allocating.
    ///
    /// # Errors
    ///
    /// As [`StreamId::new`].
    pub fn validate(id: &str) -> Result<(), StreamIdError> {
        if id.is_empty() {
            return Err(StreamIdError::Empty);
        }
        if id.len() > MAX_STREAM_ID_LEN {
            return Err(StreamIdError::TooLong { len: id.len() });
        }
        if let Some((at, found)) = id.char_indices().find(|(_, c)| c.is_control()) {
            return Err(StreamIdError::ControlCharacter { found, at });
        }
        Ok(())
    }

    /// The stream of aggregate type `aggregate` with id `id`: `"{aggregate}-{id}"`.
    ///
    /// ```
    /// use es_core::{StreamId, StreamIdError};
    ///
    /// let stream = StreamId::for_aggregate("lead", "12")?;
    /// assert_eq!(stream.as_str(), "lead-12");
    /// assert_eq!(stream.aggregate_id("lead"), Some("12"));
    /// // An error's position is in the id given, not in the stream id.
    /// assert_eq!(
    ///     StreamId::for_aggregate("lead", "1\n2"),
    ///     Err(StreamIdError::ControlCharacter { found: '\n', at: 1 })
    /// );
    /// # Ok::<(), StreamIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When `id` is empty or holds a control character (the position is
    /// `id`'s), or the stream id would be too long.
    pub fn for_aggregate(aggregate: &str, id: &str) -> Result<Self, StreamIdError> {
        Self::validate(id)?;
        Self::new(format!("{aggregate}-{id}"))
    }

    /// The id of the aggregate of type `aggregate_type` this stream belongs
    /// to: the text after `"{aggregate_type}-"`; `None` when the stream is
    /// not named that way.
    pub fn aggregate_id(&self, aggregate_type: &str) -> Option<&str> {
        self.0
            .strip_prefix(aggregate_type)?
            .strip_prefix('-')
            .filter(|id| !id.is_empty())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for StreamId {
    type Error = StreamIdError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl serde::Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StreamId::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hostile_but_printable_text() {
        for id in ["'; DROP TABLE events; --", "%_*[", "\u{202e}rtl", "a\"b'c"] {
            assert_eq!(StreamId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_bad_ids_with_typed_errors() {
        assert_eq!(StreamId::new(""), Err(StreamIdError::Empty));
        assert_eq!(
            StreamId::new("a\0b"),
            Err(StreamIdError::ControlCharacter { found: '\0', at: 1 })
        );
        let long = "x".repeat(MAX_STREAM_ID_LEN + 1);
        assert_eq!(
            StreamId::new(&long),
            Err(StreamIdError::TooLong {
                len: MAX_STREAM_ID_LEN + 1
            })
        );
        assert!(StreamId::new("x".repeat(MAX_STREAM_ID_LEN)).is_ok());
        assert_eq!(
            StreamId::for_aggregate("ticket", ""),
            Err(StreamIdError::Empty)
        );
    }
}
