//! One command at a time per aggregate, within one process.
//!
//! Under group commit, commands on one hot aggregate that race arrive in the
//! same batch: one wins, the others conflict, catch up, and arrive together
//! again, so a command can lose many times in a row and run out of retries
//! (8 writers on one stream, 3 retries: more than half the commands failed).
//! A repository therefore lets the commands on one aggregate through one at
//! a time (as Axon's locking repository and an actor per aggregate do):
//! they queue instead of racing, and conflicts come only from writers
//! outside this repository (other processes), which the conflict policy
//! still handles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_lock::{Mutex as AsyncMutex, MutexGuardArc};

use crate::id::StreamId;

/// The queue of each aggregate with a command running or waiting.
#[derive(Default)]
pub(crate) struct Gates {
    locks: Mutex<HashMap<StreamId, Arc<AsyncMutex<()>>>>,
}

/// The right to run a command on one aggregate; the next waits until it is
/// dropped.
pub(crate) struct Pass<'g> {
    gates: &'g Gates,
    stream: StreamId,
    guard: Option<MutexGuardArc<()>>,
}

impl Gates {
    /// Waits until no other command of this repository runs on `stream`.
    pub(crate) async fn enter(&self, stream: &StreamId) -> Pass<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stream.clone())
            .or_default()
            .clone();
        let guard = lock.lock_arc().await;
        Pass {
            gates: self,
            stream: stream.clone(),
            guard: Some(guard),
        }
    }

    /// How many aggregates have a command running or waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        // No code under this lock can panic part-way through an update.
        let mut locks = self
            .gates
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Clones of the lock are only taken under `locks`: when the map's is
        // the last, nobody waits, and the entry goes.
        if locks
            .get(&self.stream)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_on_one_aggregate_take_turns_and_the_queue_is_cleared() {
        let gates = Gates::default();
        let a = StreamId::new("t-a").unwrap();
        let b = StreamId::new("t-b").unwrap();
        pollster::block_on(async {
            let first = gates.enter(&a).await;
            // Another aggregate is not held up.
            let other = gates.enter(&b).await;
            assert_eq!(gates.len(), 2);
            drop(other);
            assert_eq!(gates.len(), 1);
            // The same aggregate waits for the first to finish.
            let mut second = std::pin::pin!(gates.enter(&a));
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            assert!(second.as_mut().poll(&mut cx).is_pending());
            drop(first);
            let second = second.await;
            assert_eq!(gates.len(), 1);
            drop(second);
            assert_eq!(gates.len(), 0, "nothing is kept for idle aggregates");
        });
    }
}
