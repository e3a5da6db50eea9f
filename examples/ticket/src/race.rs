//! Two commands on one ticket at the same moment, as two servers would run
//! them: what `ticket race` shows and the tests prove.
//!
//! Each command runs on a thread of its own through a repository of its
//! own, with `ConflictPolicy::CheckConflicts`. Both decisions wait for each
//! other before returning, so both run on the same version and neither
//! appends before both have decided: exactly one append wins, and the other
//! meets a conflict, every time, without relying on timing. What happens
//! then is the domain's call ([`Ticket::conflicts_with`]): two messages do
//! not conflict, so the loser's message is appended after the winner's
//! without deciding again; a close racing an escalation does, so the loser
//! decides again on the fresh state.

use std::cell::Cell;
use std::sync::Barrier;

use es_core::blocking::Repository;
use es_core::prelude::*;
use es_core::{Executed, IntoEvents};

use crate::{Ticket, TicketError};

/// What one side of a race did.
#[derive(Debug)]
pub struct Side {
    /// The command's outcome.
    pub outcome: Result<Executed<Ticket>, ExecuteError<TicketError>>,
    /// How many times its decision ran (1: never again after a conflict).
    pub decisions: u32,
}

impl Side {
    /// Whether this side met the conflict: its first append lost, or its
    /// decision ran again.
    pub fn lost(&self) -> bool {
        match &self.outcome {
            Ok(done) => done.attempts > 1,
            Err(_) => self.decisions > 1,
        }
    }
}

/// Runs `first` and `second` on ticket `id` at the same moment, through
/// repositories `a` and `b` over one store (see the [module](self)).
///
/// # Panics
///
/// When a thread of the race panics (a decision that panics).
pub fn race<S, F1, F2, D1, D2>(
    a: &Repository<Ticket, S>,
    b: &Repository<Ticket, S>,
    id: &str,
    first: F1,
    second: F2,
) -> (Side, Side)
where
    S: EventStore + SnapshotStore,
    F1: FnMut(&Ticket) -> D1 + Send,
    F2: FnMut(&Ticket) -> D2 + Send,
    D1: IntoEvents<Ticket, Error = TicketError>,
    D2: IntoEvents<Ticket, Error = TicketError>,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let one = scope.spawn(|| side(a, id, &barrier, first));
        let two = scope.spawn(|| side(b, id, &barrier, second));
        let (one, two) = (one.join(), two.join());
        match (one, two) {
            (Ok(one), Ok(two)) => (one, two),
            (Err(panic), _) | (_, Err(panic)) => std::panic::resume_unwind(panic),
        }
    })
}

/// One side: the first decision waits at `barrier` for the other's.
fn side<S, F, D>(
    tickets: &Repository<Ticket, S>,
    id: &str,
    barrier: &Barrier,
    mut decide: F,
) -> Side
where
    S: EventStore + SnapshotStore,
    F: FnMut(&Ticket) -> D,
    D: IntoEvents<Ticket, Error = TicketError>,
{
    let decisions = Cell::new(0);
    let outcome = tickets.execute(id, |t| {
        let decided = decide(t);
        decisions.set(decisions.get() + 1);
        if decisions.get() == 1 {
            barrier.wait();
        }
        decided
    });
    if decisions.get() == 0 {
        // Failed before deciding: let the other side go on.
        barrier.wait();
    }
    Side {
        outcome,
        decisions: decisions.get(),
    }
}
