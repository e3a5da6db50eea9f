//! A store that implements only the required methods of `EventStore`
//! passes the conformance suite through the trait's defaults
//! (`find_event`, `read_correlated`, `event_types`, `fold_stream`, `append`).

use es_core::{
    AppendResult, CheckpointStore, EventStore, EventStream, InMemoryStore, ReadRange, Snapshot,
    SnapshotStore, StreamId, StreamWrite, Watch,
};

/// The in-memory store behind nothing but the required methods.
#[derive(Clone, Default)]
struct Minimal(InMemoryStore);

impl EventStore for Minimal {
    async fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> es_core::Result<Vec<AppendResult>> {
        self.0.append_to_streams(writes).await
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        self.0.read_stream(stream, range)
    }

    fn read_all(&self, from: u64) -> EventStream {
        self.0.read_all(from)
    }

    async fn stream_version(&self, stream: &StreamId) -> es_core::Result<u64> {
        self.0.stream_version(stream).await
    }

    async fn last_position(&self) -> es_core::Result<u64> {
        self.0.last_position().await
    }

    fn watch(&self) -> Watch {
        self.0.watch()
    }
}

impl SnapshotStore for Minimal {
    async fn load_snapshot(&self, stream: &StreamId) -> es_core::Result<Option<Snapshot>> {
        self.0.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> es_core::Result<()> {
        self.0.save_snapshot(snapshot).await
    }

    async fn delete_snapshot(&self, stream: &StreamId) -> es_core::Result<()> {
        self.0.delete_snapshot(stream).await
    }
}

impl CheckpointStore for Minimal {
    async fn load_checkpoint(&self, name: &str) -> es_core::Result<Option<u64>> {
        self.0.load_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> es_core::Result<()> {
        self.0.save_checkpoint(name, position).await
    }
}

es_core::store_conformance_tests!(Minimal::default());
