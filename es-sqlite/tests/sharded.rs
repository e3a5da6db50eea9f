//! `ShardedStore` over SQLite files: the sharded conformance suite and
//! model check over 2 and 4 files, and a live store moved from 2 shards to
//! 3 by `reshard` while writers keep appending.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use es_core::blocking::block_on;
use es_core::shard::{ShardCheckpoints, reshard};
use es_core::store::{Limits, next};
use es_core::testing::conformance::Layout;
use es_core::{
    EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, ShardedStore, StreamId,
    StreamWrite, Timestamp, Uuid,
};
use es_sqlite::SqliteStore;

fn sharded(n: usize) -> ShardedStore<SqliteStore> {
    let shards = (0..n)
        .map(|_| SqliteStore::open_temporary().expect("a temporary store opens"))
        .collect();
    ShardedStore::new(shards).expect("shards")
}

mod two_files {
    es_core::sharded_store_conformance_tests!(super::sharded(2));
}

mod four_files {
    es_core::sharded_store_conformance_tests!(super::sharded(4));
}

fn read<S: EventStore>(store: &S, stream: Option<&StreamId>) -> Vec<RecordedEvent> {
    block_on(async {
        let mut events = match stream {
            Some(s) => store.read_stream(s, es_core::ReadRange::all()),
            None => store.read_all(0),
        };
        let mut out = Vec::new();
        while let Some(e) = next(&mut events).await {
            out.push(e.expect("reads"));
        }
        out
    })
}

/// What must survive a copy: everything but the position and the
/// recorded-at time, which are the new store's.
type Kept = (
    StreamId,
    String,
    u64,
    Uuid,
    String,
    u32,
    String,
    Metadata,
    Timestamp,
);

fn kept(e: &RecordedEvent) -> Kept {
    (
        e.stream_id.clone(),
        e.aggregate_type.to_string(),
        e.version,
        e.event_id,
        e.name.clone(),
        e.schema_version,
        e.event.as_str().to_owned(),
        e.metadata.clone(),
        e.occurred_at,
    )
}

#[test]
fn a_live_store_moves_from_two_shards_to_three() {
    let from = sharded(2);
    let to = sharded(3);
    let layout = Layout::of(&from);
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let mut progress = ShardCheckpoints::new(2);
    let mut copied_live = 0;
    std::thread::scope(|scope| {
        for w in 0..3 {
            let (from, stop, written) = (&from, &stop, &written);
            scope.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) || n < 40 {
                    let s = StreamId::new(format!("account-{w}-{}", n % 7)).unwrap();
                    let meta = Metadata::new()
                        .actor(format!("writer-{w}"))
                        .correlation_id(Uuid::now_v7())
                        .with("n", n);
                    let e = NewEvent::new("account", "deposited", 1, format!(r#"{{"n":{n}}}"#))
                        .with_metadata(meta)
                        .with_occurred_at(Timestamp::from_unix_micros(
                            1_700_000_000_000_000 + n.cast_signed(),
                        ));
                    let version = block_on(from.stream_version(&s)).unwrap();
                    let mut writes = vec![StreamWrite::new(
                        s.clone(),
                        ExpectedVersion::Exact(version),
                        vec![e],
                    )];
                    // Every fifth append also writes a stream of the same
                    // shard, atomically.
                    if n.is_multiple_of(5) {
                        let partner = layout.beside(&s, &format!("ledger-{w}"));
                        let v = block_on(from.stream_version(&partner)).unwrap();
                        let entry =
                            NewEvent::new("ledger", "entered", 2, format!(r#"{{"of":{n}}}"#));
                        writes.push(StreamWrite::new(
                            partner,
                            ExpectedVersion::Exact(v),
                            vec![entry],
                        ));
                    }
                    let events = writes.iter().map(|w| w.events.len() as u64).sum::<u64>();
                    block_on(from.append_to_streams(writes)).expect("a writer owns its streams");
                    written.fetch_add(events, Ordering::SeqCst);
                    n += 1;
                }
            });
        }
        // Copy while they write.
        while written.load(Ordering::SeqCst) < 300 {
            let run = block_on(reshard(&from, &to, &mut progress, &Limits::default())).unwrap();
            copied_live += run.copied;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let run = block_on(reshard(&from, &to, &mut progress, &Limits::default())).unwrap();
        copied_live += run.copied;
        stop.store(true, Ordering::SeqCst);
    });
    assert!(copied_live > 0, "copied while the writers ran");
    let total = written.load(Ordering::SeqCst);
    let final_run = block_on(reshard(&from, &to, &mut progress, &Limits::default())).unwrap();
    assert!(
        final_run.copied > 0,
        "the writers wrote after the last live run"
    );
    assert_eq!(
        copied_live + final_run.copied,
        total,
        "each event copied once"
    );
    let again = block_on(reshard(&from, &to, &mut progress, &Limits::default())).unwrap();
    assert_eq!((again.read, again.copied), (0, 0), "nothing left to copy");

    // Every stream reads the same in the new store, in its new shard.
    let old = read(&from, None);
    assert_eq!(old.len() as u64, total);
    let streams: BTreeSet<StreamId> = old.iter().map(|e| e.stream_id.clone()).collect();
    for s in &streams {
        let before: Vec<_> = read(&from, Some(s)).iter().map(kept).collect();
        let after: Vec<_> = read(&to, Some(s)).iter().map(kept).collect();
        assert_eq!(before, after, "stream {s}");
        let home = to.shard_for(s);
        for (i, shard) in to.shards().iter().enumerate() {
            let v = block_on(shard.stream_version(s)).unwrap();
            assert_eq!(v > 0, i == home, "stream {s} only in its shard");
        }
    }
    let new = read(&to, None);
    assert_eq!(new.len(), old.len());
    let ids: HashSet<Uuid> = new.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), new.len(), "no event twice");
}
