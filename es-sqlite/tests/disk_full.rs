//! RELIABILITY T6: a full disk, simulated with `max_page_count`. Appends
//! (several at once, so group commit shares transactions between them) fill
//! a small database at random batch and payload sizes until they fail; every
//! failure is `Error::StorageFull`, every acknowledged append is stored
//! exactly (ids, payload bytes, versions, positions), nothing of a failed
//! append is visible, `PRAGMA integrity_check` is ok, and after reopening
//! with room to spare the refused appends go through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::Rng;
use es_core::store::next;
use es_core::{AppendResult, Error, EventStore, ExpectedVersion, NewEvent, StreamId, Uuid};
use es_sqlite::{Durability, SqliteStore};

/// One append: a stream and its events.
#[derive(Clone)]
struct Batch {
    stream: StreamId,
    events: Vec<NewEvent>,
}

impl Batch {
    fn new(rng: &mut Rng, max_events: u64, streams: u64) -> Self {
        let stream = StreamId::new(format!("s-{}", rng.range(0, streams - 1))).unwrap();
        let n = rng.range(1, max_events);
        let events = (0..n)
            .map(|k| {
                let pad = "p".repeat(usize::try_from(rng.range(0, 600)).unwrap());
                let id = Uuid::from_u64_pair(rng.next(), rng.next());
                NewEvent::new("fill", "filled", 1, format!(r#"{{"k":{k},"pad":"{pad}"}}"#))
                    .with_id(id)
            })
            .collect();
        Batch { stream, events }
    }
}

/// Where an acknowledged event must be: stream, version, position, payload.
type Expected = HashMap<Uuid, (StreamId, u64, u64, es_core::Payload)>;

fn expect_acked(expected: &mut Expected, batch: &Batch, result: &AppendResult) {
    assert!(!result.repeated);
    let n = batch.events.len() as u64;
    let first_version = result.version + 1 - n;
    let first_position = result.first_position.unwrap();
    assert_eq!(result.last_position, Some(first_position + n - 1));
    for (k, event) in batch.events.iter().enumerate() {
        let k = k as u64;
        expected.insert(
            event.event_id,
            (
                batch.stream.clone(),
                first_version + k,
                first_position + k,
                event.payload.clone(),
            ),
        );
    }
}

/// Checks the store holds exactly `expected`: nothing missing, nothing
/// more, versions contiguous per stream.
async fn verify(store: &SqliteStore, expected: &Expected, refused: &[Batch]) {
    let mut all = store.read_all(0);
    let mut seen = 0;
    let mut last_position = 0;
    let mut versions: BTreeMap<StreamId, u64> = BTreeMap::new();
    while let Some(event) = next(&mut all).await {
        let event = event.unwrap();
        let (stream, version, position, payload) = expected
            .get(&event.event_id)
            .unwrap_or_else(|| panic!("event {} was never acknowledged", event.event_id));
        assert_eq!(&event.stream_id, stream);
        assert_eq!(event.version, *version);
        assert_eq!(event.position, *position);
        assert_eq!(event.payload(), payload);
        assert!(event.position > last_position, "positions increase");
        last_position = event.position;
        let v = versions.entry(event.stream_id.clone()).or_insert(0);
        assert_eq!(event.version, *v + 1, "versions are contiguous");
        *v = event.version;
        seen += 1;
    }
    assert_eq!(seen, expected.len(), "every acknowledged event is stored");
    for (stream, version) in &versions {
        assert_eq!(store.stream_version(stream).await.unwrap(), *version);
    }
    for batch in refused {
        assert_eq!(
            store.stream_version(&batch.stream).await.unwrap(),
            versions.get(&batch.stream).copied().unwrap_or(0),
            "a refused append leaves no trace in its stream's version"
        );
        for event in &batch.events {
            assert!(!expected.contains_key(&event.event_id));
        }
    }
    assert_eq!(store.last_position().await.unwrap(), last_position);
}

fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// One fill of a database capped at `pages` pages. Returns how many appends
/// were acknowledged and refused.
async fn fill(seed: u64) -> (usize, usize) {
    let mut rng = Rng::new(seed);
    let pages = rng.range(40, 160);
    let max_events = rng.range(1, 40);
    let streams = rng.range(1, 8);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    // Both durabilities: odd seeds flush at every commit.
    let durability = if seed % 2 == 1 {
        Durability::Full
    } else {
        Durability::Normal
    };
    let open = |pages: u64| {
        SqliteStore::options()
            .durability(durability)
            .readers(1)
            .max_page_count(pages)
            .open(&db)
            .unwrap()
    };
    let store = open(pages);

    let mut expected = Expected::new();
    let mut refused: Vec<Batch> = Vec::new();
    let mut acked = 0;
    let mut rounds_after_full = 0;
    for round in 0.. {
        assert!(round < 100_000, "seed {seed}: the database never filled up");
        // One to three appends at once: group commit puts them in one
        // transaction, each in its own savepoint.
        let batches: Vec<Batch> = (0..rng.range(1, 3))
            .map(|_| Batch::new(&mut rng, max_events, streams))
            .collect();
        let results = futures::future::join_all(
            batches
                .iter()
                .map(|b| store.append(&b.stream, ExpectedVersion::Any, b.events.clone())),
        )
        .await;
        for (batch, result) in batches.into_iter().zip(results) {
            match result {
                Ok(result) => {
                    acked += 1;
                    expect_acked(&mut expected, &batch, &result);
                }
                Err(Error::StorageFull) => refused.push(batch),
                Err(other) => panic!("seed {seed}: expected StorageFull, got {other:?}"),
            }
        }
        if !refused.is_empty() {
            rounds_after_full += 1;
            if rounds_after_full > 5 {
                break;
            }
        }
    }

    verify(&store, &expected, &refused).await;
    assert_eq!(integrity(&db), "ok", "seed {seed}");
    drop(store);

    // More room: what was refused now goes through, as a fresh write.
    let store = open(pages * 20);
    verify(&store, &expected, &refused).await;
    for batch in &refused {
        let result = store
            .append(&batch.stream, ExpectedVersion::Any, batch.events.clone())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the refused append on retry: {e:?}"));
        expect_acked(&mut expected, batch, &result);
    }
    verify(&store, &expected, &[]).await;
    assert_eq!(integrity(&db), "ok", "seed {seed}");
    (acked, refused.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t6_storage_full_is_typed_atomic_and_recoverable() {
    let (mut acked, mut refused) = (0, 0);
    for seed in 1..=20 {
        let (a, r) = fill(seed).await;
        acked += a;
        refused += r;
    }
    eprintln!("T6: {acked} appends acknowledged, {refused} refused with StorageFull");
    assert!(refused >= 20, "every run ends on a full database");
}

#[tokio::test]
async fn t6_storage_full_with_durability_full_and_snapshots_and_checkpoints() {
    use es_core::{CheckpointStore, Snapshot, SnapshotStore, Timestamp};

    // The default durability, and the other writes (snapshots, checkpoints)
    // on a full database: typed errors, and the store still works.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::options().max_page_count(30).open(&db).unwrap();
    let stream = StreamId::new("big").unwrap();
    let mut stored = 0u64;
    let full = loop {
        let events = (0..5)
            .map(|_| NewEvent::new("fill", "filled", 1, format!("\"{}\"", "x".repeat(2_000))))
            .collect();
        match store
            .append(&stream, ExpectedVersion::Exact(stored), events)
            .await
        {
            Ok(r) => stored = r.version,
            Err(e) => break e,
        }
        assert!(stored < 10_000, "the database never filled up");
    };
    assert!(matches!(full, Error::StorageFull), "{full:?}");
    let snapshot = Snapshot {
        stream_id: stream.clone(),
        aggregate_type: "fill".into(),
        version: stored,
        schema_version: 1,
        state: vec![b'x'; 200_000],
        taken_at: Timestamp::now(),
    };
    let saved = store.save_snapshot(snapshot).await;
    assert!(matches!(saved, Err(Error::StorageFull)), "{saved:?}");
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), None);
    // A small write still fits, or fails typed.
    match store.save_checkpoint("projection", stored).await {
        Ok(()) => assert_eq!(
            store.load_checkpoint("projection").await.unwrap(),
            Some(stored)
        ),
        Err(e) => assert!(matches!(e, Error::StorageFull), "{e:?}"),
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), stored);
    assert_eq!(integrity(&db), "ok");
    drop(store);

    let store = SqliteStore::options()
        .max_page_count(3_000)
        .open(&db)
        .unwrap();
    let more = NewEvent::new("fill", "filled", 1, "{}");
    let r = store
        .append(&stream, ExpectedVersion::Exact(stored), vec![more])
        .await
        .unwrap();
    assert_eq!(r.version, stored + 1);
}
