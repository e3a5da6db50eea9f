//! The repository's optional cache of recent states, so a hot aggregate is
//! not replayed from its snapshot or its first event on every command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::id::StreamId;

/// The last known state of up to `capacity` streams.
///
/// A cached state at version `v` is the fold of events `1..=v`, which never
/// change, so it stays right: loading starts from it and folds the events
/// appended since, by this process or any other.
pub(crate) struct StateCache<A> {
    entries: Mutex<HashMap<StreamId, Entry<A>>>,
    capacity: usize,
    clock: AtomicU64,
    clone: fn(&A) -> A,
}

struct Entry<A> {
    state: A,
    version: u64,
    used: u64,
}

impl<A> StateCache<A> {
    pub(crate) fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        StateCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            clone,
        }
    }

    /// How many aggregates it keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// A copy of the cached state of `stream` and its version, when it is
    /// at most `at_most` (any version for `None`).
    pub(crate) fn get(&self, stream: &StreamId, at_most: Option<u64>) -> Option<(A, u64)> {
        let used = self.tick();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries
            .get_mut(stream)
            .filter(|e| at_most.is_none_or(|v| e.version <= v))?;
        entry.used = used;
        Some(((self.clone)(&entry.state), entry.version))
    }

    /// Drops every cached state (they may hold personal data of a subject
    /// just forgotten).
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many aggregates it holds now.
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Remembers `state` at `version`, unless a later one is cached. When
    /// full, the least recently used quarter is dropped.
    pub(crate) fn put(&self, stream: &StreamId, state: &A, version: u64) {
        let used = self.tick();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.get(stream).is_some_and(|e| e.version > version) {
            return;
        }
        entries.insert(
            stream.clone(),
            Entry {
                state: (self.clone)(state),
                version,
                used,
            },
        );
        if entries.len() > self.capacity {
            let mut ages: Vec<u64> = entries.values().map(|e| e.used).collect();
            ages.sort_unstable();
            // Keep the most recent three quarters of the capacity (at least
            // the entry just put); `ages` has more than `capacity` entries.
            let keep = (self.capacity * 3 / 4).max(1);
            let cut = ages[ages.len() - keep - 1];
            entries.retain(|_, e| e.used > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> StreamId {
        StreamId::new(format!("s-{n}")).unwrap()
    }

    #[test]
    fn keeps_the_latest_version_and_evicts_the_least_recently_used() {
        let cache = StateCache::new(4, u32::clone);
        cache.put(&id(0), &10, 2);
        cache.put(&id(0), &5, 1); // older: ignored
        assert_eq!(cache.get(&id(0), None), Some((10, 2)));
        assert_eq!(cache.get(&id(0), Some(1)), None); // past what was asked
        assert_eq!(cache.get(&id(0), Some(2)), Some((10, 2)));
        for n in 1..4 {
            cache.put(&id(n), &u32::try_from(n).unwrap(), 1);
        }
        assert_eq!(cache.len(), 4);
        assert!(cache.get(&id(0), None).is_some()); // recently used
        cache.put(&id(4), &4, 1); // over capacity: the oldest go
        assert_eq!(cache.len(), 3, "three quarters of the capacity are kept");
        let kept: Vec<usize> = (0..5)
            .filter(|&n| cache.get(&id(n), None).is_some())
            .collect();
        assert_eq!(kept, [0, 3, 4], "the least recently used are dropped");
    }
}
