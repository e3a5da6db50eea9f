//! Damage as `verify` and `export --salvage` report it: the damaged
//! positions a salvage found ([`es_sqlite::SqliteStore::salvage`]), grouped
//! into ranges of consecutive positions, each with the streams and versions
//! its rows name where they read.

use std::collections::BTreeMap;

use es_sqlite::DamagedEvent;
use serde::Serialize;

/// One damaged position.
pub(crate) struct Damaged {
    pub(crate) position: u64,
    pub(crate) stream: Option<String>,
    pub(crate) version: Option<u64>,
    pub(crate) kind: &'static str,
    pub(crate) detail: String,
}

impl From<&DamagedEvent> for Damaged {
    fn from(found: &DamagedEvent) -> Self {
        Damaged {
            position: found.position,
            stream: found.stream.clone(),
            version: found.version,
            kind: found.kind.as_str(),
            detail: found.detail.clone(),
        }
    }
}

/// Consecutive damaged positions.
#[derive(Debug, Serialize)]
pub(crate) struct Range {
    /// The first position.
    pub(crate) from: u64,
    /// The last position.
    pub(crate) to: u64,
    /// How many positions (`to - from + 1`).
    pub(crate) events: u64,
    /// The kinds of damage found (`row`, `stream`, `unreadable`, `missing`,
    /// `payload`), sorted.
    pub(crate) kinds: Vec<&'static str>,
    /// The streams the damaged rows name and their versions, where they
    /// read: as stored, not verified.
    pub(crate) streams: Vec<StreamVersions>,
    /// What was found at the first position.
    pub(crate) detail: String,
}

/// A stream and versions of it.
#[derive(Debug, Serialize)]
pub(crate) struct StreamVersions {
    pub(crate) stream: String,
    pub(crate) versions: Vec<u64>,
}

/// Every damaged range, in position order.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub(crate) struct Ranges(Vec<Range>);

impl Ranges {
    /// Adds a damaged position, after every position added so far.
    pub(crate) fn add(&mut self, found: Damaged) {
        let extends = self
            .0
            .last()
            .is_some_and(|last| found.position == last.to + 1);
        if !extends {
            self.0.push(Range {
                from: found.position,
                to: found.position,
                events: 0,
                kinds: Vec::new(),
                streams: Vec::new(),
                detail: found.detail.clone(),
            });
        }
        let Some(range) = self.0.last_mut() else {
            return;
        };
        range.to = found.position;
        range.events += 1;
        if !range.kinds.contains(&found.kind) {
            range.kinds.push(found.kind);
            range.kinds.sort_unstable();
        }
        if let Some(stream) = found.stream {
            let known = range.streams.iter().position(|s| s.stream == stream);
            let at = known.unwrap_or_else(|| {
                range.streams.push(StreamVersions {
                    stream,
                    versions: Vec::new(),
                });
                range.streams.len() - 1
            });
            if let Some(version) = found.version {
                range.streams[at].versions.push(version);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// How many positions are damaged.
    pub(crate) fn positions(&self) -> u64 {
        self.0.iter().map(|r| r.events).sum()
    }

    /// Whether a damaged position may hold an event of `stream`: one
    /// names it, or names no stream.
    pub(crate) fn may_hold(&self, stream: &str) -> bool {
        self.0.iter().any(|r| {
            r.streams.iter().any(|s| s.stream == stream)
                || r.streams.iter().map(|s| s.versions.len()).sum::<usize>()
                    < usize::try_from(r.events).unwrap_or(usize::MAX)
        })
    }

    /// One line a range: `positions 12-14 (3 events; row): stream `a`
    /// versions 3-5; checksum mismatch ...`.
    pub(crate) fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|range| {
            let at = if range.from == range.to {
                format!(
                    "position {} (1 event; {})",
                    range.from,
                    range.kinds.join(", ")
                )
            } else {
                format!(
                    "positions {}-{} ({} events; {})",
                    range.from,
                    range.to,
                    range.events,
                    range.kinds.join(", ")
                )
            };
            let streams: Vec<String> = range
                .streams
                .iter()
                .map(|s| match s.versions.len() {
                    0 => format!("stream `{}`", s.stream),
                    1 => format!("stream `{}` version {}", s.stream, spans(&s.versions)),
                    _ => format!("stream `{}` versions {}", s.stream, spans(&s.versions)),
                })
                .collect();
            if streams.is_empty() {
                format!("{at}: {}", range.detail)
            } else {
                format!("{at}: {}; first: {}", streams.join(", "), range.detail)
            }
        })
    }
}

/// Numbers as runs: `3-5, 9`.
fn spans(numbers: &[u64]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last: Option<(u64, u64)> = None;
    for n in sorted {
        last = match last {
            Some((start, end)) if n == end + 1 => Some((start, n)),
            Some((start, end)) => {
                runs.insert(start, end);
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    if let Some((start, end)) = last {
        runs.insert(start, end);
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damaged(position: u64, stream: Option<&str>, version: Option<u64>) -> Damaged {
        Damaged {
            position,
            stream: stream.map(str::to_owned),
            version,
            kind: if stream.is_some() { "row" } else { "missing" },
            detail: format!("at {position}"),
        }
    }

    #[test]
    fn consecutive_positions_make_one_range() {
        let mut ranges = Ranges::default();
        ranges.add(damaged(4, Some("a"), Some(2)));
        ranges.add(damaged(5, Some("a"), Some(3)));
        ranges.add(damaged(6, Some("b"), Some(1)));
        ranges.add(damaged(7, None, None));
        ranges.add(damaged(10, Some("a"), Some(5)));
        let lines: Vec<String> = ranges.lines().collect();
        assert_eq!(
            lines,
            [
                "positions 4-7 (4 events; missing, row): stream `a` versions 2-3, stream `b` version 1; first: at 4",
                "position 10 (1 event; row): stream `a` version 5; first: at 10",
            ]
        );
        assert_eq!((ranges.len(), ranges.positions()), (2, 5));
        assert!(ranges.may_hold("zzz"), "position 7 names no stream");
    }

    #[test]
    fn spans_join_runs() {
        assert_eq!(spans(&[9, 3, 4, 5, 5, 11, 12]), "3-5, 9, 11-12");
        assert_eq!(spans(&[]), "");
    }
}
