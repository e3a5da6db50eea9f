//! Snapshots: a stream's folded state at one version, so loading replays only
//! the events after it.
//!
//! Snapshots are an optimisation and never required for a correct answer:
//! deleting them all changes no result. A snapshot whose state schema version
//! differs from the aggregate's [`SnapshotPolicy`](crate::SnapshotPolicy), or
//! that fails to decode, is ignored and replaced.

use std::future::Future;

use crate::error::Result;
use crate::id::StreamId;
use crate::time::Timestamp;

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: StreamId,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The stream version the state includes.
    pub version: u64,
    /// The schema version of the serialized state.
    pub schema_version: u32,
    /// The serialized state.
    pub state: Vec<u8>,
    /// When it was taken.
    pub taken_at: Timestamp,
}

/// Where snapshots are kept: the latest one per stream.
///
/// Every method has a do-nothing default, so a store without snapshot
/// support implements it with `impl SnapshotStore for MyStore {}`.
///
/// The [`Repository`](crate::Repository) never makes a command wait for a
/// snapshot: it hands new ones to [`queue_snapshot`](SnapshotStore::queue_snapshot),
/// which returns at once, so a snapshot due after an append costs the
/// command no second commit.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The latest snapshot of `stream`, if any.
    ///
    /// # Errors
    ///
    /// When the store cannot be read. A damaged snapshot may be reported as
    /// `Ok(None)`: the caller replays the events instead.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        let _ = stream;
        async { Ok(None) }
    }

    /// Stores `snapshot` as the latest of its stream, replacing an older one,
    /// and waits until it is stored. A snapshot older than the stored one is
    /// ignored.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        let _ = snapshot;
        async { Ok(()) }
    }

    /// Stores `snapshot` as [`save_snapshot`](SnapshotStore::save_snapshot)
    /// does, without waiting: it is written with the store's next commit, or
    /// dropped when the store cannot take it now (snapshots are an
    /// optimisation; a failure is logged, never returned).
    fn queue_snapshot(&self, snapshot: Snapshot) {
        let _ = snapshot;
    }

    /// Deletes the snapshot of `stream`: one that cannot be trusted (it is
    /// past the end of its stream, as after restoring an older backup of the
    /// events) is removed so a new one can take its place.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    fn delete_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        let _ = stream;
        async { Ok(()) }
    }
}
