//! The errors of stores and repositories.

use uuid::Uuid;

use crate::event::{DecodeError, EncodeError};
use crate::id::{StreamId, StreamIdError};
use crate::name::NameError;
use crate::version::ExpectedVersion;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed cause from a store backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a store or repository operation can fail with.
///
/// Every failure is one of these: an error, never a panic, for every input a
/// caller or a store file can supply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the expected version.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// An event id of the append is already stored, and the append is not an
    /// exact repeat of the earlier one (see [`EventStore`](crate::EventStore)).
    #[error(
        "event {event_id} is already stored in stream `{stream}` at version {version}, and this append is not a repeat of that one"
    )]
    DuplicateEvent {
        /// The id found in the store.
        event_id: Uuid,
        /// Where it is stored.
        stream: StreamId,
        /// At which version.
        version: u64,
    },
    /// The stream holds events of another aggregate type.
    #[error("stream `{stream}` holds events of aggregate `{actual}`, not `{requested}`")]
    AggregateMismatch {
        /// The stream.
        stream: StreamId,
        /// The aggregate type of the append.
        requested: String,
        /// The aggregate type the stream was created with.
        actual: String,
    },
    /// A compensating command named an event that its stream does not
    /// hold: one never stored, or one of another stream (see
    /// [`Command::compensating`](crate::Command::compensating)). The
    /// decision did not run and nothing was appended.
    #[error("stream `{stream}` holds no event {target} to compensate")]
    CompensationTargetNotFound {
        /// The stream of the command.
        stream: StreamId,
        /// The event id the command named.
        target: Uuid,
    },
    /// A command's command id is already stored, but not as an earlier
    /// execution of this command: its events are in another stream, or
    /// were recorded by a command of another name (see
    /// [`Command::command_id`](crate::Command::command_id)). Nothing was
    /// appended; give the command a fresh id, or none.
    #[error(
        "command id {command_id} was already used by {} on stream `{used_in}`; \
         {} on stream `{stream}` is not a repeat of it",
        command_name(.used_by.as_deref()), command_name(.command.as_deref())
    )]
    CommandIdReused {
        /// The command id.
        command_id: Uuid,
        /// The stream of this command.
        stream: StreamId,
        /// This command's name ([`Metadata::command`](crate::Metadata::command)).
        command: Option<String>,
        /// The stream holding the events of the earlier command.
        used_in: StreamId,
        /// The earlier command's name, as recorded with its events.
        used_by: Option<String>,
    },
    /// The stream id is not valid.
    #[error(transparent)]
    InvalidStreamId(#[from] StreamIdError),
    /// An input is over one of the store's limits.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// An event or aggregate name of an append breaks the
    /// [name rule](crate::name).
    #[error("invalid name {name:?}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        #[source]
        reason: NameError,
    },
    /// An append is malformed (one event id twice, one stream twice, ...).
    #[error("invalid event `{name}`: {reason}")]
    InvalidEvent {
        /// The event's name as given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A stored event cannot be decoded by this program.
    #[error("cannot decode the event at version {version} of stream `{stream}`")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version.
        version: u64,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An event cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Another writer held the store past the busy timeout.
    #[error("the store is busy: another writer held it past the busy timeout")]
    Busy,
    /// The disk (or the store's configured size limit) is full. Nothing of the
    /// failed operation was written; retry once space is freed.
    #[error("the storage is full; nothing of this operation was written")]
    StorageFull,
    /// The storage failed to read or write: an I/O error of the disk or
    /// the operating system. A write that fails so is not stored; retry
    /// once the fault is repaired.
    #[error("the storage failed to read or write: {detail}")]
    Io {
        /// What the backend reported.
        detail: String,
    },
    /// A flush to disk (`fsync`) failed. The store refuses every write
    /// after it with this error until it is reopened: after a failed flush
    /// the operating system may have dropped the written data while still
    /// reading it back, so a retried flush could succeed with the data never
    /// on disk (PostgreSQL's "fsyncgate", 2018). The write that saw the
    /// failure may or may not be stored: read it back once reopened.
    #[error("a flush to disk failed: the store refuses writes until it is reopened")]
    SyncFailed,
    /// Stored data is damaged.
    #[error("stored data is corrupt: {detail}")]
    Corrupt {
        /// What was found.
        detail: String,
    },
    /// The store cannot be written (a read-only file or medium).
    #[error("the store is read-only")]
    ReadOnly,
    /// The store refuses every write (append, snapshot, checkpoint) because
    /// damage was found in its file since it was opened: nothing of this
    /// write was tried. Reads go on, and report the damage they meet. Not
    /// retryable: verify the file, restore or salvage it, and open the store
    /// again (a backend documents how). Distinct from [`Error::Corrupt`],
    /// which says that an operation itself met damage.
    #[error(
        "the store refuses writes since damage was found in its file ({detail}); verify the file, restore or salvage it, then open the store again"
    )]
    WritesRefused {
        /// The first damage found, as [`Error::Corrupt`] reported it.
        detail: String,
    },
    /// An inline read model (one updated inside the append's transaction)
    /// refused an event of this append: nothing of the append was written.
    #[error("an inline read model refused this append; nothing of it was written")]
    Projection(#[source] Box<crate::projection::ProjectionError>),
    /// The stream was moved by a [migration](crate::evolution): it ends
    /// with a marker naming the streams its events were copied to. A
    /// [`Repository`](crate::Repository) loading or commanding it reports
    /// this (see [`MovedPolicy`](crate::evolution::MovedPolicy)).
    #[error("stream `{stream}` has moved to {}", stream_list(.to))]
    Moved {
        /// The old stream.
        stream: StreamId,
        /// Where its events are now.
        to: Vec<StreamId>,
    },
    /// An atomic append named streams of more than one shard of a
    /// [`ShardedStore`](crate::ShardedStore): shards commit apart, so it
    /// is refused, and nothing of it was written. Keep the streams of one
    /// atomic append in one shard (see [`shard`](crate::shard)), or append
    /// to each stream alone and tie the appends together with a process
    /// manager or compensating events.
    #[error(
        "one atomic append names streams of several shards ({}); nothing was written: keep the streams of one atomic append in one shard, or append to each alone and tie them together with a process manager or compensating events",
        stream_shards(.streams, .shards)
    )]
    CrossShard {
        /// The streams of the append, in the order given.
        streams: Vec<StreamId>,
        /// The shard of each: `shards[i]` holds `streams[i]`.
        shards: Vec<usize>,
    },
    /// A [`ShardedStore`](crate::ShardedStore) was given no shards, or
    /// more than [`u32::MAX`].
    #[error("a sharded store needs 1 to 4294967295 shards, not {shards}")]
    ShardCount {
        /// The number of shards given.
        shards: usize,
    },
    /// Checkpoints of a sharded store's merged feed
    /// ([`ShardCheckpoints`](crate::shard::ShardCheckpoints)) are for
    /// another number of shards than the store has: a position of one
    /// layout means nothing in another (as after a reshard). Rebuild the
    /// projection from the beginning.
    #[error(
        "the checkpoints{} are for {found} shards, and the store has {shards}: rebuild the projection from the beginning",
        checkpoint_name(.name.as_deref())
    )]
    ShardCheckpoints {
        /// The projection's checkpoint name, when loaded by name.
        name: Option<String>,
        /// The number of shards the checkpoints are for.
        found: u64,
        /// The number of shards of the store.
        shards: usize,
    },
    /// Personal data or its keys: a sealed value that fails authentication,
    /// a key store that fails or was given the wrong key.
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// Any other failure of the backend.
    #[error("the store backend failed")]
    Backend(#[source] BoxError),
}

impl Error {
    /// Whether this is a [`Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Wraps any backend error.
    pub fn backend(e: impl Into<BoxError>) -> Self {
        Error::Backend(e.into())
    }
}

/// A command for a message: "command `open`", or "a command without a name".
fn command_name(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("command `{name}`"),
        None => "a command without a name".to_owned(),
    }
}

/// Streams and their shards for a message: "`a` in shard 0, `b` in shard 1".
fn stream_shards(streams: &[StreamId], shards: &[usize]) -> String {
    let each: Vec<String> = streams
        .iter()
        .zip(shards)
        .map(|(s, i)| format!("`{s}` in shard {i}"))
        .collect();
    each.join(", ")
}

/// A checkpoint name for a message: " of `name`", or nothing.
fn checkpoint_name(name: Option<&str>) -> String {
    name.map(|n| format!(" of `{n}`")).unwrap_or_default()
}

/// Streams for a message: "`a`, `b`", or "no stream".
pub(crate) fn stream_list(streams: &[StreamId]) -> String {
    if streams.is_empty() {
        return "no stream".to_owned();
    }
    let quoted: Vec<String> = streams.iter().map(|s| format!("`{s}`")).collect();
    quoted.join(", ")
}

/// A stream was not at the version the writer expected (optimistic
/// concurrency). Read the events from `expected + 1` to `actual` to see
/// exactly what was appended meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream `{stream}` was expected at {expected} but is at version {actual}")]
pub struct Conflict {
    /// The stream.
    pub stream: StreamId,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's actual version (0: it does not exist).
    pub actual: u64,
}

/// An input over one of a store's [`Limits`](crate::Limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {size}, over the limit of {limit}")]
pub struct LimitError {
    /// What was measured (`"payload bytes"`, `"events in one append"`, ...).
    pub what: &'static str,
    /// The measured size.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}
