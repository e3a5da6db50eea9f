//! Sharding by aggregate id: [`ShardedStore`] routes each stream to one of
//! N stores by a stable hash of its stream id, over any store (N SQLite
//! files, N PostgreSQL databases, N in-memory stores).
//!
//! ```
//! use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, ShardedStore, StreamId};
//!
//! # pollster::block_on(async {
//! let store = ShardedStore::new(vec![InMemoryStore::new(), InMemoryStore::new()])?;
//! let ticket = StreamId::new("ticket-1")?;
//! let opened = NewEvent::new("ticket", "ticket-opened", 1, "{}");
//! let done = store.append(&ticket, ExpectedVersion::NoStream, vec![opened]).await?;
//!
//! // The stream lives in one shard, always the same one.
//! let shard = store.shard_for(&ticket);
//! assert_eq!(shard, es_core::shard::shard_of(&ticket, 2) as usize);
//! let home = store.shard(shard).expect("a shard");
//! assert_eq!(home.stream_version(&ticket).await?, 1);
//!
//! // A position of the sharded store is (shard, position in that shard).
//! let position = done.first_position.expect("one event");
//! assert_eq!(store.split_position(position), Some((shard, 1)));
//! # Ok::<(), es_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # The stable hash (a stored-format promise)
//!
//! The shard of a stream is [`shard_of`]`(stream, N)`, and it never changes
//! between versions of this crate: it decides where the events of existing
//! stores are, so changing it would lose them. It is:
//!
//! 1. **FNV-1a, 64 bits**, over the UTF-8 bytes of the stream id
//!    ([`fnv1a_64`]): `h = 0xcbf29ce484222325` ([`FNV_OFFSET_BASIS`]); for
//!    each byte `b`, `h = (h ^ b) * 0x100000001b3` ([`FNV_PRIME`]),
//!    wrapping modulo 2^64.
//! 2. **Jump consistent hash** (Lamping and Veach, "A Fast, Minimal Memory,
//!    Consistent Hash Algorithm", 2014) of `h` into N buckets
//!    ([`jump_hash`]): `b = -1, j = 0`; while `j < N`: `b = j`,
//!    `key = key * 2862933555777941757 + 1` ([`JUMP_MULTIPLIER`], wrapping
//!    modulo 2^64), `j = floor((b + 1) * (2^31 / ((key >> 33) + 1)))`
//!    computed in IEEE 754 double precision; the shard is `b`.
//!
//! Every operand of the floating-point step is an integer below 2^53, so
//! it is exact in double precision and the result is the same on every
//! platform. Growing N to N + 1 moves only about 1/(N + 1) of the streams
//! (the ones the jump hash sends to the new bucket), and never between two
//! old shards. A golden test keeps the outputs for fixed stream ids.
//!
//! # What a sharded store promises, and what it does not
//!
//! All events of one stream live in one shard, so everything the
//! [`EventStore`] contract says of one stream holds: contiguous versions,
//! optimistic concurrency, idempotent repeats, limits, names, metadata,
//! times, snapshots. With one shard a `ShardedStore` is its shard, with
//! the same positions: it passes the conformance suite unchanged. With more:
//!
//! - **Atomic appends stay in one shard.** An
//!   [`append_to_streams`](EventStore::append_to_streams) whose streams
//!   are all in one shard goes to that shard, atomically. One whose
//!   streams span shards is refused with [`Error::CrossShard`], writing
//!   nothing: shards commit apart, and a two-phase commit across them
//!   would be a distributed transaction, which sharding is meant to avoid.
//!   Keep the streams of one atomic append in one shard, or use a process
//!   manager or compensating events.
//!   What appends to several streams at once meets the same rule: the
//!   evolution tools' migrations (their copies and moved markers) and
//!   [`Repository`](crate::Repository)'s commands over several aggregates
//!   work on streams of one shard, and are refused across shards.
//! - **Event ids are unique per shard.** An append whose event id is stored
//!   in a stream of another shard is not detected as
//!   [`Error::DuplicateEvent`] (that would need a global index, or a look
//!   up in every shard on every append). Idempotent repeats, which are of
//!   one stream, work as ever; [`find_event`](EventStore::find_event)
//!   looks in every shard, so a command id is found wherever it is.
//! - **Positions are per shard.** A single gapless order across shards
//!   cannot exist without a global sequencer, which every append would
//!   wait for. A position of a sharded store encodes (shard `i`, position
//!   `l` in that shard) as `(l - 1) * N + i + 1` ([`encode_position`],
//!   [`split_position`]): with one shard it is the shard's position, and
//!   it increases with `l` within a shard. Append results, every event read
//!   through the sharded store, [`last_position`](EventStore::last_position)
//!   (the largest encoded last position of the shards) and
//!   [`read_all`](EventStore::read_all) use it.
//! - **`$all` is per shard, and the sharded `read_all` is a merge.**
//!   `read_all(from)` merges the shards' `$all` in encoded order, starting
//!   in each shard at the first position whose encoding is at least
//!   `from`. Across shards that is not a commit order: a slower shard can
//!   commit an event whose encoded position is below one already read
//!   from another shard. **A single `u64` checkpoint of it is not safe for
//!   a projection**: resuming from it would skip that event. Projections
//!   read the merged feed instead: [`ShardedStore::read_all_from`] with
//!   [`ShardCheckpoints`], one checkpoint per shard, which resumes each
//!   shard exactly where it was left, so every event is handled exactly
//!   once.
//! - **Checkpoints** ([`CheckpointStore`]) are kept in shard 0. A
//!   projection's per-shard checkpoints are saved there too, by
//!   [`ShardCheckpoints::save`] under the names
//!   `"{name}@shard-{i}"` and `"{name}@shards"` (the number of shards):
//!   a stored format.
//! - **[`watch`](EventStore::watch)** wakes when any shard commits: an
//!   append through the sharded store notifies at once, and a thread per
//!   shard (started by the first `watch`, ending soon after the last clone
//!   of the store is dropped) forwards the commits made through the shards
//!   themselves. Its position is the encoded one.
//! - **Forgetting** ([`Forget`]) erases the subject on every shard
//!   ([`Forget::erase`]: each shard destroys the subject's keys in its own
//!   key store and deletes its snapshots; shards may share one key store
//!   or each have their own, both are sound), then records the one
//!   `es.subject-forgotten` event in the shard of the subject's stream.
//!
//! # Resharding: from N shards to M, by copy
//!
//! Events are immutable and a stream's shard depends on N, so changing N
//! means copying every stream into a new sharded store: [`reshard`] does
//! it through the export format (the same [`ExportedEvent`],
//! [`ImportCheck`] and [`ImportBatches`] as `es export` and `es import`),
//! keeping each event's id, stream, version, name, schema version,
//! metadata and occurred-at time; its recorded-at time and position are the
//! new store's, as for any import. It copies each source shard's `$all` in
//! order, each event to the target shard of its stream, in appends within
//! the target's [`Limits`](crate::Limits), and it is resumable: it advances per-source-shard
//! checkpoints, so a second call copies only what was appended since, and an
//! interrupted call copies nothing twice (events already in the target are
//! recognised by stream, version and id, and skipped).
//!
//! A live store moves so:
//!
//! 1. Open M new, empty stores, and make `to = ShardedStore::new(them)`.
//! 2. While the writers go on writing to the old store, run
//!    `reshard(&from, &to, &mut progress, &limits)` from
//!    `progress = ShardCheckpoints::new(N)`, again and again until a run
//!    copies little (save `progress` with [`ShardCheckpoints::save`] to
//!    resume after a restart; without it, a run from the beginning skips
//!    what is copied, reading it again).
//! 3. Stop the writers (or make the old store refuse writes).
//! 4. Run `reshard` once more, with the same `progress`: it copies the rest.
//! 5. Point the writers and readers at the new store. Snapshots are not
//!    copied (they are taken again) nor checkpoints: positions differ in
//!    the new store, so rebuild projections from its merged feed
//!    ([`ShardedStore::read_all_from`] with new [`ShardCheckpoints`]).
//! 6. Keep the old stores until the new one is checked.
//!
//! With the command line instead, for SQLite files: `es export` each old
//! shard file (`es export shard-0.db --out shard-0.jsonl`, ...), then for
//! each new shard `i` of M, `es --db new-i.db import --shard i/M` each
//! export file: `--shard i/M` imports only the streams that [`shard_of`]
//! sends to shard `i` of M. Importing is idempotent, so the exports of a
//! live store can be imported again after the writers stop: what was
//! imported already is a repeat.
//!
//! Personal data: an event is copied as the source store reads it. A store
//! opened with its key store reads personal fields open, and a target with
//! a key store seals them again under its own keys (values already
//! forgotten stay forgotten); a store opened without keys reads them
//! sealed, and they are copied sealed, readable only with the source's key
//! store. With a key store per shard (es-sqlite's default, a file beside
//! each events file), reshard with the keys open on both sides; with one
//! key store shared by all shards, either way works.
//!
//! [`ExportedEvent`]: crate::export::ExportedEvent
//! [`ImportCheck`]: crate::export::ImportCheck
//! [`ImportBatches`]: crate::export::ImportBatches

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use uuid::Uuid;

use crate::checkpoint::CheckpointStore;
use crate::envelope::{EventRef, RecordedEvent};
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::privacy::{Erased, Forget};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::backend::{Notifier, stream_of};
use crate::store::{AppendResult, EventStore, EventStream, StoredEventType, StreamWrite, Watch};
use crate::version::ReadRange;

mod feed;
mod reshard;

pub use feed::ShardCheckpoints;
pub use reshard::{ReshardError, Resharded, reshard};

/// The offset basis of 64-bit FNV-1a.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The prime of 64-bit FNV-1a.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// The multiplier of the jump consistent hash's linear congruential step.
pub const JUMP_MULTIPLIER: u64 = 2_862_933_555_777_941_757;

/// 64-bit FNV-1a of `bytes` (see the [module docs](self)).
///
/// ```
/// assert_eq!(es_core::shard::fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(es_core::shard::fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// Lamping and Veach's jump consistent hash of `key` into `buckets`
/// buckets, `0..buckets` (see the [module docs](self)); 0 buckets are
/// taken as 1.
///
/// ```
/// assert_eq!(es_core::shard::jump_hash(256, 1024), 520);
/// ```
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(JUMP_MULTIPLIER).wrapping_add(1);
        // b + 1 <= buckets <= u32::MAX and (key >> 33) + 1 <= 2^31: both
        // exact in a double, as is 2^31.
        let next_bucket = f64::from(u32::try_from(b + 1).unwrap_or(u32::MAX));
        let draw = f64::from(u32::try_from(key >> 33).unwrap_or(u32::MAX)) + 1.0;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the paper's truncation toward zero; at most 2^63, which saturates past every bucket"
        )]
        let jumped = (next_bucket * (f64::from(1u32 << 31) / draw)) as i64;
        j = jumped;
    }
    u32::try_from(b).unwrap_or(0)
}

/// The shard of `stream` among `shards` shards, `0..shards` (0 shards are
/// taken as 1): [`jump_hash`] of [`fnv1a_64`] of the stream id's UTF-8
/// bytes. A stored-format promise: it never changes between versions.
///
/// ```
/// use es_core::{StreamId, shard::shard_of};
///
/// let stream = StreamId::new("ticket-1")?;
/// assert_eq!(shard_of(&stream, 1), 0);
/// assert!(shard_of(&stream, 4) < 4);
/// # Ok::<(), es_core::StreamIdError>(())
/// ```
pub fn shard_of(stream: &StreamId, shards: u32) -> u32 {
    jump_hash(fnv1a_64(stream.as_str().as_bytes()), shards)
}

/// The position of a sharded store of `shards` shards for position `local`
/// of shard `shard`: `(local - 1) * shards + shard + 1`. `None` for local
/// position 0 (no event), a shard out of range, or a result past
/// [`u64::MAX`].
///
/// ```
/// use es_core::shard::{encode_position, split_position};
///
/// assert_eq!(encode_position(1, 3, 4), Some(10));
/// assert_eq!(split_position(10, 4), Some((1, 3)));
/// assert_eq!(encode_position(0, 7, 1), Some(7)); // one shard: the shard's own
/// ```
pub fn encode_position(shard: usize, local: u64, shards: usize) -> Option<u64> {
    if local == 0 || shard >= shards {
        return None;
    }
    let n = u64::try_from(shards).ok()?;
    let i = u64::try_from(shard).ok()?;
    (local - 1).checked_mul(n)?.checked_add(i)?.checked_add(1)
}

/// The (shard, position in the shard) of `position` of a sharded store of
/// `shards` shards, the inverse of [`encode_position`]; `None` for
/// position 0 or 0 shards.
pub fn split_position(position: u64, shards: usize) -> Option<(usize, u64)> {
    let n = u64::try_from(shards).ok().filter(|&n| n > 0)?;
    let p = position.checked_sub(1)?;
    Some((usize::try_from(p % n).ok()?, p / n + 1))
}

/// The first position of shard `shard` whose encoding is at least `from`.
fn first_local(shard: usize, from: u64, shards: usize) -> u64 {
    let n = u64::try_from(shards).unwrap_or(u64::MAX).max(1);
    let i = u64::try_from(shard).unwrap_or(u64::MAX);
    from.saturating_sub(i.saturating_add(1))
        .div_ceil(n)
        .saturating_add(1)
}

/// An event store over N stores, each stream in the shard [`shard_of`]
/// gives it (see the [module docs](self) for what it promises and what it
/// does not).
///
/// Clones share the shards.
pub struct ShardedStore<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    shards: Vec<S>,
    count: u32,
    hub: Arc<Hub>,
    /// Set once the forwarding threads of [`EventStore::watch`] run.
    forwarding: OnceLock<()>,
}

/// The notifier of the sharded store's watches; the forwarding threads
/// hold it weakly, and end when it is gone.
struct Hub {
    notifier: Notifier,
}

impl<S> Clone for ShardedStore<S> {
    fn clone(&self) -> Self {
        ShardedStore {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for ShardedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedStore")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl<S> ShardedStore<S> {
    /// A store over `shards`, shard `i` being `shards[i]`. The order is
    /// part of the layout: open the same stores in the same order every
    /// time.
    ///
    /// # Errors
    ///
    /// [`Error::ShardCount`] for no shards, or more than [`u32::MAX`].
    pub fn new(shards: Vec<S>) -> Result<Self> {
        let count =
            u32::try_from(shards.len())
                .ok()
                .filter(|&n| n > 0)
                .ok_or(Error::ShardCount {
                    shards: shards.len(),
                })?;
        Ok(ShardedStore {
            inner: Arc::new(Inner {
                shards,
                count,
                hub: Arc::new(Hub {
                    notifier: Notifier::new(0),
                }),
                forwarding: OnceLock::new(),
            }),
        })
    }

    /// The shards, in order.
    pub fn shards(&self) -> &[S] {
        &self.inner.shards
    }

    /// Shard `i`, if there is one.
    pub fn shard(&self, i: usize) -> Option<&S> {
        self.inner.shards.get(i)
    }

    /// The shard that holds `stream`: [`shard_of`] over this store's
    /// number of shards.
    pub fn shard_for(&self, stream: &StreamId) -> usize {
        // u32 into usize: lossless on every platform es builds for.
        usize::try_from(shard_of(stream, self.inner.count)).unwrap_or(0)
    }

    /// The (shard, position in the shard) of a position of this store
    /// ([`split_position`]); `None` for 0.
    pub fn split_position(&self, position: u64) -> Option<(usize, u64)> {
        split_position(position, self.inner.shards.len())
    }

    /// The position of this store for position `local` of shard `shard`
    /// ([`encode_position`]).
    pub fn position(&self, shard: usize, local: u64) -> Option<u64> {
        encode_position(shard, local, self.inner.shards.len())
    }

    /// The shard holding `stream`, itself.
    fn home(&self, stream: &StreamId) -> (usize, &S) {
        let i = self.shard_for(stream);
        // `shard_for` is below the number of shards, which is at least 1.
        match self.inner.shards.get(i) {
            Some(shard) => (i, shard),
            None => (0, &self.inner.shards[0]),
        }
    }

    fn encode(&self, shard: usize, local: u64) -> Result<u64> {
        encode_position(shard, local, self.inner.shards.len()).ok_or_else(|| too_far(shard, local))
    }

    /// The shard of every write, or the refusal of an append that spans
    /// shards. An empty append goes to shard 0.
    fn route(&self, writes: &[StreamWrite]) -> Result<usize> {
        let shards: Vec<usize> = writes.iter().map(|w| self.shard_for(&w.stream)).collect();
        match shards.first() {
            None => Ok(0),
            Some(&first) if shards.iter().all(|&s| s == first) => Ok(first),
            Some(_) => Err(Error::CrossShard {
                streams: writes.iter().map(|w| w.stream.clone()).collect(),
                shards,
            }),
        }
    }

    fn encode_result(&self, shard: usize, result: &mut AppendResult) -> Result<()> {
        for p in [&mut result.first_position, &mut result.last_position]
            .into_iter()
            .flatten()
        {
            *p = self.encode(shard, *p)?;
        }
        Ok(())
    }
}

impl<S: EventStore> ShardedStore<S> {
    /// The merged feed for projections: every event of every shard after
    /// the positions of `checkpoints` (shard by shard), merged in encoded
    /// position order, each with its encoded position (which
    /// [`ShardCheckpoints::advance`] takes). Resuming from the checkpoints
    /// of the events handled so far reads each shard exactly from where it
    /// was left, so no event is skipped or read twice, however the shards'
    /// commits interleave (see the [module docs](self)).
    ///
    /// ```
    /// use es_core::shard::ShardCheckpoints;
    /// use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, ShardedStore, StreamId};
    ///
    /// # pollster::block_on(async {
    /// let store = ShardedStore::new(vec![InMemoryStore::new(), InMemoryStore::new()])?;
    /// for id in ["a", "b", "c"] {
    ///     let event = NewEvent::new("thing", "made", 1, "{}");
    ///     store.append(&StreamId::new(id)?, ExpectedVersion::NoStream, vec![event]).await?;
    /// }
    /// let mut checkpoints = ShardCheckpoints::load(&store, "counter", 2).await?;
    /// let mut feed = store.read_all_from(&checkpoints);
    /// let mut handled = 0;
    /// while let Some(event) = es_core::store::next(&mut feed).await {
    ///     handled += 1;
    ///     checkpoints.advance(event?.position);
    /// }
    /// checkpoints.save(&store, "counter").await?;
    /// assert_eq!(handled, 3);
    ///
    /// // Resumed: nothing new.
    /// let checkpoints = ShardCheckpoints::load(&store, "counter", 2).await?;
    /// assert!(es_core::store::next(&mut store.read_all_from(&checkpoints)).await.is_none());
    /// # Ok::<(), es_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn read_all_from(&self, checkpoints: &ShardCheckpoints) -> EventStream {
        let shards = self.inner.shards.len();
        if checkpoints.shards() != shards {
            return stream_of(Some(Error::ShardCheckpoints {
                name: None,
                found: checkpoints.shards() as u64,
                shards,
            }));
        }
        let heads = self
            .inner
            .shards
            .iter()
            .zip(checkpoints.as_slice())
            .map(|(shard, &handled)| shard.read_all(handled.saturating_add(1)))
            .collect();
        Box::pin(Merge::new(heads, shards))
    }

    /// Starts the threads that forward each shard's commits to the
    /// sharded store's watches, once.
    fn forward_commits(&self) {
        self.inner.forwarding.get_or_init(|| {
            let shards = self.inner.shards.len();
            for (i, shard) in self.inner.shards.iter().enumerate() {
                let mut watch = shard.watch();
                let hub = Arc::downgrade(&self.inner.hub);
                let spawned = std::thread::Builder::new()
                    .name(format!("es-shard-watch-{i}"))
                    .spawn(move || forward(&mut watch, &hub, i, shards));
                if let Err(e) = spawned {
                    tracing::warn!(
                        shard = i,
                        "cannot start the thread forwarding a shard's commits to watches ({e}); \
                         watches still wake on appends through the sharded store"
                    );
                }
            }
        });
    }
}

/// How long a forwarding thread waits before it looks whether its store
/// is gone.
const FORWARD_POLL: Duration = Duration::from_millis(200);

fn forward(watch: &mut Watch, hub: &Weak<Hub>, shard: usize, shards: usize) {
    loop {
        let seen = watch.wait_timeout(FORWARD_POLL);
        let Some(hub) = hub.upgrade() else {
            return;
        };
        if let Some(position) = seen.and_then(|local| encode_position(shard, local, shards)) {
            hub.notifier.notify(position);
        }
    }
}

fn too_far(shard: usize, local: u64) -> Error {
    Error::Corrupt {
        detail: format!(
            "position {local} of shard {shard} is past the positions a sharded store can number"
        ),
    }
}

impl<S: EventStore> EventStore for ShardedStore<S> {
    /// Appends in the one shard of the writes' streams.
    ///
    /// # Errors
    ///
    /// [`Error::CrossShard`] when the streams are in more than one shard
    /// (nothing is written); else the shard's.
    async fn append_to_streams(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        let shard = self.route(&writes)?;
        let store = self
            .inner
            .shards
            .get(shard)
            .ok_or_else(|| too_far(shard, 0))?;
        let mut results = store.append_to_streams(writes).await?;
        let mut last = 0;
        for result in &mut results {
            self.encode_result(shard, result)?;
            if !result.repeated {
                last = last.max(result.last_position.unwrap_or(0));
            }
        }
        if last > 0 {
            self.inner.hub.notifier.notify(last);
        }
        Ok(results)
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        let (i, shard) = self.home(stream);
        let mut heads: Vec<Option<EventStream>> =
            (0..self.inner.shards.len()).map(|_| None).collect();
        heads[i] = Some(shard.read_stream(stream, range));
        Box::pin(Merge::sparse(heads, self.inner.shards.len()))
    }

    fn fold_stream<F>(
        &self,
        stream: &StreamId,
        range: ReadRange,
        fold: F,
    ) -> impl Future<Output = Result<()>> + Send
    where
        F: FnMut(EventRef<'_>) -> Result<ControlFlow<()>> + Send,
    {
        // An `EventRef` carries no position: the shard's own fold serves.
        self.home(stream).1.fold_stream(stream, range, fold)
    }

    /// The shards' `$all`, merged in encoded position order: not a commit
    /// order across shards (see the [module docs](self)).
    fn read_all(&self, from: u64) -> EventStream {
        let shards = self.inner.shards.len();
        let heads = self
            .inner
            .shards
            .iter()
            .enumerate()
            .map(|(i, shard)| shard.read_all(first_local(i, from, shards)))
            .collect();
        Box::pin(Merge::new(heads, shards))
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send {
        self.home(stream).1.stream_version(stream)
    }

    /// The largest encoded last position of the shards.
    async fn last_position(&self) -> Result<u64> {
        let mut last = 0;
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let local = shard.last_position().await?;
            if local > 0 {
                last = last.max(self.encode(i, local)?);
            }
        }
        Ok(last)
    }

    /// Wakes when any shard commits, with the encoded position.
    fn watch(&self) -> Watch {
        self.forward_commits();
        let shards = self.inner.shards.len();
        let last = self
            .inner
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, shard)| encode_position(i, shard.watch().last_position(), shards))
            .max()
            .unwrap_or(0);
        self.inner.hub.notifier.notify(last);
        self.inner.hub.notifier.watch()
    }

    /// Looked up in each shard in turn.
    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>> {
        for (i, shard) in self.inner.shards.iter().enumerate() {
            if let Some(mut event) = shard.find_event(event_id).await? {
                event.position = self.encode(i, event.position)?;
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The shards' answers, merged in encoded position order.
    fn read_correlated(&self, correlation_id: Uuid) -> EventStream {
        let heads = self
            .inner
            .shards
            .iter()
            .map(|shard| shard.read_correlated(correlation_id))
            .collect();
        Box::pin(Merge::new(heads, self.inner.shards.len()))
    }

    /// The shards' counts, added up.
    async fn event_types(&self) -> Result<Vec<StoredEventType>> {
        let mut counts = BTreeMap::<(String, String, u32), u64>::new();
        for shard in &self.inner.shards {
            for t in shard.event_types().await? {
                *counts
                    .entry((t.aggregate_type, t.name, t.schema_version))
                    .or_default() += t.count;
            }
        }
        Ok(StoredEventType::from_counts(counts))
    }
}

impl<S: SnapshotStore> SnapshotStore for ShardedStore<S> {
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        self.home(stream).1.load_snapshot(stream)
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        let (_, shard) = self.home(&snapshot.stream_id);
        shard.save_snapshot(snapshot)
    }

    fn queue_snapshot(&self, snapshot: Snapshot) {
        let (_, shard) = self.home(&snapshot.stream_id);
        shard.queue_snapshot(snapshot);
    }

    fn delete_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        self.home(stream).1.delete_snapshot(stream)
    }
}

/// Checkpoints are kept in shard 0.
impl<S: CheckpointStore> CheckpointStore for ShardedStore<S> {
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send {
        self.inner.shards[0].load_checkpoint(name)
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner.shards[0].save_checkpoint(name, position)
    }
}

/// [`Forget::forget`] is the default: erased on every shard, then the
/// forgetting recorded in the shard of its subject stream (the counts are
/// of all shards).
impl<S: Forget> Forget for ShardedStore<S> {
    /// Erases the subject on every shard, in order.
    async fn erase(&self, subject: &str) -> Result<Erased> {
        let (mut keys, mut snapshots) = (0usize, 0u64);
        for shard in &self.inner.shards {
            let erased = shard.erase(subject).await?;
            keys = keys.saturating_add(erased.keys_destroyed);
            snapshots = snapshots.saturating_add(erased.snapshots_deleted);
        }
        Ok(Erased::new(keys, snapshots))
    }
}

/// A k-way merge of the shards' event streams by encoded position; each
/// shard's stream is in its own position order, so the merge is in
/// encoded order. It ends after the first error.
struct Merge {
    heads: Vec<Head>,
    shards: usize,
    failed: bool,
}

struct Head {
    shard: usize,
    events: EventStream,
    next: Option<RecordedEvent>,
    done: bool,
}

impl Merge {
    fn new(streams: Vec<EventStream>, shards: usize) -> Self {
        Merge::sparse(streams.into_iter().map(Some).collect(), shards)
    }

    /// Shard `i` reads `streams[i]`; `None` reads nothing.
    fn sparse(streams: Vec<Option<EventStream>>, shards: usize) -> Self {
        let heads = streams
            .into_iter()
            .enumerate()
            .filter_map(|(shard, events)| {
                Some(Head {
                    shard,
                    events: events?,
                    next: None,
                    done: false,
                })
            })
            .collect();
        Merge {
            heads,
            shards,
            failed: false,
        }
    }
}

impl Stream for Merge {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let mut pending = false;
        for head in &mut this.heads {
            if head.done || head.next.is_some() {
                continue;
            }
            match head.events.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(mut event))) => {
                    let Some(position) = encode_position(head.shard, event.position, this.shards)
                    else {
                        this.failed = true;
                        return Poll::Ready(Some(Err(too_far(head.shard, event.position))));
                    };
                    event.position = position;
                    head.next = Some(event);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => head.done = true,
                Poll::Pending => pending = true,
            }
        }
        if pending {
            return Poll::Pending;
        }
        let first = this
            .heads
            .iter_mut()
            .filter(|h| h.next.is_some())
            .min_by_key(|h| h.next.as_ref().map_or(u64::MAX, |e| e.position));
        Poll::Ready(first.and_then(|h| h.next.take()).map(Ok))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests of fixed inputs")]

    use super::*;

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jump_hash_matches_the_reference_vectors() {
        // The vectors of the reference implementations' tests.
        assert_eq!(jump_hash(1, 1), 0);
        assert_eq!(jump_hash(42, 57), 43);
        assert_eq!(jump_hash(0xDEAD_10CC, 1), 0);
        assert_eq!(jump_hash(0xDEAD_10CC, 666), 361);
        assert_eq!(jump_hash(256, 1024), 520);
        assert_eq!(jump_hash(7, 0), 0);
    }

    /// The stored-format promise: these outputs were computed once and
    /// must never change. Never regenerate them.
    #[test]
    fn shard_of_is_stable() {
        // Shards over N = 1, 2, 3, 4 and 16.
        const GOLDEN: &[(&str, [u32; 5])] = &[
            ("ticket-1", [0, 0, 2, 2, 12]),
            ("ticket-2", [0, 1, 1, 3, 10]),
            ("order-42", [0, 0, 0, 0, 7]),
            ("customer-7", [0, 1, 1, 1, 1]),
            ("lead-100", [0, 1, 1, 1, 5]),
            ("a", [0, 1, 2, 2, 12]),
            ("Z", [0, 1, 2, 2, 7]),
            ("es.subject-ada", [0, 0, 0, 0, 0]),
            ("account-0001", [0, 0, 0, 0, 0]),
            ("emoji-\u{1f4a5}", [0, 1, 1, 1, 13]),
            ("'; DROP TABLE events; --", [0, 0, 2, 3, 3]),
            ("0190a2d4-7e00-7000-8000-000000000001", [0, 0, 0, 0, 10]),
        ];
        for (id, want) in GOLDEN {
            let stream = StreamId::new(*id).unwrap();
            let got = [1, 2, 3, 4, 16].map(|n| shard_of(&stream, n));
            assert_eq!(&got, want, "shard_of({id:?}, [1, 2, 3, 4, 16])");
        }
    }

    #[test]
    fn growing_by_one_shard_moves_streams_only_to_the_new_one() {
        let mut moved = 0;
        for n in 0..2000 {
            let stream = StreamId::new(format!("order-{n}")).unwrap();
            let (before, after) = (shard_of(&stream, 4), shard_of(&stream, 5));
            if before != after {
                assert_eq!(after, 4);
                moved += 1;
            }
        }
        // About a fifth.
        assert!((300..500).contains(&moved), "{moved} of 2000 moved");
    }

    #[test]
    fn positions_encode_and_split() {
        for shards in 1..6usize {
            for shard in 0..shards {
                for local in 1..20u64 {
                    let p = encode_position(shard, local, shards).unwrap();
                    assert_eq!(split_position(p, shards), Some((shard, local)));
                    assert_eq!(first_local(shard, p, shards), local);
                    assert_eq!(first_local(shard, p + 1, shards), local + 1);
                }
            }
        }
        assert_eq!(encode_position(0, 0, 2), None);
        assert_eq!(encode_position(2, 1, 2), None);
        assert_eq!(encode_position(1, u64::MAX, 2), None);
        assert_eq!(split_position(0, 2), None);
        assert_eq!(split_position(5, 0), None);
        assert_eq!(first_local(3, u64::MAX, 4), u64::MAX / 4 + 1);
        assert_eq!(first_local(0, 0, 3), 1);
    }

    #[test]
    fn no_shards_is_an_error() {
        let made = ShardedStore::<crate::InMemoryStore>::new(Vec::new());
        assert!(matches!(made, Err(Error::ShardCount { shards: 0 })));
    }
}
