//! [`reshard`]: copying a sharded store into one of another number of
//! shards, through the export format.

use std::collections::HashMap;

use crate::error::{Conflict, Error};
use crate::export::{ExportedEvent, ImportBatch, ImportBatches, ImportCheck, ImportRefusal};
use crate::id::StreamId;
use crate::store::{EventStore, Limits, next};
use crate::version::{ExpectedVersion, ReadRange};

use super::{ShardCheckpoints, ShardedStore};

/// What one [`reshard`] run copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resharded {
    /// Events read from the source.
    pub read: u64,
    /// Events appended to the target.
    pub copied: u64,
    /// Events found in the target already (an interrupted run's), skipped.
    pub skipped: u64,
    /// Appends made to the target.
    pub appends: u64,
}

/// Why a [`reshard`] stopped. What it copied before stays copied, and its
/// checkpoints say how far it got: run it again once the cause is fixed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReshardError {
    /// A store failed to read or write, or the target refused an append
    /// (a conflict: its stream is not where the copy expects it, as when
    /// the target was not empty).
    #[error(transparent)]
    Store(#[from] Error),
    /// An event of the source cannot be imported into the target: over
    /// the target's limits, or breaking a rule of the export format.
    #[error("event at position {position} of source shard {shard} cannot be copied")]
    Refused {
        /// The source shard.
        shard: usize,
        /// Its position in that shard.
        position: u64,
        /// Why.
        #[source]
        refusal: ImportRefusal,
    },
    /// An event's stored payload is not JSON (a damaged source).
    #[error("the payload at position {position} of source shard {shard} is not JSON")]
    NotJson {
        /// The source shard.
        shard: usize,
        /// Its position in that shard.
        position: u64,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Copies every event of `from` that `progress` does not cover into `to`,
/// shard by shard of `from`, each in its `$all` order, each event to the
/// target shard of its stream; advances `progress` (one checkpoint per
/// source shard) past each source shard copied whole. Returns what it
/// did. `limits` are the target's: appends stay within them.
///
/// Run it again with the same `progress` to copy what was appended since:
/// this is how a live store moves (the [module docs](super) give the
/// procedure). An event that is in the target already (an interrupted
/// run's) is recognised by its stream, version and id, and skipped; each
/// event is otherwise appended expecting its stream at the version before
/// it, so nothing is copied twice.
///
/// A plain store is a source too: `ShardedStore::new(vec![store])` has
/// the store's positions.
///
/// # Errors
///
/// [`ReshardError`]; [`Error::ShardCheckpoints`] when `progress` is not of
/// `from`'s number of shards.
pub async fn reshard<A: EventStore, B: EventStore>(
    from: &ShardedStore<A>,
    to: &ShardedStore<B>,
    progress: &mut ShardCheckpoints,
    limits: &Limits,
) -> Result<Resharded, ReshardError> {
    if progress.shards() != from.shards().len() {
        return Err(Error::ShardCheckpoints {
            name: None,
            found: progress.shards() as u64,
            shards: from.shards().len(),
        }
        .into());
    }
    let mut done = Resharded::default();
    for (shard, source) in from.shards().iter().enumerate() {
        let start = progress.local(shard).unwrap_or(0);
        let last = copy_shard(source, shard, start, to, limits, &mut done).await?;
        progress.set(shard, last);
    }
    Ok(done)
}

/// Copies source shard `shard` from after position `start`; returns the
/// last position copied.
async fn copy_shard<A: EventStore, B: EventStore>(
    source: &A,
    shard: usize,
    start: u64,
    to: &ShardedStore<B>,
    limits: &Limits,
    done: &mut Resharded,
) -> Result<u64, ReshardError> {
    let mut batches: Vec<ImportBatches> = to
        .shards()
        .iter()
        .map(|_| ImportBatches::new(false, limits))
        .collect();
    let mut check = ImportCheck::new(false, *limits);
    // Each stream's version in the target, with what is batched counted.
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut events = source.read_all(start.saturating_add(1));
    let mut last = start;
    while let Some(event) = next(&mut events).await {
        let event = event?;
        let position = event.position;
        done.read += 1;
        let version = match versions.get(&event.stream_id) {
            Some(&v) => v,
            None => to.stream_version(&event.stream_id).await?,
        };
        if event.version <= version {
            already_copied(to, &event.stream_id, event.version, event.event_id, version).await?;
            done.skipped += 1;
        } else {
            let exported = ExportedEvent::of(&event).map_err(|source| ReshardError::NotJson {
                shard,
                position,
                source,
            })?;
            check
                .check(&exported)
                .map_err(|refusal| ReshardError::Refused {
                    shard,
                    position,
                    refusal,
                })?;
            let target = to.shard_for(&event.stream_id);
            let line = usize::try_from(position).unwrap_or(usize::MAX);
            let full = batches
                .get_mut(target)
                .map(|b| b.push(line, exported))
                .transpose()
                .map_err(Error::from)?
                .flatten();
            if let Some(batch) = full {
                append(to, batch, done).await?;
            }
        }
        versions.insert(event.stream_id, event.version.max(version));
        last = position;
    }
    for batch in &mut batches {
        if let Some(batch) = batch.finish() {
            append(to, batch, done).await?;
        }
    }
    Ok(last)
}

/// Checks that the target holds this very event at `version` of `stream`.
async fn already_copied<B: EventStore>(
    to: &ShardedStore<B>,
    stream: &StreamId,
    version: u64,
    event_id: uuid::Uuid,
    actual: u64,
) -> Result<(), Error> {
    let mut found = to.read_stream(stream, ReadRange::from(version..=version));
    match next(&mut found).await.transpose()? {
        Some(stored) if stored.event_id == event_id => Ok(()),
        _ => Err(Conflict {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(version.saturating_sub(1)),
            actual,
        }
        .into()),
    }
}

async fn append<B: EventStore>(
    to: &ShardedStore<B>,
    batch: ImportBatch,
    done: &mut Resharded,
) -> Result<(), Error> {
    let results = to.append_to_streams(batch.writes).await?;
    done.appends += 1;
    let events = batch.events as u64;
    if results.iter().all(|r| r.repeated) {
        done.skipped += events;
    } else {
        done.copied += events;
    }
    Ok(())
}
