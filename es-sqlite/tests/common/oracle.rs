//! The ACK oracle of RELIABILITY section 6, in process: the appends a test
//! attempted and which of them returned Ok, checked against the events a
//! store holds after a crash (the ★ invariants).

use std::collections::{BTreeMap, HashMap};

use es_core::{AppendResult, NewEvent, RecordedEvent, StreamId, Uuid};

/// An append the test attempted.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub batch: String,
    pub stream: StreamId,
    pub ids: Vec<Uuid>,
    pub payloads: Vec<String>,
    /// Set when the append returned Ok.
    pub ack: Option<Ack>,
}

/// What an acknowledged append reported, and when.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub first_version: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// The test VFS's operation count when the append returned: every
    /// power cut at or after it must keep the append.
    pub at: usize,
}

impl Attempt {
    /// A batch of `n` events of 100 to 400 bytes, their payload known to
    /// the test so it can check stored bytes exactly.
    pub fn new(batch: String, stream: &str, n: usize) -> Self {
        let payloads = (0..n)
            .map(|k| {
                format!(
                    r#"{{"batch":"{batch}","k":{k},"pad":"{}"}}"#,
                    "x".repeat(60 + (k * 37) % 300)
                )
            })
            .collect();
        Attempt {
            stream: StreamId::new(stream).expect("a valid stream id"),
            ids: (0..n).map(|_| Uuid::now_v7()).collect(),
            payloads,
            batch,
            ack: None,
        }
    }

    pub fn events(&self) -> Vec<NewEvent> {
        self.ids
            .iter()
            .zip(&self.payloads)
            .map(|(id, payload)| {
                NewEvent::new("oracle", "written", 1, payload.clone()).with_id(*id)
            })
            .collect()
    }

    /// Records the append's Ok.
    pub fn acked(&mut self, result: &AppendResult, at: usize) {
        let n = self.ids.len() as u64;
        self.ack = Some(Ack {
            first_version: result.version + 1 - n,
            first_position: result.first_position.expect("a position"),
            last_position: result.last_position.expect("a position"),
            at,
        });
    }
}

/// What [`check`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Attempts stored whole.
    pub stored: usize,
    /// Acknowledged appends not stored (only those `must` let go).
    pub acked_lost: usize,
    /// Their events.
    pub acked_lost_events: usize,
}

/// Checks the ★ invariants of `events` (every event of `$all`, in order)
/// against `attempts`, and fails the test with `what` on a violation:
/// no event id twice; positions strictly increasing; each stream's versions
/// contiguous from 1; every stored event attempted, with the attempt's
/// stream and bytes; every attempt stored whole or not at all; and every
/// acknowledged attempt for which `must` is true stored, at the versions
/// and positions its Ok reported.
pub fn check(
    what: &str,
    attempts: &[Attempt],
    events: &[RecordedEvent],
    must: impl Fn(&Ack) -> bool,
) -> Found {
    let mut by_id: HashMap<Uuid, &RecordedEvent> = HashMap::new();
    for e in events {
        assert!(
            by_id.insert(e.event_id, e).is_none(),
            "{what}: event {} stored twice",
            e.event_id
        );
    }
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "{what}: positions strictly increase ({} then {})",
            pair[0].position,
            pair[1].position
        );
    }
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in events {
        versions
            .entry(e.stream_id.as_str())
            .or_default()
            .push(e.version);
    }
    for (stream, v) in &versions {
        assert!(
            v.iter().copied().eq(1..=v.len() as u64),
            "{what}: the versions of {stream} are contiguous from 1: {v:?}"
        );
    }
    let attempted: HashMap<Uuid, (&Attempt, usize)> = attempts
        .iter()
        .flat_map(|a| a.ids.iter().enumerate().map(move |(k, id)| (*id, (a, k))))
        .collect();
    for e in events {
        let Some((attempt, k)) = attempted.get(&e.event_id) else {
            panic!("{what}: stored event {} was never attempted", e.event_id);
        };
        assert_eq!(
            e.stream_id, attempt.stream,
            "{what}: {} stream",
            attempt.batch
        );
        assert_eq!(
            e.payload().as_str(),
            attempt.payloads[*k],
            "{what}: {} bytes",
            attempt.batch
        );
    }
    let mut found = Found::default();
    for attempt in attempts {
        let stored: Vec<&RecordedEvent> = attempt
            .ids
            .iter()
            .filter_map(|id| by_id.get(id).copied())
            .collect();
        assert!(
            stored.is_empty() || stored.len() == attempt.ids.len(),
            "{what}: batch {} is partly stored ({} of {})",
            attempt.batch,
            stored.len(),
            attempt.ids.len()
        );
        for pair in stored.windows(2) {
            assert_eq!(
                pair[1].version,
                pair[0].version + 1,
                "{what}: batch {} is contiguous",
                attempt.batch
            );
        }
        if !stored.is_empty() {
            found.stored += 1;
        }
        let Some(ack) = &attempt.ack else { continue };
        if stored.is_empty() {
            assert!(
                !must(ack),
                "{what}: acknowledged batch {} is lost",
                attempt.batch
            );
            found.acked_lost += 1;
            found.acked_lost_events += attempt.ids.len();
            continue;
        }
        let (first, last) = (stored[0], stored[stored.len() - 1]);
        assert_eq!(
            (first.version, first.position, last.position),
            (ack.first_version, ack.first_position, ack.last_position),
            "{what}: batch {} is where its Ok said",
            attempt.batch
        );
    }
    found
}
