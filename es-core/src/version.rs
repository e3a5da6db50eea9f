//! Stream versions, global positions and the expected version of an append.

use std::fmt;
use std::ops::{RangeFrom, RangeFull, RangeInclusive, RangeToInclusive};

/// What the writer believes about a stream's version when it appends.
///
/// Stream versions are 1-based and contiguous: the first event of a stream is
/// version 1, and a stream's version is the number of events it holds (0 for
/// a stream that does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet (same as `Exact(0)`).
    NoStream,
    /// The stream must exist (hold at least one event).
    StreamExists,
    /// The stream's version must be exactly this (`Exact(0)`: no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose current version is `current` (0: no stream)
    /// satisfies this expectation.
    pub fn accepts(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }

    /// The version the stream must be at when this expectation pins one
    /// (`NoStream` pins 0, `Exact(n)` pins n).
    pub fn pinned(self) -> Option<u64> {
        match self {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(v),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A range of stream versions to read, both ends inclusive.
///
/// Build one from a Rust range: `..` (everything), `5..` (from version 5),
/// `..=9`, `3..=9`.
///
/// ```
/// use es_core::ReadRange;
///
/// let r = ReadRange::from(3..=9);
/// assert!(r.contains(3) && r.contains(9) && !r.contains(10));
/// assert_eq!(ReadRange::from(..), ReadRange::all());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRange {
    /// The first version to read (versions start at 1).
    pub start: u64,
    /// The last version to read, if bounded.
    pub end: Option<u64>,
}

impl ReadRange {
    /// Every version.
    pub const fn all() -> Self {
        ReadRange {
            start: 1,
            end: None,
        }
    }

    /// Versions from `start` on.
    pub const fn starting_at(start: u64) -> Self {
        ReadRange { start, end: None }
    }

    /// Whether `version` is inside the range.
    pub fn contains(&self, version: u64) -> bool {
        version >= self.start && self.end.is_none_or(|end| version <= end)
    }

    /// The first version actually readable (version 0 does not exist).
    pub fn first(&self) -> u64 {
        self.start.max(1)
    }
}

impl Default for ReadRange {
    fn default() -> Self {
        ReadRange::all()
    }
}

impl From<RangeFull> for ReadRange {
    fn from(_: RangeFull) -> Self {
        ReadRange::all()
    }
}

impl From<RangeFrom<u64>> for ReadRange {
    fn from(r: RangeFrom<u64>) -> Self {
        ReadRange::starting_at(r.start)
    }
}

impl From<RangeInclusive<u64>> for ReadRange {
    fn from(r: RangeInclusive<u64>) -> Self {
        ReadRange {
            start: *r.start(),
            end: Some(*r.end()),
        }
    }
}

impl From<RangeToInclusive<u64>> for ReadRange {
    fn from(r: RangeToInclusive<u64>) -> Self {
        ReadRange {
            start: 1,
            end: Some(r.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_table() {
        use ExpectedVersion::*;
        let cases = [
            (Any, 0, true),
            (Any, 3, true),
            (NoStream, 0, true),
            (NoStream, 1, false),
            (StreamExists, 0, false),
            (StreamExists, 1, true),
            (Exact(0), 0, true),
            (Exact(2), 2, true),
            (Exact(2), 3, false),
        ];
        for (expected, current, ok) in cases {
            assert_eq!(expected.accepts(current), ok, "{expected:?} at {current}");
        }
    }
}
