//! `Command::expect_version`: the decision runs on the caller's version or
//! not at all (what `If-Match` means over HTTP), never retried, never
//! decided again; with a command id, a repeat still gets its first outcome.

// Test bodies unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use es_core::prelude::*;
use es_core::{ExpectedVersion, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "noted")]
struct Noted {
    text: String,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "note", events(Noted), snapshot(every = 2))]
struct Note {
    texts: Vec<String>,
}

impl Apply<Noted> for Note {
    fn apply(&mut self, e: &Noted) {
        self.texts.push(e.text.clone());
    }
}

fn noted(text: &str) -> impl Fn(&Note) -> Noted + '_ {
    move |_| Noted { text: text.into() }
}

#[tokio::test]
async fn the_current_version_is_decided_on_and_appended() {
    let notes = Repository::<Note, _>::new(InMemoryStore::new());
    let first = notes
        .command("n")
        .expect_version(0)
        .execute(noted("a"))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = notes
        .command("n")
        .expect_version(1)
        .execute(noted("b"))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.state.texts, ["a", "b"]);
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_with_what_was_missed_and_decides_nothing() {
    let notes = Repository::<Note, _>::new(InMemoryStore::new())
        .with_conflict_policy(ConflictPolicy::CheckConflicts);
    for text in ["a", "b", "c"] {
        notes.execute("n", noted(text)).await.unwrap();
    }
    let decided = AtomicU32::new(0);
    let stale = notes
        .command("n")
        .expect_version(1)
        .execute(|_: &Note| {
            decided.fetch_add(1, Ordering::SeqCst);
            Noted {
                text: "late".into(),
            }
        })
        .await;
    let conflict = stale.unwrap_err().as_command_conflict().cloned().unwrap();
    assert_eq!(
        decided.load(Ordering::SeqCst),
        0,
        "no decision on a stale state"
    );
    assert_eq!(conflict.conflict.expected, ExpectedVersion::Exact(1));
    assert_eq!(conflict.conflict.actual, 3);
    let missed: Vec<_> = conflict.concurrent.iter().map(|e| e.version).collect();
    assert_eq!(missed, [2, 3]);
    assert_eq!(
        notes.load("n").await.unwrap().version,
        3,
        "nothing appended"
    );

    // A version past the end is a conflict too, with nothing missed.
    let ahead = notes
        .command("n")
        .expect_version(9)
        .execute(noted("x"))
        .await;
    let conflict = ahead.unwrap_err().as_command_conflict().cloned().unwrap();
    assert_eq!(
        (conflict.conflict.actual, conflict.concurrent.len()),
        (3, 0)
    );
}

#[tokio::test]
async fn of_concurrent_writers_expecting_one_version_exactly_one_wins() {
    let store = InMemoryStore::new();
    let notes = Arc::new(Repository::<Note, _>::new(store).with_retries(10));
    notes.execute("n", noted("start")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let notes = notes.clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("writer {i}");
            notes
                .command("n")
                .expect_version(1)
                .execute(|_: &Note| Noted { text: text.clone() })
                .await
        }));
    }
    let mut won = 0;
    let mut lost = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => {
                assert_eq!(done.version, 2);
                won += 1;
            }
            Err(e) => {
                let conflict = e.as_command_conflict().expect("a conflict, nothing else");
                assert_eq!(conflict.conflict.actual, 2);
                lost += 1;
            }
        }
    }
    assert_eq!((won, lost), (1, 15));
    assert_eq!(notes.load("n").await.unwrap().version, 2);
}

#[tokio::test]
async fn a_repeat_of_a_command_that_went_through_gets_its_first_outcome() {
    let notes = Repository::<Note, _>::new(InMemoryStore::new());
    notes.execute("n", noted("a")).await.unwrap();
    let id = Uuid::now_v7();
    let run = || {
        notes
            .command("n")
            .metadata(Metadata::new().command("note"))
            .command_id(id)
            .expect_version(1)
            .execute(noted("b"))
    };
    let first = run().await.unwrap();
    assert!(!first.repeated);
    notes.execute("n", noted("c")).await.unwrap();
    // The version has moved on twice, yet the repeat is recognised.
    let again = run().await.unwrap();
    assert!(again.repeated);
    assert_eq!(again.version, first.version);
    assert_eq!(notes.load("n").await.unwrap().version, 3);
}
