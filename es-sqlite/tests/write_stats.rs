//! `SqliteStore::write_stats`: what the writer committed, counted once per
//! commit, append and event; a refused append is not counted.

// Test bodies unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::prelude::*;
use es_core::{NewEvent, Payload};
use es_sqlite::SqliteStore;

fn noted() -> NewEvent {
    NewEvent::new("note", "noted", 1, Payload::new("{}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_counted_once_each_and_share_commits() {
    let store = SqliteStore::open_temporary().unwrap();
    let mut tasks = Vec::new();
    for n in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("note-{n}")).unwrap();
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    vec![noted(), noted(), noted()],
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = store.write_stats();
    assert_eq!((stats.appends, stats.events), (32, 96));
    assert!((1..=32).contains(&stats.commits), "{stats:?}");

    // A refused append changes nothing.
    let taken = StreamId::new("note-0").unwrap();
    let refused = store
        .append(&taken, ExpectedVersion::NoStream, vec![noted()])
        .await;
    assert!(refused.is_err());
    assert_eq!(store.write_stats(), stats);

    // The next append is one more commit.
    store
        .append(&taken, ExpectedVersion::Exact(3), vec![noted()])
        .await
        .unwrap();
    let after = store.write_stats();
    assert_eq!(
        (after.commits, after.appends, after.events),
        (stats.commits + 1, 33, 97)
    );
}
