//! RELIABILITY T15: append futures dropped at random points (never polled,
//! polled once, cut by a 0-5 ms timeout, or their task aborted), one to
//! three at once so group commit mixes them with each other. After each
//! drop every append is either absent or complete (all of its ids at
//! contiguous versions, or none of them); sending it again with the same
//! event ids and expected version succeeds, as a repeat or as a fresh
//! write; and the writer is left with no transaction open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Rng;
use es_core::store::next;
use es_core::{
    AppendResult, Error, EventStore, ExpectedVersion, NewEvent, ReadRange, StreamId, Uuid,
};
use es_sqlite::SqliteStore;
use futures::FutureExt;

const STREAMS: u64 = 6;

struct Pending {
    stream: StreamId,
    /// The stream's version before the append.
    before: u64,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
}

impl Pending {
    fn ids(&self) -> Vec<Uuid> {
        self.events.iter().map(|e| e.event_id).collect()
    }
}

/// The ids of `stream` from version `from` on, in version order, with
/// their versions.
async fn ids_from(store: &SqliteStore, stream: &StreamId, from: u64) -> Vec<(u64, Uuid)> {
    let mut events = store.read_stream(stream, ReadRange::starting_at(from));
    let mut out = Vec::new();
    while let Some(e) = next(&mut events).await {
        let e = e.unwrap();
        out.push((e.version, e.event_id));
    }
    out
}

/// Whether the append is complete (`true`) or absent (`false`); panics on
/// anything in between.
async fn absent_or_complete(store: &SqliteStore, p: &Pending) -> bool {
    let stored = ids_from(store, &p.stream, p.before + 1).await;
    let ids = p.ids();
    if stored.is_empty() {
        return false;
    }
    let expected: Vec<(u64, Uuid)> = (p.before + 1..).zip(ids.iter().copied()).collect();
    assert_eq!(
        stored, expected,
        "stream {}: the dropped append is partly stored, or something else is",
        p.stream
    );
    true
}

/// Sends the append again and checks its outcome against the stream.
async fn resend(store: &SqliteStore, p: &Pending, was_complete: bool) -> AppendResult {
    let n = p.events.len() as u64;
    let result = store
        .append(&p.stream, p.expected, p.events.clone())
        .await
        .unwrap_or_else(|e| panic!("stream {}: the re-sent append failed: {e:?}", p.stream));
    assert_eq!(result.version, p.before + n);
    if was_complete {
        assert!(result.repeated, "a stored append re-sent is a repeat");
    }
    let first = result.first_position.unwrap();
    assert_eq!(result.last_position, Some(first + n - 1));
    let stored = ids_from(store, &p.stream, p.before + 1).await;
    let expected: Vec<(u64, Uuid)> = (p.before + 1..).zip(p.ids()).collect();
    assert_eq!(stored, expected, "the append is stored exactly once");
    result
}

/// The appends of one round: a batch of one to five new events for each
/// chosen stream, with a random expected version that holds.
fn plan(
    rng: &mut Rng,
    round: u64,
    chosen: &[usize],
    streams: &[StreamId],
    versions: &[u64],
    all_ids: &mut HashSet<Uuid>,
) -> Vec<Pending> {
    chosen
        .iter()
        .map(|&s| {
            let n = 1 + rng.below(5);
            let events: Vec<NewEvent> = (0..n)
                .map(|j| {
                    let id = Uuid::from_u64_pair(round, rng.next() ^ j);
                    assert!(all_ids.insert(id));
                    NewEvent::new("c", "happened", 1, format!(r#"{{"round":{round}}}"#)).with_id(id)
                })
                .collect();
            let expected = match rng.below(3) {
                0 => ExpectedVersion::Any,
                1 => ExpectedVersion::Exact(versions[s]),
                _ if versions[s] == 0 => ExpectedVersion::NoStream,
                _ => ExpectedVersion::StreamExists,
            };
            Pending {
                stream: streams[s].clone(),
                before: versions[s],
                expected,
                events,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_dropped_appends_are_absent_or_complete_and_retry_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::options().readers(2).open(&db).unwrap();
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|i| StreamId::new(format!("c-{i}")).unwrap())
        .collect();
    let mut versions = vec![0u64; streams.len()];
    let mut rng = Rng::new(15);
    let (mut complete, mut absent, mut repeats) = (0usize, 0usize, 0usize);
    let mut all_ids = HashSet::new();

    for round in 0..300u64 {
        // One to three appends, to distinct streams.
        let k = 1 + rng.below(3);
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < usize::try_from(k).unwrap() {
            let s = usize::try_from(rng.below(STREAMS)).unwrap();
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        let pending = plan(&mut rng, round, &chosen, &streams, &versions, &mut all_ids);
        let appends = futures::future::join_all(pending.iter().map(|p| {
            let (store, stream) = (store.clone(), p.stream.clone());
            let (expected, events) = (p.expected, p.events.clone());
            async move { store.append(&stream, expected, events).await }
        }));

        // Drop the appends somewhere.
        match round % 4 {
            0 => drop(appends),
            // Polled once: each request is queued, then its future dropped
            // (unless the writer already answered).
            1 => {
                if let Some(results) = appends.now_or_never() {
                    for r in results {
                        r.unwrap();
                    }
                }
            }
            2 => {
                let limit = Duration::from_micros(rng.below(5_000));
                if let Ok(results) = tokio::time::timeout(limit, appends).await {
                    for r in results {
                        r.unwrap();
                    }
                }
            }
            _ => {
                let task = tokio::spawn(appends);
                for _ in 0..rng.below(4) {
                    tokio::task::yield_now().await;
                }
                task.abort();
                // The task is gone (dropped or finished) once joined.
                if let Ok(results) = task.await {
                    for r in results {
                        r.unwrap();
                    }
                }
            }
        }

        for (p, &s) in pending.iter().zip(&chosen) {
            let was_complete = absent_or_complete(&store, p).await;
            if was_complete {
                complete += 1;
            } else {
                absent += 1;
            }
            let result = resend(&store, p, was_complete).await;
            repeats += usize::from(result.repeated);
            versions[s] = result.version;
        }
    }
    eprintln!(
        "T15: at the check after the drop, {complete} appends were complete and {absent} absent; \
         {repeats} re-sends were repeats"
    );
    // Never-polled appends are always absent; appends polled once reached
    // the writer's queue before their re-send, so those re-sends repeat.
    assert!(absent > 0 && repeats > 0, "both outcomes were exercised");

    // The writer has no transaction left open: another connection takes the
    // write lock at once, and a normal append goes through.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").unwrap();
    drop(conn);
    let s = &streams[0];
    let r = store
        .append(
            s,
            ExpectedVersion::Exact(versions[0]),
            vec![NewEvent::new("c", "after", 1, "{}")],
        )
        .await
        .unwrap();
    assert_eq!(r.version, versions[0] + 1);
    assert!(!r.repeated);

    // Nothing was stored twice or lost: every id once, in $all order.
    let mut all = store.read_all(0);
    let mut seen = HashSet::new();
    let mut last = 0;
    while let Some(e) = next(&mut all).await {
        let e = e.unwrap();
        assert!(e.position > last);
        last = e.position;
        assert!(seen.insert(e.event_id), "event {} stored twice", e.event_id);
    }
    assert_eq!(seen.len(), all_ids.len() + 1);
    assert!(all_ids.iter().all(|id| seen.contains(id)));
}

#[tokio::test]
async fn t15_dropped_read_streams_leave_the_readers_working() {
    // A stream whose next page is requested and then dropped (its reply
    // nobody waits for) must not stall the reader threads.
    let store = SqliteStore::options().readers(1).open_temporary().unwrap();
    let s = StreamId::new("r").unwrap();
    for _ in 0..3 {
        let events = (0..400).map(|_| NewEvent::new("c", "e", 1, "{}")).collect();
        store
            .append(&s, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    for take in [0usize, 1, 511, 512, 513, 1000] {
        let mut events = store.read_all(0);
        for _ in 0..take {
            next(&mut events).await.unwrap().unwrap();
        }
        drop(events);
        assert_eq!(store.last_position().await.unwrap(), 1200);
    }
    let mut count = 0;
    let mut events = store.read_stream(&s, ReadRange::all());
    while let Some(e) = next(&mut events).await {
        e.unwrap();
        count += 1;
    }
    assert_eq!(count, 1200);
    assert!(matches!(
        store.append(&s, ExpectedVersion::Exact(5), vec![]).await,
        Err(Error::Conflict(_))
    ));
}
