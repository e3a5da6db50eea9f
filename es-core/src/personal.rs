//! [`Personal<T>`]: a field holding personal data that can be forgotten.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A field of personal data: known, or forgotten at the data subject's request.
///
/// Wrap every field that holds personal data (an e-mail, a name, a phone
/// number) in `Personal`. Code that reads it handles both cases, so a
/// subject's data can be forgotten without any event failing to decode, any
/// projection halting, or any code changing.
///
/// Today the value is stored as plain JSON and `Forgotten` as a marker; the
/// forgettable-payload work encrypts `Known` values with a key per data
/// subject, and destroying the key turns them into `Forgotten`. The type and
/// the code using it stay the same.
///
/// The stored marker of a forgotten value is the object
/// `{"$forgotten": true}`, so a `T` that serializes as a map with a
/// `$forgotten` key cannot be wrapped.
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

/// The stored form of a forgotten value.
#[derive(Serialize, Deserialize)]
struct ForgottenMarker {
    #[serde(rename = "$forgotten")]
    forgotten: bool,
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Known(v) => v.serialize(serializer),
            Personal::Forgotten => ForgottenMarker { forgotten: true }.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored<T> {
            Forgotten(ForgottenMarker),
            Known(T),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Forgotten(ForgottenMarker { forgotten: true }) => Personal::Forgotten,
            Stored::Forgotten(ForgottenMarker { forgotten: false }) => {
                return Err(serde::de::Error::custom(
                    "`$forgotten` marker must be `true`",
                ));
            }
            Stored::Known(v) => Personal::Known(v),
        })
    }
}
