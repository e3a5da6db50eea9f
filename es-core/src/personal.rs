//! [`Personal<T>`]: a field holding personal data that can be forgotten.

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A field of personal data: known, or forgotten at the data subject's request.
///
/// Wrap every field that holds personal data (an e-mail, a name, a phone
/// number) in `Personal`. Code that reads it handles both cases, so a
/// subject's data can be forgotten without any event failing to decode, any
/// projection halting, or any code changing.
///
/// A store opened with a key store encrypts each `Known` value of an event
/// under the key of its data subject, and
/// [`forget`](crate::privacy::Keys::forget) destroying the key turns it into
/// `Forgotten` for every reader (see [`privacy`](crate::privacy)). Without a
/// key store the value is stored as plain JSON.
///
/// A forgotten value serializes as the object `{"$forgotten": true}`, so a
/// `T` that serializes as a map with a `$forgotten`, `$personal` or
/// `$sealed` key cannot be wrapped.
///
/// ```
/// use es_core::Personal;
///
/// let email = Personal::known("ada@example.com".to_string());
/// assert_eq!(email.as_known().map(String::as_str), Some("ada@example.com"));
/// assert_eq!(serde_json::to_string(&email)?, r#""ada@example.com""#);
///
/// let gone: Personal<String> = serde_json::from_str(r#"{"$forgotten":true}"#)?;
/// assert!(gone.is_forgotten());
/// assert_eq!(gone.known_or("(forgotten)".into()), "(forgotten)");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    /// The value.
    Known(T),
    /// The value was forgotten.
    Forgotten,
}

impl<T> Personal<T> {
    /// A known value.
    pub fn known(value: T) -> Self {
        Personal::Known(value)
    }

    /// The value, if known.
    pub fn as_known(&self) -> Option<&T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Forgotten => None,
        }
    }

    /// The value, if known.
    pub fn into_known(self) -> Option<T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Forgotten => None,
        }
    }

    /// The value, or `fallback` when forgotten.
    pub fn known_or(self, fallback: T) -> T {
        self.into_known().unwrap_or(fallback)
    }

    /// Whether the value was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Personal::Forgotten)
    }

    /// Maps a known value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Personal<U> {
        match self {
            Personal::Known(v) => Personal::Known(f(v)),
            Personal::Forgotten => Personal::Forgotten,
        }
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::Known(value)
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    /// A known value serializes as the value itself, and a forgotten one as
    /// `{"$forgotten": true}`; inside an event being encoded, a known value
    /// is marked `{"$personal": value}` for the store to seal (see
    /// [`privacy`](crate::privacy)).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Known(v) if crate::privacy::is_marking() => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(crate::privacy::PERSONAL, v)?;
                map.end()
            }
            Personal::Known(v) => v.serialize(serializer),
            Personal::Forgotten => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(FORGOTTEN, &true)?;
                map.end()
            }
        }
    }
}

/// The key of a forgotten value's stored form.
const FORGOTTEN: &str = "$forgotten";

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    /// Reads the value itself, `{"$personal": value, ..}` (its form above
    /// the store), or `{"$forgotten": true}`. A sealed value
    /// (`{"$sealed": ..}`) is an error: the store holding it was opened
    /// without its key store.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        if let Value::Object(map) = &value {
            if let Some(forgotten) = map.get(FORGOTTEN) {
                return match forgotten {
                    Value::Bool(true) => Ok(Personal::Forgotten),
                    _ => Err(D::Error::custom("`$forgotten` marker must be `true`")),
                };
            }
            if let Some(known) = map.get(crate::privacy::PERSONAL) {
                return T::deserialize(known)
                    .map(Personal::Known)
                    .map_err(D::Error::custom);
            }
            if map.contains_key(crate::privacy::SEALED) {
                return Err(D::Error::custom(
                    "an encrypted personal value: open the store with its key store to read it",
                ));
            }
        }
        T::deserialize(value)
            .map(Personal::Known)
            .map_err(D::Error::custom)
    }
}
