//! Recorded-at times.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time in UTC, with microsecond precision: when a store recorded
/// an event or took a snapshot.
///
/// Displayed and parsed as RFC 3339 (`2026-11-23T18:10:06.123456Z`); times
/// outside 1970..=9999 as `@<microseconds>us`.
///
/// ```
/// use es_core::Timestamp;
///
/// let t: Timestamp = "2026-01-02T03:04:05.000006Z".parse()?;
/// assert_eq!(t.to_string(), "2026-01-02T03:04:05.000006Z");
/// assert_eq!(Timestamp::from_unix_micros(t.as_unix_micros()), t);
/// # Ok::<(), es_core::TimestampError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A text that is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time: {0:?}")]
pub struct TimestampError(String);

impl Timestamp {
    /// The current time from the system clock.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// The time `micros` microseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since 1970-01-01T00:00:00Z (negative before).
    pub const fn as_unix_micros(self) -> i64 {
        self.0
    }

    /// This time as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Timestamp(micros)
    }
}

/// The last microsecond RFC 3339 can show: 9999-12-31T23:59:59.999999Z.
const LAST_RFC3339: i64 = 253_402_300_799_999_999;

impl fmt::Display for Timestamp {
    /// RFC 3339 for times from 1970 to 9999; other times (only a damaged
    /// store holds them) as `@<microseconds>us`, which parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0..=LAST_RFC3339).contains(&self.0) {
            fmt::Display::fmt(&humantime::format_rfc3339_micros(self.to_system_time()), f)
        } else {
            write!(f, "@{}us", self.0)
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(micros) = s.strip_prefix('@').and_then(|m| m.strip_suffix("us")) {
            return micros
                .parse()
                .map(Timestamp)
                .map_err(|_| TimestampError(s.to_owned()));
        }
        humantime::parse_rfc3339_weak(s)
            .map(Timestamp::from)
            .map_err(|_| TimestampError(s.to_owned()))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
