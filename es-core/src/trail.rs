//! [`Trail`]: a stream's history with its compensating events matched to
//! the events they correct, to show it raw or effective.

use std::collections::HashMap;
use std::ops::Deref;

use uuid::Uuid;

use crate::envelope::Envelope;

/// A stream's history in version order, with every compensating event (one
/// whose [`Metadata::compensates`](crate::Metadata::compensates) names an
/// earlier event of the stream) matched to the event it corrects. Made by
/// [`Repository::trail`](crate::Repository::trail), or from any history
/// with [`Trail::new`].
///
/// Old events are never changed: a wrong event stays in the stream, and a
/// compensating event after it undoes its effect (its `Apply` does; the
/// state is the fold of every event, with no special fold logic). The trail
/// shows the two readings of such a stream:
///
/// - [`raw`](Trail::raw): every entry, in order. Each knows the entries that
///   correct it ([`corrected_by`](TrailEntry::corrected_by)) and the one it
///   corrects ([`compensated_version`](TrailEntry::compensated_version)).
/// - [`effective`](Trail::effective): the entries that still stand (see
///   [`TrailEntry::stands`]): the history as it would read had the wrong
///   events never been recorded.
///
/// # What stands
///
/// A compensation is *in force* unless it is corrected itself. An entry is
/// *corrected* ([`TrailEntry::is_corrected`]) when at least one compensation
/// in force names it. So correcting a correction undoes it: the entry it
/// had corrected stands again, and neither correction is in the effective
/// view. An entry *stands* when it is not a compensation and is not
/// corrected. Compensations never stand: they are corrections of the
/// record, not facts of their own (record the right fact, if there is one,
/// by an ordinary command after the correction).
///
/// Only an earlier entry of the same trail can be corrected. A compensation
/// whose target is not an earlier entry (an event of another stream, or
/// one left out of a partial history; the repository refuses both, a store
/// written to directly does not) corrects nothing here, and still does not
/// stand.
///
/// When each compensation's `Apply` exactly undoes the event it corrects,
/// and no event is compensated twice, folding the effective entries gives
/// the state that folding every entry gives. An event may be compensated
/// more than once (a partial correction, then another); it then counts as
/// corrected while any of its corrections is in force, and the state is
/// whatever the `Apply`s of all of them make it.
///
/// ```
/// # use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Deposited { pub amount: u64 }
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct DepositReversed { pub amount: u64 }
/// # #[derive(Aggregate, Default, Debug)]
/// # #[aggregate(name = "account", events(Deposited, DepositReversed))]
/// # pub struct Account { balance: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
/// # impl Apply<DepositReversed> for Account { fn apply(&mut self, e: &DepositReversed) { self.balance -= e.amount } }
/// # pollster::block_on(async {
/// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
/// accounts.execute("a-1", |_| Deposited { amount: 5 }).await?;       // v1
/// accounts.execute("a-1", |_| Deposited { amount: 500 }).await?;     // v2, a typo
/// let wrong = accounts.history("a-1").await?[1].event_id;
/// accounts
///     .execute_compensating("a-1", wrong, |_| DepositReversed { amount: 500 })   // v3
///     .await?;
/// accounts.execute("a-1", |_| Deposited { amount: 50 }).await?;      // v4, the right one
///
/// let trail = accounts.trail("a-1").await?;
/// let raw: Vec<_> = trail.raw().iter().map(|e| (e.version, e.corrected_by().to_vec())).collect();
/// assert_eq!(raw, [(1, vec![]), (2, vec![3]), (3, vec![]), (4, vec![])]);
/// assert_eq!(trail.raw()[2].compensated_version(), Some(2));
/// let effective: Vec<u64> = trail.effective().map(|e| e.version).collect();
/// assert_eq!(effective, [1, 4]);
/// assert_eq!(accounts.load("a-1").await?.balance, 55);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Trail<T> {
    entries: Vec<TrailEntry<T>>,
}

/// One entry of a [`Trail`]: the stored event with its envelope
/// (dereferences to it), and how it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TrailEntry<T> {
    envelope: Envelope<T>,
    compensated_version: Option<u64>,
    corrected_by: Vec<u64>,
    corrected: bool,
}

impl<T> Trail<T> {
    /// The trail of `history`: the events of one stream in version order,
    /// as [`Repository::history`](crate::Repository::history) returns them
    /// (or as a store reads them: `T` is whatever the envelopes hold).
    pub fn new(history: Vec<Envelope<T>>) -> Self {
        let index: HashMap<Uuid, usize> = history
            .iter()
            .enumerate()
            .map(|(i, e)| (e.event_id, i))
            .collect();
        // Only an earlier entry can be corrected: so the corrections of an
        // entry all come after it, and there is no cycle to follow.
        let targets: Vec<Option<usize>> = history
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let target = e.metadata.compensates?;
                index.get(&target).copied().filter(|&t| t < i)
            })
            .collect();
        let mut corrected_by: Vec<Vec<usize>> = vec![Vec::new(); history.len()];
        for (i, target) in targets.iter().enumerate() {
            if let Some(t) = *target {
                corrected_by[t].push(i);
            }
        }
        // An entry is corrected when a compensation in force (one not
        // corrected itself) names it. Its corrections come after it, so
        // from the last entry back each one's answer is known when needed.
        let mut corrected = vec![false; history.len()];
        for i in (0..history.len()).rev() {
            corrected[i] = corrected_by[i].iter().any(|&c| !corrected[c]);
        }
        let versions: Vec<u64> = history.iter().map(|e| e.version).collect();
        let entries = history
            .into_iter()
            .zip(targets)
            .zip(corrected_by)
            .zip(corrected)
            .map(|(((envelope, target), by), corrected)| TrailEntry {
                envelope,
                compensated_version: target.map(|t| versions[t]),
                corrected_by: by.into_iter().map(|c| versions[c]).collect(),
                corrected,
            })
            .collect();
        Trail { entries }
    }

    /// Every entry, in version order: the wrong events and their
    /// corrections included, each marked.
    pub fn raw(&self) -> &[TrailEntry<T>] {
        &self.entries
    }

    /// Every entry, in version order (as [`raw`](Trail::raw)).
    pub fn iter(&self) -> std::slice::Iter<'_, TrailEntry<T>> {
        self.entries.iter()
    }

    /// The entries that still stand, in version order: neither
    /// compensations nor corrected by one in force (see
    /// [`TrailEntry::stands`]).
    pub fn effective(&self) -> impl Iterator<Item = &TrailEntry<T>> {
        self.entries.iter().filter(|e| e.stands())
    }

    /// The entry at stream version `version`.
    pub fn entry(&self, version: u64) -> Option<&TrailEntry<T>> {
        let i = self
            .entries
            .binary_search_by_key(&version, |e| e.envelope.version)
            .ok()?;
        self.entries.get(i)
    }

    /// The compensations that name `entry`, in version order, in force or
    /// not (see [`TrailEntry::corrected_by`]).
    pub fn corrections_of<'t>(
        &'t self,
        entry: &'t TrailEntry<T>,
    ) -> impl Iterator<Item = &'t TrailEntry<T>> {
        entry
            .corrected_by
            .iter()
            .filter_map(move |&version| self.entry(version))
    }

    /// How many entries the trail has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the stream has no event.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in version order.
    pub fn into_entries(self) -> Vec<TrailEntry<T>> {
        self.entries
    }
}

impl<T> From<Vec<Envelope<T>>> for Trail<T> {
    fn from(history: Vec<Envelope<T>>) -> Self {
        Trail::new(history)
    }
}

impl<'t, T> IntoIterator for &'t Trail<T> {
    type Item = &'t TrailEntry<T>;
    type IntoIter = std::slice::Iter<'t, TrailEntry<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<T> TrailEntry<T> {
    /// The stored event and its envelope.
    pub fn envelope(&self) -> &Envelope<T> {
        &self.envelope
    }

    /// The stored event and its envelope.
    pub fn into_envelope(self) -> Envelope<T> {
        self.envelope
    }

    /// Whether this is a compensating event: its metadata names an event it
    /// corrects.
    pub fn is_compensation(&self) -> bool {
        self.envelope.metadata.compensates.is_some()
    }

    /// The version of the entry this compensation corrects; `None` for an
    /// entry that is not a compensation, or whose target is not an earlier
    /// entry of the trail.
    pub fn compensated_version(&self) -> Option<u64> {
        self.compensated_version
    }

    /// The versions of the compensations that name this entry, in order,
    /// whether or not they are in force (a compensation that was itself
    /// corrected is still listed).
    pub fn corrected_by(&self) -> &[u64] {
        &self.corrected_by
    }

    /// Whether a compensation in force corrects this entry: its effect is
    /// undone. For a compensation: whether it was corrected itself, and so
    /// is no longer in force.
    pub fn is_corrected(&self) -> bool {
        self.corrected
    }

    /// Whether the entry is part of the effective history: it is not a
    /// compensation, and no compensation in force corrects it.
    pub fn stands(&self) -> bool {
        !self.is_compensation() && !self.corrected
    }
}

impl<T> Deref for TrailEntry<T> {
    type Target = Envelope<T>;

    fn deref(&self) -> &Envelope<T> {
        &self.envelope
    }
}
