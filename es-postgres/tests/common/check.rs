//! The checks of a log after a crash: what every acknowledged append must
//! find, and the shape every log must have.

use std::collections::{HashMap, HashSet};

use es_core::{RecordedEvent, Uuid};

/// Checks `log` (all of `$all`, in order): positions 1, 2, 3, ... without
/// a gap, no event id twice, each stream's versions 1, 2, 3, ...; every
/// id of `acked` stored; each append of `tried` (its ids) stored whole or
/// not at all. Returns how many of `tried` were stored.
pub fn check_log(log: &[RecordedEvent], acked: &[Vec<Uuid>], tried: &[Vec<Uuid>]) -> usize {
    let mut ids = HashSet::new();
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "positions are gapless");
        assert!(
            ids.insert(e.event_id),
            "event {} is stored twice",
            e.event_id
        );
        let version = versions.entry(e.stream_id.as_str()).or_default();
        *version += 1;
        assert_eq!(
            e.version, *version,
            "versions of {} are contiguous",
            e.stream_id
        );
    }
    for append in acked {
        for id in append {
            assert!(ids.contains(id), "acknowledged event {id} is missing");
        }
    }
    let mut stored = 0;
    for append in tried {
        let present = append.iter().filter(|id| ids.contains(id)).count();
        assert!(
            present == 0 || present == append.len(),
            "an append is partly stored: {present} of {}",
            append.len()
        );
        stored += usize::from(present > 0);
    }
    stored
}

/// The ids of a line's `id,id,...`. The last line of a killed child may
/// be cut short: its cut id is left out (an append whose `TRY` line was
/// cut was never sent; an `ACK` cut short acknowledges what it names).
pub fn ids(line: &str) -> Vec<Uuid> {
    line.split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}
