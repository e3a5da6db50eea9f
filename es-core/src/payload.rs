//! [`Payload`]: an event's encoded form.

use std::fmt;
use std::string::FromUtf8Error;

/// An event's payload as stores hold it: JSON text, so always valid UTF-8.
///
/// The derives make one with [`EventSet::encode`](crate::EventSet::encode);
/// by hand, from any `String` or `&str`, or checked from bytes with
/// [`Payload::from_utf8`]. Because the text is UTF-8 by construction, a store
/// never checks it again before writing.
///
/// ```
/// use es_core::Payload;
///
/// let p = Payload::from(r#"{"title":"printer"}"#);
/// assert_eq!(p.as_str(), r#"{"title":"printer"}"#);
/// assert_eq!(p.to_json()?["title"], "printer");
/// assert!(Payload::from_utf8(vec![0xff]).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Payload(String);

impl Payload {
    /// A payload of `json` text. Whether it is well-formed JSON is found
    /// when it is decoded.
    pub fn new(json: impl Into<String>) -> Self {
        Payload(json.into())
    }

    /// A payload of `bytes`, when they are UTF-8 text.
    ///
    /// # Errors
    ///
    /// When `bytes` are not UTF-8; the error gives them back.
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, FromUtf8Error> {
        String::from_utf8(bytes).map(Payload)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the payload is the empty string (not JSON: a payload to
    /// refuse or to repair).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The payload parsed as a JSON value (for events this program cannot
    /// decode into a type, such as in [`Decoded::Undecodable`](crate::Decoded)).
    ///
    /// # Errors
    ///
    /// When the text is not JSON.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl From<String> for Payload {
    fn from(json: String) -> Self {
        Payload(json)
    }
}

impl From<&str> for Payload {
    fn from(json: &str) -> Self {
        Payload(json.to_owned())
    }
}

impl TryFrom<Vec<u8>> for Payload {
    type Error = FromUtf8Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self, FromUtf8Error> {
        Payload::from_utf8(bytes)
    }
}

impl AsRef<str> for Payload {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq<str> for Payload {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Payload {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
