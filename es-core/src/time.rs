//! Times: when a store recorded an event, when it happened, and which of
//! the two a look back in time asks about.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time in UTC, with microsecond precision: when a store recorded
/// an event or took a snapshot, or when an event happened.
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

/// Which time a look back in time ([`Repository::load_as_of`](crate::Repository::load_as_of))
/// asks about.
///
/// Every event carries two: when the store **recorded** it (the audit time,
/// set by the store's clock) and when it **occurred** in the business's
/// world (set by the caller for imports and facts reported late; otherwise
/// the recorded time). An event counts as of `t` when its time is at or
/// before `t`, whatever the events around it say: neither clock is assumed
/// to move only forward (a clock stepped back, a back-dated import).
///
/// A bare [`Timestamp`] converts to `AsOf::Recorded`.
///
/// ```
/// use es_core::{AsOf, Timestamp};
///
/// let t = Timestamp::from_unix_micros(1_000);
/// assert_eq!(AsOf::from(t), AsOf::Recorded(t));
/// assert!(AsOf::Occurred(t).counts(Timestamp::from_unix_micros(5), Timestamp::from_unix_micros(999)));
/// assert!(!AsOf::Recorded(t).counts(Timestamp::from_unix_micros(1_001), Timestamp::from_unix_micros(0)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsOf {
    /// What the store had recorded by this time: what the system knew.
    Recorded(Timestamp),
    /// What had happened by this time, as far as the store knows now.
    Occurred(Timestamp),
}

impl AsOf {
    /// Whether an event recorded at `recorded_at` that occurred at
    /// `occurred_at` counts as of this time.
    pub fn counts(self, recorded_at: Timestamp, occurred_at: Timestamp) -> bool {
        match self {
            AsOf::Recorded(t) => recorded_at <= t,
            AsOf::Occurred(t) => occurred_at <= t,
        }
    }
}

impl From<Timestamp> for AsOf {
    fn from(t: Timestamp) -> Self {
        AsOf::Recorded(t)
    }
}
