//! Live notification of new events, for subscriptions in the same process.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

/// The sending side: a store calls [`Notifier::notify`] after every commit.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    position: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
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
}
