//! Live notification of new events, for subscriptions in the same process.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

/// The sending side: a store calls [`Notifier::notify`] after every commit.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    position: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
    /// Wakes the threads blocked in [`Watch::wait_timeout`]; waited on with
    /// the `wakers` lock.
    threads: Condvar,
}

impl Notifier {
    /// A notifier whose last position is `position`.
    pub fn new(position: u64) -> Self {
        let notifier = Notifier::default();
        notifier.shared.position.store(position, Ordering::SeqCst);
        notifier
    }

    /// Publishes that events up to `position` are committed, waking every
    /// waiting [`Watch`]. Positions only move forward.
    pub fn notify(&self, position: u64) {
        let previous = self.shared.position.fetch_max(position, Ordering::SeqCst);
        if position > previous {
            let wakers = std::mem::take(
                &mut *self
                    .shared
                    .wakers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for waker in wakers {
                waker.wake();
            }
            self.shared.threads.notify_all();
        }
    }

    /// A watch that has seen everything up to now.
    pub fn watch(&self) -> Watch {
        Watch {
            shared: self.shared.clone(),
            seen: self.shared.position.load(Ordering::SeqCst),
        }
    }
}

/// The receiving side: waits for events committed after the last one seen.
///
/// ```
/// use es_core::store::backend::Notifier;
///
/// let notifier = Notifier::new(0);
/// let mut watch = notifier.watch();
/// notifier.notify(3);
/// assert_eq!(pollster::block_on(watch.changed()), 3);
/// assert_eq!(watch.last_position(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Watch {
    shared: Arc<Shared>,
    seen: u64,
}

impl Watch {
    /// The last committed position this watch knows of.
    pub fn last_position(&self) -> u64 {
        self.shared.position.load(Ordering::SeqCst)
    }

    /// Waits until a position past the last one seen is committed; returns it.
    pub async fn changed(&mut self) -> u64 {
        let position = poll_fn(|cx| {
            let now = self.shared.position.load(Ordering::SeqCst);
            if now > self.seen {
                return Poll::Ready(now);
            }
            let mut wakers = self
                .shared
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            drop(wakers);
            // A notify between the first load and the registration would be
            // missed: look again now that the waker is registered.
            let now = self.shared.position.load(Ordering::SeqCst);
            if now > self.seen {
                Poll::Ready(now)
            } else {
                Poll::Pending
            }
        })
        .await;
        self.seen = position;
        position
    }

    /// Blocks the calling thread until a position past the last one seen is
    /// committed, or `timeout` passes: `Some(position)`, or `None` on
    /// timeout. For threads that follow a store without an executor (a
    /// read-model runner); async code uses [`changed`](Watch::changed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use es_core::store::backend::Notifier;
    ///
    /// let notifier = Notifier::new(0);
    /// let mut watch = notifier.watch();
    /// assert_eq!(watch.wait_timeout(Duration::from_millis(1)), None);
    /// notifier.notify(2);
    /// assert_eq!(watch.wait_timeout(Duration::from_secs(5)), Some(2));
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<u64> {
        let seen = self.seen;
        let nothing_newer =
            |_: &mut Vec<Waker>| self.shared.position.load(Ordering::SeqCst) <= seen;
        let wakers = self
            .shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The position is stored before `notify` takes the lock, and checked
        // here under it: a notification cannot fall between check and wait.
        let (wakers, waited) = self
            .shared
            .threads
            .wait_timeout_while(wakers, timeout, nothing_newer)
            .unwrap_or_else(PoisonError::into_inner);
        drop(wakers);
        if waited.timed_out() {
            return None;
        }
        self.seen = self.shared.position.load(Ordering::SeqCst);
        Some(self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_from_another_thread_wakes_the_waiter() {
        let notifier = Notifier::new(5);
        let mut watch = notifier.watch();
        let sender = notifier.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            sender.notify(4); // backwards: ignored
            sender.notify(9);
        });
        assert_eq!(pollster::block_on(watch.changed()), 9);
        handle.join().unwrap();
    }

    #[test]
    fn a_notification_from_another_thread_wakes_a_blocked_thread() {
        let notifier = Notifier::new(1);
        let mut watch = notifier.watch();
        let sender = notifier.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.notify(1); // not newer: wakes nobody
            sender.notify(7);
        });
        // A minute: the notification, not the timeout, ends the wait.
        assert_eq!(watch.wait_timeout(Duration::from_mins(1)), Some(7));
        handle.join().unwrap();
        assert_eq!(watch.wait_timeout(Duration::from_millis(5)), None);
    }
}
