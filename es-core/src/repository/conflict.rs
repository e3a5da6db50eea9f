//! [`CommandConflict`]: a command that ran out of retries, with what it
//! raced against.

use crate::aggregate::Aggregate;
use crate::envelope::{Envelope, RecordedEvent};
use crate::error::{Conflict, Result};

/// A command ran out of retries on conflicts: the store's last report, and
/// the events other writers appended that its last decision did not see.
/// In [`ExecuteError::Conflict`](crate::ExecuteError::Conflict).
///
/// The events are those after the version the last decision ran on, up to
/// the version the store reported, so for a command on one aggregate
/// `concurrent.len()` is `conflict.actual` minus that version, exactly
/// (under [`ConflictPolicy::CheckConflicts`](crate::ConflictPolicy) the
/// last decision may be older than the last attempt: its events were kept
/// through conflicts the aggregate judged harmless, and every event since
/// it is listed). For a command over several aggregates
/// ([`Repository::execute_many`](crate::Repository::execute_many),
/// [`execute_pair`](crate::Repository::execute_pair)), they are each
/// stream's events after the version its decision saw, stream by stream in
/// the order the command names them; `conflict` names the stream the store
/// refused.
///
/// They are kept as stored, with their envelopes (who appended them, when,
/// why); [`events`](CommandConflict::events) decodes those of one
/// aggregate type.
///
/// ```
/// # use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Deposited { pub amount: u64 }
/// # #[derive(Aggregate, Default, Debug)]
/// # #[aggregate(name = "account", events(Deposited))]
/// # pub struct Account { balance: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
/// # pollster::block_on(async {
/// let store = InMemoryStore::new();
/// let accounts = Repository::<Account, _>::new(store.clone()).with_retries(0);
/// let other = Repository::<Account, _>::new(store);
/// accounts.execute("a-1", |_| Deposited { amount: 5 }).await?;
///
/// // Another writer deposits while our decision runs: with no retries,
/// // the command fails, naming what it raced against.
/// let refused = accounts
///     .execute("a-1", |_| {
///         pollster::block_on(other.execute("a-1", |_| Deposited { amount: 7 })).unwrap();
///         Deposited { amount: 1 }
///     })
///     .await;
/// let conflict = refused.unwrap_err();
/// let conflict = conflict.as_command_conflict().expect("out of retries");
/// assert_eq!((conflict.conflict.actual, conflict.attempts), (2, 1));
/// let theirs = conflict.events::<Account>()?;
/// assert_eq!(theirs[0].event, Deposited { amount: 7 }.into());
/// assert_eq!(theirs[0].version, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{conflict}, after {attempts} attempts ({} events appended meanwhile)", concurrent.len())]
pub struct CommandConflict {
    /// What the store reported on the last attempt: the stream, the version
    /// the command expected, the version it found.
    pub conflict: Conflict,
    /// How many appends were attempted.
    pub attempts: u32,
    /// How many times the decision ran again on fresh state.
    pub reruns: u32,
    /// The events appended that the last decision did not see, as stored,
    /// in version order (see above for several aggregates).
    pub concurrent: Vec<RecordedEvent>,
}

impl CommandConflict {
    /// The concurrent events of aggregate type `A` (all of them, for a
    /// command on one aggregate), decoded through the upcasters, each with
    /// its envelope.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) for an event this program
    /// cannot decode (written by a newer one).
    pub fn events<A: Aggregate>(&self) -> Result<Vec<Envelope<A::Event>>> {
        let mut decoded = Vec::new();
        for event in self
            .concurrent
            .iter()
            .filter(|e| &*e.aggregate_type == A::NAME)
        {
            decoded.extend(event.clone().into_envelopes::<A::Event>()?);
        }
        Ok(decoded)
    }
}
