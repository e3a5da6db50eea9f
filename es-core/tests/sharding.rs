//! `ShardedStore` beyond the conformance suite: resharding in small
//! appends, resumed after lost progress, refusing a target that holds
//! other events, and forgetting a subject whose data is in every shard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::blocking::block_on;
use es_core::privacy::{Forget, KeyEncryptionKey, MemoryKeyStore, subject_stream};
use es_core::shard::{ReshardError, ShardCheckpoints, reshard};
use es_core::store::{Limits, next};
use es_core::{
    Error, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, ReadRange,
    RecordedEvent, ShardedStore, Snapshot, SnapshotStore, StreamId, Timestamp,
};

fn sharded(n: usize) -> ShardedStore<InMemoryStore> {
    ShardedStore::new((0..n).map(|_| InMemoryStore::new()).collect()).unwrap()
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn read<S: EventStore>(store: &S, s: &StreamId) -> Vec<RecordedEvent> {
    block_on(async {
        let mut events = store.read_stream(s, ReadRange::all());
        let mut out = Vec::new();
        while let Some(e) = next(&mut events).await {
            out.push(e.unwrap());
        }
        out
    })
}

fn fill(store: &ShardedStore<InMemoryStore>, streams: usize) -> Vec<StreamId> {
    let ids: Vec<StreamId> = (0..streams).map(|i| stream(&format!("item-{i}"))).collect();
    for (i, s) in ids.iter().enumerate() {
        let events = (0..=i % 4)
            .map(|n| NewEvent::new("item", "changed", 1, format!(r#"{{"n":{n}}}"#)))
            .collect();
        block_on(store.append(s, ExpectedVersion::NoStream, events)).unwrap();
    }
    ids
}

#[test]
fn a_reshard_in_small_appends_resumed_from_nothing_copies_nothing_twice() {
    let from = sharded(2);
    let streams = fill(&from, 30);
    let total: usize = (0..30).map(|i| i % 4 + 1).sum();
    let to = sharded(3);
    let small = Limits {
        max_events_per_append: 3,
        ..Limits::default()
    };
    let mut progress = ShardCheckpoints::new(2);
    let run = block_on(reshard(&from, &to, &mut progress, &small)).unwrap();
    assert_eq!(
        (run.read, run.copied, run.skipped),
        (total as u64, total as u64, 0)
    );
    assert!(run.appends >= (total as u64).div_ceil(3));
    for s in &streams {
        let (a, b) = (read(&from, s), read(&to, s));
        assert_eq!(
            a.iter()
                .map(|e| (e.event_id, e.version))
                .collect::<Vec<_>>(),
            b.iter()
                .map(|e| (e.event_id, e.version))
                .collect::<Vec<_>>()
        );
    }
    // The progress lost: a run from the beginning recognises every event.
    let mut lost = ShardCheckpoints::new(2);
    let again = block_on(reshard(&from, &to, &mut lost, &small)).unwrap();
    assert_eq!((again.copied, again.skipped), (0, total as u64));
    assert_eq!(lost, progress);
    assert!(block_on(to.last_position()).unwrap() > 0);
    let mut counted = 0;
    for shard in to.shards() {
        counted += block_on(shard.last_position()).unwrap();
    }
    assert_eq!(counted, total as u64, "no event twice");
    // Progress of another number of shards is refused.
    let mut wrong = ShardCheckpoints::new(3);
    assert!(matches!(
        block_on(reshard(&from, &to, &mut wrong, &small)),
        Err(ReshardError::Store(Error::ShardCheckpoints {
            found: 3,
            shards: 2,
            ..
        }))
    ));
}

#[test]
fn a_target_holding_other_events_of_a_stream_is_a_conflict() {
    let from = sharded(2);
    fill(&from, 3);
    let to = sharded(2);
    let other = NewEvent::new("item", "changed", 1, "{}");
    block_on(to.append(&stream("item-1"), ExpectedVersion::NoStream, vec![other])).unwrap();
    let mut progress = ShardCheckpoints::new(2);
    let refused = block_on(reshard(&from, &to, &mut progress, &Limits::default()));
    assert!(
        matches!(refused, Err(ReshardError::Store(Error::Conflict(ref c))) if c.stream == stream("item-1")),
        "{refused:?}"
    );
}

#[test]
fn an_event_over_the_targets_limits_is_refused_with_its_place() {
    let from = sharded(1);
    let big = NewEvent::new("item", "changed", 1, format!("\"{}\"", "x".repeat(100)));
    block_on(from.append(&stream("big"), ExpectedVersion::NoStream, vec![big])).unwrap();
    let tight = Limits {
        max_payload_bytes: 50,
        ..Limits::default()
    };
    let mut progress = ShardCheckpoints::new(1);
    let refused = block_on(reshard(&from, &sharded(2), &mut progress, &tight));
    assert!(
        matches!(
            refused,
            Err(ReshardError::Refused {
                shard: 0,
                position: 1,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(progress, ShardCheckpoints::new(1), "no progress past it");
}

#[test]
fn forgetting_reaches_every_shard_and_records_one_event() {
    let shards: Vec<InMemoryStore> = (0..3)
        .map(|_| InMemoryStore::new().with_keys(MemoryKeyStore::new(KeyEncryptionKey::generate())))
        .collect();
    let store = ShardedStore::new(shards).unwrap();
    let streams: Vec<StreamId> = (0..9).map(|i| stream(&format!("order-{i}"))).collect();
    for s in &streams {
        let payload = r#"{"email":{"$personal":"ada@example.com","subject":"ada"}}"#;
        let e = NewEvent::new("order", "placed", 1, payload);
        block_on(store.append(s, ExpectedVersion::NoStream, vec![e])).unwrap();
        let snapshot = Snapshot {
            stream_id: s.clone(),
            aggregate_type: "order".into(),
            version: 1,
            schema_version: 1,
            state: b"{}".to_vec(),
            taken_at: Timestamp::now(),
        };
        block_on(store.save_snapshot(snapshot)).unwrap();
    }
    let used: std::collections::BTreeSet<usize> =
        streams.iter().map(|s| store.shard_for(s)).collect();
    assert!(used.len() > 1, "the subject's data is in several shards");
    assert!(
        read(&store, &streams[0])[0]
            .event
            .as_str()
            .contains("ada@example.com")
    );

    let forgotten = block_on(store.forget("ada", Metadata::new().reason("asked"))).unwrap();
    assert_eq!(
        forgotten.keys_destroyed,
        used.len(),
        "one key per shard used"
    );
    assert_eq!(forgotten.snapshots_deleted, 9);
    for s in &streams {
        let payload = read(&store, s)[0].event.as_str().to_owned();
        assert!(!payload.contains("ada@example.com"), "{payload}");
        assert!(block_on(store.load_snapshot(s)).unwrap().is_none());
    }
    let record = subject_stream("ada").unwrap();
    let home = store.shard_for(&record);
    for (i, shard) in store.shards().iter().enumerate() {
        let v = block_on(shard.stream_version(&record)).unwrap();
        assert_eq!(
            v,
            u64::from(i == home),
            "the forgetting recorded once, in shard {home}"
        );
    }
    assert_eq!(
        store
            .split_position(forgotten.recorded.first_position.unwrap())
            .unwrap()
            .0,
        home
    );
}
