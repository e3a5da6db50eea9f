//! [`InMemoryStore`]: the complete event store contract, in process memory.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_core::Stream;
use uuid::Uuid;

use crate::checkpoint::CheckpointStore;
use crate::envelope::RecordedEvent;
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::privacy::{Erased, Forget, KeyStore, Keys};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::backend::{Notifier, StoredAt, check_append, decide_append};
use crate::store::{
    AppendResult, EventStore, EventStream, Limits, StoredEventType, StreamWrite, Watch,
};
use crate::time::Timestamp;
use crate::version::ReadRange;

/// An event store in memory: for tests, examples and prototypes.
///
/// It keeps every promise of [`EventStore`] (it passes the conformance suite)
/// under concurrent use from any number of threads and tasks; it only forgets
/// everything when the last clone is dropped. Clones share one store.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamId};
///
/// # pollster::block_on(async {
/// let store = InMemoryStore::new();
/// let stream = StreamId::new("ticket-1")?;
/// let opened = NewEvent::new("ticket", "ticket-opened", 1, r#"{"title":"printer"}"#);
/// let done = store.append(&stream, ExpectedVersion::NoStream, vec![opened]).await?;
/// assert_eq!((done.version, done.first_position), (1, Some(1)));
///
/// let again = store.append(&stream, ExpectedVersion::NoStream, vec![]).await;
/// assert!(again.unwrap_err().is_conflict());
/// # Ok::<(), es_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
    keys: Option<Keys>,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    snapshots: Mutex<HashMap<StreamId, Snapshot>>,
    checkpoints: Mutex<HashMap<String, u64>>,
    limits: Limits,
    notifier: Notifier,
}

#[derive(Default)]
struct Log {
    /// Every event; position `p` is at index `p - 1`.
    all: Vec<Arc<RecordedEvent>>,
    /// Per stream: its aggregate type and the indexes of its events in `all`.
    streams: HashMap<StreamId, StreamEntry>,
    /// Event id to index in `all`.
    ids: HashMap<Uuid, usize>,
    /// How many events of each (aggregate type, name, schema version).
    types: std::collections::BTreeMap<(String, String, u32), u64>,
}

struct StreamEntry {
    aggregate_type: Arc<str>,
    events: Vec<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code that runs under these locks can panic part-way through an
    // update, so a poisoned lock still guards consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InMemoryStore {
    /// An empty store with default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        InMemoryStore {
            shared: Arc::new(Shared {
                limits,
                ..Shared::default()
            }),
            keys: None,
        }
    }

    /// This store sealing the [`Personal`](crate::Personal) fields of the
    /// events it appends with `keys`, and opening those it reads (see
    /// [`privacy`](crate::privacy)). Clones made from the returned store
    /// share the keys.
    #[must_use]
    pub fn with_keys(mut self, keys: impl KeyStore) -> Self {
        self.keys = Some(Keys::new(keys));
        self
    }

    /// Every payload as stored, in position order: what a dump of the
    /// store would show (personal fields sealed).
    pub fn stored_payloads(&self) -> Vec<String> {
        lock(&self.shared.log)
            .all
            .iter()
            .map(|e| e.event.as_str().to_owned())
            .collect()
    }

    fn append_now(&self, mut writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        if let Some(keys) = &self.keys {
            keys.seal_writes(&mut writes)?;
        }
        // Metadata is kept as the typed value: its stored form is not needed.
        let writes = check_append(&self.shared.limits, writes)?.writes;
        let mut log = lock(&self.shared.log);
        // Decide every write first; write only when all may proceed.
        let mut decisions = Vec::with_capacity(writes.len());
        for write in &writes {
            let entry = log.streams.get(&write.stream);
            let current = entry.map_or(0, |s| s.events.len() as u64);
            if let (Some(entry), Some(first)) = (entry, write.events.first())
                && *entry.aggregate_type != *first.aggregate_type
            {
                return Err(Error::AggregateMismatch {
                    stream: write.stream.clone(),
                    requested: first.aggregate_type.to_string(),
                    actual: entry.aggregate_type.to_string(),
                });
            }
            let found: Vec<Option<StoredAt>> = write
                .events
                .iter()
                .map(|e| {
                    log.ids.get(&e.event_id).map(|&i| StoredAt {
                        stream: log.all[i].stream_id.clone(),
                        version: log.all[i].version,
                        position: log.all[i].position,
                    })
                })
                .collect();
            decisions.push((decide_append(write, current, &found)?, current));
        }
        let now = Timestamp::now();
        let mut results = Vec::with_capacity(writes.len());
        let before = log.all.len();
        for (write, (decision, current)) in writes.into_iter().zip(decisions) {
            let result = match decision.settled(&write, current) {
                Some(settled) => settled,
                None => log.write(write, current, now),
            };
            results.push(result);
        }
        let after = log.all.len();
        drop(log);
        if after > before {
            self.shared.notifier.notify(after as u64);
        }
        Ok(results)
    }
}

impl Log {
    fn write(&mut self, write: StreamWrite, current: u64, now: Timestamp) -> AppendResult {
        let first_position = self.all.len() as u64 + 1;
        let aggregate_type: Arc<str> = match self.streams.get(&write.stream) {
            Some(entry) => entry.aggregate_type.clone(),
            None => Arc::from(&*write.events[0].aggregate_type),
        };
        let mut version = current;
        for event in write.events {
            version += 1;
            let index = self.all.len();
            self.ids.insert(event.event_id, index);
            *self
                .types
                .entry((
                    aggregate_type.to_string(),
                    event.name.to_string(),
                    event.schema_version,
                ))
                .or_default() += 1;
            self.all.push(Arc::new(RecordedEvent {
                stream_id: write.stream.clone(),
                aggregate_type: aggregate_type.clone(),
                version,
                position: index as u64 + 1,
                event_id: event.event_id,
                recorded_at: now,
                occurred_at: event.occurred_at.unwrap_or(now),
                name: event.name.into_owned(),
                schema_version: event.schema_version,
                event: event.payload,
                metadata: event.metadata,
            }));
            self.streams
                .entry(write.stream.clone())
                .or_insert_with(|| StreamEntry {
                    aggregate_type: aggregate_type.clone(),
                    events: Vec::new(),
                })
                .events
                .push(index);
        }
        AppendResult {
            stream_id: write.stream,
            version,
            first_position: Some(first_position),
            last_position: Some(self.all.len() as u64),
            repeated: false,
        }
    }
}

/// Reads one event at a time under the lock, so readers never block writers
/// for longer than a clone.
struct Reader {
    shared: Arc<Shared>,
    keys: Option<Keys>,
    stream: Option<StreamId>,
    next: u64,
    end: Option<u64>,
}

impl Stream for Reader {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.end.is_some_and(|end| self.next > end) {
            return Poll::Ready(None);
        }
        let log = lock(&self.shared.log);
        let index = match &self.stream {
            Some(stream) => log
                .streams
                .get(stream)
                .and_then(|s| s.events.get(usize::try_from(self.next - 1).ok()?))
                .copied(),
            None => usize::try_from(self.next - 1)
                .ok()
                .filter(|&i| i < log.all.len()),
        };
        let event = index.map(|i| RecordedEvent::clone(&log.all[i]));
        drop(log);
        let Some(mut event) = event else {
            return Poll::Ready(None);
        };
        self.next += 1;
        if let Some(Err(e)) = self.keys.as_ref().map(|k| k.open_event(&mut event)) {
            return Poll::Ready(Some(Err(e.into())));
        }
        Poll::Ready(Some(Ok(event)))
    }
}

impl EventStore for InMemoryStore {
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send {
        ready(self.append_now(writes))
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        Box::pin(Reader {
            shared: self.shared.clone(),
            keys: self.keys.clone(),
            stream: Some(stream.clone()),
            next: range.first(),
            end: range.end,
        })
    }

    fn read_all(&self, from: u64) -> EventStream {
        Box::pin(Reader {
            shared: self.shared.clone(),
            keys: self.keys.clone(),
            stream: None,
            next: from.max(1),
            end: None,
        })
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send {
        let log = lock(&self.shared.log);
        ready(Ok(log
            .streams
            .get(stream)
            .map_or(0, |s| s.events.len() as u64)))
    }

    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send {
        ready(Ok(lock(&self.shared.log).all.len() as u64))
    }

    fn watch(&self) -> Watch {
        self.shared.notifier.watch()
    }

    /// Looked up in the index of event ids.
    fn find_event(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send {
        let found = {
            let log = lock(&self.shared.log);
            log.ids
                .get(&event_id)
                .map(|&i| RecordedEvent::clone(&log.all[i]))
        };
        let opened = match (found, &self.keys) {
            (Some(mut event), Some(keys)) => keys
                .open_event(&mut event)
                .map(|()| Some(event))
                .map_err(Error::from),
            (found, _) => Ok(found),
        };
        ready(opened)
    }

    fn event_types(&self) -> impl Future<Output = Result<Vec<StoredEventType>>> + Send {
        let types = lock(&self.shared.log).types.clone();
        ready(Ok(StoredEventType::from_counts(types)))
    }
}

impl SnapshotStore for InMemoryStore {
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        ready(Ok(lock(&self.shared.snapshots).get(stream).cloned()))
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        self.queue_snapshot(snapshot);
        ready(Ok(()))
    }

    fn queue_snapshot(&self, snapshot: Snapshot) {
        let mut snapshots = lock(&self.shared.snapshots);
        let newer = snapshots
            .get(&snapshot.stream_id)
            .is_none_or(|old| old.version <= snapshot.version);
        if newer {
            snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
    }

    fn delete_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        lock(&self.shared.snapshots).remove(stream);
        ready(Ok(()))
    }
}

impl Forget for InMemoryStore {
    fn erase(&self, subject: &str) -> impl Future<Output = Result<Erased>> + Send {
        ready(self.erase_now(subject))
    }
}

impl InMemoryStore {
    /// Destroys the subject's keys, then deletes every snapshot.
    fn erase_now(&self, subject: &str) -> Result<Erased> {
        let keys_destroyed = match &self.keys {
            Some(keys) => keys.forget(subject)?,
            None => 0,
        };
        let mut snapshots = lock(&self.shared.snapshots);
        let snapshots_deleted = snapshots.len() as u64;
        snapshots.clear();
        Ok(Erased::new(keys_destroyed, snapshots_deleted))
    }
}

impl CheckpointStore for InMemoryStore {
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send {
        ready(Ok(lock(&self.shared.checkpoints).get(name).copied()))
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<()>> + Send {
        lock(&self.shared.checkpoints).insert(name.to_owned(), position);
        ready(Ok(()))
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = lock(&self.shared.log);
        f.debug_struct("InMemoryStore")
            .field("events", &log.all.len())
            .field("streams", &log.streams.len())
            .field("keys", &self.keys.is_some())
            .finish()
    }
}
