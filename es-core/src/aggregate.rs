//! Aggregates: state rebuilt from events, and the [`Apply`] step that folds
//! one event into it.

use crate::event::{DecodeError, EncodeError, EventSet};

/// How one event changes a state: one impl per event an aggregate lists (and
/// per event a projection handles).
///
/// `apply` cannot fail: an event is a fact that already happened. Validation
/// belongs in the command that decided to emit it.
///
/// ```
/// use es_core::Apply;
/// # struct Opened;
/// #[derive(Default)]
/// struct Ticket { open: bool }
///
/// impl Apply<Opened> for Ticket {
///     fn apply(&mut self, _: &Opened) { self.open = true }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` lists event `{E}` but does not say how it changes the state",
    label = "missing `impl Apply<{E}> for {Self}`",
    note = "add `impl es_core::Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ .. }} }}`"
)]
pub trait Apply<E> {
    /// Folds `event` into `self`.
    fn apply(&mut self, event: &E);
}

/// When to snapshot an aggregate, and the schema version of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take a snapshot every this many versions (1 or more).
    pub every: u64,
    /// The schema version of the serialized state. Raise it when the state's
    /// shape or the meaning of its fields changes: snapshots of other versions
    /// are then ignored and rebuilt from events.
    pub version: u32,
}

/// A consistency boundary whose state is the fold of its events.
///
/// Derive it with `#[derive(Aggregate)]` and
/// `#[aggregate(name = "...", events(A, B, ...), snapshot(every = N))]`; the
/// derive generates the event enum (`<Type>Event`), the dispatch of
/// `Apply<<Type>Event>` to each `Apply<E>`, and the snapshot codec. The state
/// starts as `Default::default()`; the framework counts versions, so the state
/// holds only what decisions need.
///
/// ```
/// use es_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// pub struct Deposited { pub amount: u64 }
///
/// #[derive(Aggregate, Default, Debug)]
/// #[aggregate(name = "account", events(Deposited))]
/// pub struct Account { balance: u64 }
///
/// impl Apply<Deposited> for Account {
///     fn apply(&mut self, e: &Deposited) { self.balance += e.amount }
/// }
///
/// let mut account = Account::default();
/// account.apply(&AccountEvent::from(Deposited { amount: 5 }));
/// assert_eq!(account.balance, 5);
/// assert_eq!(Account::NAME, "account");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "add `#[derive(Aggregate)]` and `#[aggregate(name = \"...\", events(...))]` to `{Self}`, or name an aggregate type instead"
)]
pub trait Aggregate: Default + Apply<<Self as Aggregate>::Event> + Send + Sync + 'static {
    /// The aggregate's events.
    type Event: EventSet;

    /// The stable name of the aggregate type; its streams are `"{NAME}-{id}"`.
    const NAME: &'static str;

    /// Whether and how often to snapshot (`None`: never).
    const SNAPSHOT: Option<SnapshotPolicy> = None;

    /// Whether our new events really conflict with `theirs`, the events other
    /// writers appended after the state our decision ran on (every one of
    /// them, in version order, decoded). Used by
    /// [`ConflictPolicy::CheckConflicts`](crate::ConflictPolicy): when this
    /// returns `false`, our events are appended after theirs without re-running
    /// the decision; when `true`, the decision runs again on the state with
    /// theirs folded in. The default is `true` (always re-decide), which is
    /// always correct.
    ///
    /// Answer `false` only when the decision, run on the state with `theirs`
    /// folded in, would have returned the same events: two agents adding
    /// messages to one ticket do not conflict, while closing a ticket that
    /// was escalated meanwhile does. The derive implements it with
    /// `#[aggregate(conflicts = path::to_fn)]`, a
    /// `fn(&[Event], &[Event]) -> bool` (see
    /// [`ConflictPolicy::CheckConflicts`](crate::ConflictPolicy::CheckConflicts)).
    fn conflicts(ours: &[Self::Event], theirs: &[Self::Event]) -> bool {
        let _ = (ours, theirs);
        true
    }

    /// Serializes the state for a snapshot; `None` when the aggregate takes no
    /// snapshots. The derive implements it when `snapshot(...)` is declared.
    fn encode_snapshot(&self) -> Option<Result<Vec<u8>, EncodeError>> {
        None
    }

    /// Reads a state serialized by [`encode_snapshot`](Aggregate::encode_snapshot).
    fn decode_snapshot(bytes: &[u8]) -> Option<Result<Self, DecodeError>> {
        let _ = bytes;
        None
    }
}
