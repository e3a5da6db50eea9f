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
/// Both methods have do-nothing defaults, so a store without snapshot support
/// implements it with `impl SnapshotStore for MyStore {}`.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        let _ = stream;
        async { Ok(None) }
    }

    /// Stores `snapshot` as the latest of its stream, replacing an older one.
    /// A snapshot older than the stored one is ignored.
    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        let _ = snapshot;
        async { Ok(()) }
    }
}
