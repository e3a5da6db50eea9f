//! Following `$all` as events are committed: what `es tail` prints, and
//! what the page's live tail (`GET /api/tail`) streams.

use std::time::Duration;

use es_core::blocking::block_on;
use es_core::store::next;
use es_core::{Error, EventStore, RecordedEvent, Watch};
use es_sqlite::SqliteStore;

/// How long a follower waits before reading again. The store's watch
/// wakes it at once for the commits of this process; those of other
/// processes (the inspector's store is read-only: all of them) are found
/// by the next read.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// A position in `$all` to follow on from.
pub(crate) struct Follow {
    store: SqliteStore,
    next: u64,
    watch: Watch,
}

impl Follow {
    /// Follows `store` from position `from`, or from after its last event.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub(crate) fn new(store: SqliteStore, from: Option<u64>) -> Result<Follow, Error> {
        // Watched before the last position is read: a commit between the
        // two still wakes the first wait.
        let watch = store.watch();
        let next = match from {
            Some(position) => position.max(1),
            None => block_on(store.last_position())? + 1,
        };
        Ok(Follow { store, next, watch })
    }

    /// Gives `each` every event committed from the next position on, in
    /// order, moving past each.
    ///
    /// # Errors
    ///
    /// When the store cannot be read, or `each` fails.
    pub(crate) fn read<E: From<Error>>(
        &mut self,
        mut each: impl FnMut(RecordedEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut events = self.store.read_all(self.next);
        while let Some(event) = block_on(next(&mut events)) {
            let event = event?;
            self.next = event.position + 1;
            each(event)?;
        }
        Ok(())
    }

    /// Waits for new events: until this process commits, or [`POLL`].
    pub(crate) fn wait(&mut self) {
        self.watch.wait_timeout(POLL);
    }
}
