// `conflicts = path` makes `Aggregate::conflicts` call the user's function
// and return what it returns; without it, the default (always conflict).
use std::sync::atomic::{AtomicUsize, Ordering};

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TitleSet {
    pub title: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BodySet {
    pub body: String,
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Two writers conflict only when both set the title.
fn both_set_the_title(ours: &[DocEvent], theirs: &[DocEvent]) -> bool {
    CALLS.fetch_add(1, Ordering::SeqCst);
    let sets_title = |events: &[DocEvent]| events.iter().any(|e| matches!(e, DocEvent::TitleSet(_)));
    sets_title(ours) && sets_title(theirs)
}

#[derive(Aggregate, Default)]
#[aggregate(events(TitleSet, BodySet), conflicts = both_set_the_title)]
pub struct Doc;

impl Apply<TitleSet> for Doc {
    fn apply(&mut self, _: &TitleSet) {}
}

impl Apply<BodySet> for Doc {
    fn apply(&mut self, _: &BodySet) {}
}

// An associated function works too.
#[derive(Aggregate, Default)]
#[aggregate(events(BodySet), conflicts = Self::never_conflicts)]
pub struct Note;

impl Note {
    fn never_conflicts(_: &[NoteEvent], _: &[NoteEvent]) -> bool {
        false
    }
}

impl Apply<BodySet> for Note {
    fn apply(&mut self, _: &BodySet) {}
}

// No `conflicts`: the default.
#[derive(Aggregate, Default)]
#[aggregate(events(BodySet))]
pub struct Draft;

impl Apply<BodySet> for Draft {
    fn apply(&mut self, _: &BodySet) {}
}

fn main() {
    let title = DocEvent::from(TitleSet { title: "a".into() });
    let body = DocEvent::from(BodySet { body: "b".into() });
    assert!(<Doc as Aggregate>::conflicts(&[title.clone()], &[title.clone()]));
    assert!(!<Doc as Aggregate>::conflicts(&[title.clone()], &[body.clone()]));
    assert!(!<Doc as Aggregate>::conflicts(&[body], &[title]));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);

    let note = NoteEvent::from(BodySet { body: "n".into() });
    assert!(!<Note as Aggregate>::conflicts(&[note.clone()], &[note]));

    let draft = DraftEvent::from(BodySet { body: "d".into() });
    assert!(<Draft as Aggregate>::conflicts(&[draft.clone()], &[draft]));
}
