//! Issue 11 (RELIABILITY T8): salvaging a damaged file. `read_all` stops at
//! the first damage; `SqliteStore::salvage` reads past every damaged row
//! and page. Each test damages the bytes of a closed file and checks the
//! salvage against an oracle independent of the store's checks: an event
//! is undamaged when a plain SQL lookup of its position returns exactly its
//! columns as they were before the damage (its checksum included), its
//! stream's row is as it was, found again by the stream-id index, with an
//! aggregate type the `event_types` summary still holds, and one of the
//! two indexes that hold it (stream and version; event id) still places it
//! at its position. The salvage must give every undamaged event, and no
//! event that differs in anything (its position included) from the event
//! first read there; it may give more than the oracle, since a scan reaches
//! rows that a lookup by position misses (behind a damaged key of an
//! interior page). Every other position must be reported.
//!
//! `salvage_recovers_every_undamaged_event_of_10000_after_random_overwrites`
//! measures, for k random overwrites of 16 to 256 bytes in the middle of a
//! 10,000-event file, how many events `read_all` serves before it stops and
//! how many the salvage recovers (the README's figures; `ES_SALVAGE_TRIALS`
//! trials for each k, 10 by default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use common::Rng;
use es_core::blocking::block_on;
use es_core::store::next;
use es_core::{
    EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamId, StreamWrite,
};
use es_sqlite::{DamageKind, DamagedEvent, Salvaged, SqliteStore, Verify};
use rusqlite::types::Value;

const COLUMNS: &str = "position, stream_pk, version, event_id, recorded_at, occurred_at, name, \
                       schema_version, payload, metadata, checksum";

/// A closed store of `events` events over `streams` streams, appended ten
/// streams at a time, ten events each, so each stream's events are spread
/// over the log. Returns the file and every event as read back.
fn populated(dir: &Path, events: u64, streams: u64) -> (PathBuf, Vec<RecordedEvent>) {
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut versions = vec![0u64; usize::try_from(streams).unwrap()];
    let mut n = 0u64;
    let mut rng = Rng::new(11);
    while n < events {
        let mut writes = Vec::new();
        let first = rng.below(streams);
        for s in 0..10.min(streams) {
            let s = (first + s) % streams;
            let version = &mut versions[usize::try_from(s).unwrap()];
            let mut batch = Vec::new();
            for _ in 0..10 {
                if n == events {
                    break;
                }
                n += 1;
                let memo = "x".repeat(usize::try_from(rng.range(20, 300)).unwrap());
                let mut event = NewEvent::new(
                    if s.is_multiple_of(2) {
                        "account"
                    } else {
                        "ledger"
                    },
                    if n.is_multiple_of(3) {
                        "withdrawn"
                    } else {
                        "deposited"
                    },
                    1,
                    format!(r#"{{"n":{n},"stream":{s},"memo":"{memo}"}}"#),
                );
                if n.is_multiple_of(5) {
                    event.metadata = Metadata::new().actor(format!("clerk-{}", n % 7));
                }
                batch.push(event);
            }
            if batch.is_empty() {
                break;
            }
            let expected = if *version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(*version)
            };
            *version += batch.len() as u64;
            writes.push(StreamWrite::new(
                StreamId::new(format!(
                    "{}-{s}",
                    if s.is_multiple_of(2) {
                        "account"
                    } else {
                        "ledger"
                    }
                ))
                .unwrap(),
                expected,
                batch,
            ));
        }
        block_on(store.append_to_streams(writes)).unwrap();
    }
    let all = read_all(&store).0;
    assert_eq!(all.len() as u64, events);
    drop(store);
    assert!(!dir.join("events.db-wal").exists());
    (db, all)
}

/// The events `read_all` serves before it stops, and whether it stopped
/// at an error.
fn read_all(store: &SqliteStore) -> (Vec<RecordedEvent>, bool) {
    let mut events = store.read_all(1);
    let mut out = Vec::new();
    while let Some(event) = block_on(next(&mut events)) {
        match event {
            Ok(event) => out.push(event),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// Every item of a salvage, from the first position to the end.
fn salvage(store: &SqliteStore) -> Vec<Salvaged> {
    let mut items = Vec::new();
    let report = block_on(store.salvage(1, |item| {
        items.push(item);
        ControlFlow::Continue(())
    }))
    .unwrap();
    assert!(report.is_complete());
    assert_eq!(report.events + report.damaged, items.len() as u64);
    items
}

fn split(items: &[Salvaged]) -> (Vec<RecordedEvent>, Vec<DamagedEvent>) {
    let mut events = Vec::new();
    let mut damaged = Vec::new();
    for item in items {
        match item {
            Salvaged::Event(e) => events.push(e.clone()),
            Salvaged::Damaged(d) => damaged.push(d.clone()),
            _ => unreachable!("no other kind of item yet"),
        }
    }
    (events, damaged)
}

/// The raw columns of every event, and of every stream, by key.
struct Raw {
    events: BTreeMap<i64, Vec<Value>>,
    streams: BTreeMap<i64, (String, String)>,
}

fn raw(db: &Path) -> Raw {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut events = BTreeMap::new();
    let mut query = conn
        .prepare(&format!("SELECT {COLUMNS} FROM events"))
        .unwrap();
    let mut rows = query.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let values: Vec<Value> = (0..11).map(|i| row.get(i).unwrap()).collect();
        let Value::Integer(position) = values[0] else {
            panic!()
        };
        events.insert(position, values);
    }
    let mut streams = BTreeMap::new();
    let mut query = conn
        .prepare("SELECT stream_pk, stream_id, aggregate_type FROM streams")
        .unwrap();
    let mut rows = query.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        streams.insert(
            row.get(0).unwrap(),
            (row.get(1).unwrap(), row.get(2).unwrap()),
        );
    }
    Raw { events, streams }
}

/// The positions whose event is undamaged in the damaged file at `db`,
/// judged with plain SQL against `before` (see the module's docs).
fn undamaged(db: &Path, before: &Raw) -> BTreeSet<u64> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let types: Option<HashSet<String>> = conn
        .prepare("SELECT DISTINCT aggregate_type FROM event_types")
        .and_then(|mut q| {
            q.query_map([], |r| r.get(0))
                .and_then(Iterator::collect::<rusqlite::Result<_>>)
        })
        .ok();
    let sound_stream = |pk: i64| {
        let (id, aggregate) = &before.streams[&pk];
        let row: rusqlite::Result<(String, String)> = conn.query_row(
            "SELECT stream_id, aggregate_type FROM streams WHERE stream_pk = ?1",
            [pk],
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        let indexed: rusqlite::Result<i64> = conn.query_row(
            "SELECT stream_pk FROM streams WHERE stream_id = ?1",
            [id],
            |r| r.get(0),
        );
        row.ok().as_ref() == Some(&(id.clone(), aggregate.clone()))
            && indexed.ok() == Some(pk)
            && types.as_ref().is_none_or(|t| t.contains(aggregate))
    };
    let streams: BTreeMap<i64, bool> = before
        .streams
        .keys()
        .map(|&pk| (pk, sound_stream(pk)))
        .collect();
    let mut index = conn
        .prepare("SELECT position FROM events WHERE stream_pk = ?1 AND version = ?2")
        .unwrap();
    let mut by_id = conn
        .prepare("SELECT position FROM events WHERE event_id = ?1")
        .unwrap();
    let mut lookup = conn
        .prepare(&format!("SELECT {COLUMNS} FROM events WHERE position = ?1"))
        .unwrap();
    before
        .events
        .iter()
        .filter(|(position, columns)| {
            let now: rusqlite::Result<Vec<Value>> =
                lookup.query_row([**position], |row| (0..11).map(|i| row.get(i)).collect());
            let (Value::Integer(pk), Value::Integer(version), Value::Blob(id)) =
                (&columns[1], &columns[2], &columns[3])
            else {
                panic!()
            };
            let indexed = index.query_row((pk, version), |r| r.get::<_, i64>(0)).ok()
                == Some(**position)
                || by_id.query_row([id], |r| r.get::<_, i64>(0)).ok() == Some(**position);
            now.ok().as_ref() == Some(*columns) && indexed && streams[pk]
        })
        .map(|(&position, _)| u64::try_from(position).unwrap())
        .collect()
}

/// Checks a salvage of the damaged file `db` against the oracle: every
/// undamaged event, each as first read, and no other event but one equal
/// to the event first read at its position (a scan reaches some rows a
/// lookup by position cannot); every other position reported. Returns
/// (events `read_all` served, events salvaged, events undamaged, whether
/// the default check at open refused the file).
fn check_salvage(
    db: &Path,
    original: &[RecordedEvent],
    before: &Raw,
) -> (usize, usize, usize, bool) {
    let expected = undamaged(db, before);
    let refused = SqliteStore::open(db).is_err();
    let store = SqliteStore::options()
        .verify(Verify::Off)
        .readers(1)
        .open(db)
        .unwrap();
    let (served, _) = read_all(&store);
    for event in &served {
        assert_eq!(
            event,
            &original[usize::try_from(event.position).unwrap() - 1]
        );
    }
    let items = salvage(&store);
    let (events, damaged) = split(&items);
    for event in &events {
        let first = &original[usize::try_from(event.position).unwrap() - 1];
        assert_eq!(event, first, "a salvaged event is the event as written");
        assert_eq!(event.payload().as_str(), first.payload().as_str());
    }
    let salvaged: BTreeSet<u64> = events.iter().map(|e| e.position).collect();
    assert_eq!(salvaged.len(), events.len(), "each event once");
    let missed: Vec<&u64> = expected.difference(&salvaged).collect();
    assert!(
        missed.is_empty(),
        "undamaged but not salvaged: {} {:?}; reported: {} {:?}",
        missed.len(),
        &missed[..missed.len().min(10)],
        damaged.len(),
        &damaged[..damaged.len().min(10)],
    );
    // Every other position of the log is reported, in order.
    let reported: BTreeSet<u64> = damaged.iter().map(|d| d.position).collect();
    for position in 1..=original.len() as u64 {
        assert!(
            salvaged.contains(&position) || reported.contains(&position),
            "position {position} neither salvaged nor reported"
        );
    }
    assert!(
        items.windows(2).all(|w| w[0].position() < w[1].position()),
        "items in position order, each position once"
    );
    if !damaged.is_empty() {
        assert!(store.damage_found().is_some());
    }
    (served.len(), events.len(), expected.len(), refused)
}

fn page_size(db: &Path) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    usize::try_from(size).unwrap()
}

/// The byte offset of the text `needle` in `bytes`, searched from `from`.
fn find(bytes: &[u8], needle: &str, from: usize) -> usize {
    from + bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("{needle} is in the file"))
}

#[test]
fn a_salvage_of_a_sound_file_is_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (db, original) = populated(dir.path(), 1_000, 20);
    let store = SqliteStore::open(&db).unwrap();
    let (events, damaged) = split(&salvage(&store));
    assert_eq!(events, original);
    assert!(damaged.is_empty());
    assert_eq!(store.damage_found(), None);
    // From a position on, and stopped by the callback.
    let mut seen = Vec::new();
    let report = block_on(store.salvage(990, |item| {
        seen.push(item.position());
        ControlFlow::Continue(())
    }))
    .unwrap();
    assert_eq!(seen, (990..=1_000).collect::<Vec<_>>());
    assert_eq!((report.end, report.next, report.events), (1_000, 1_001, 11));
    let mut taken = 0;
    let report = block_on(store.salvage(1, |_| {
        taken += 1;
        if taken == 100 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }))
    .unwrap();
    assert_eq!((taken, report.next), (100, 101));
    assert!(!report.is_complete());
}

/// Known damage, known answers: a changed payload byte (a row whose
/// checksum fails), a leaf page of the events table overwritten (its rows
/// unreadable), a stream id changed in the streams table (its events not
/// trusted).
#[test]
fn a_salvage_reads_past_damaged_rows_pages_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (db, original) = populated(dir.path(), 2_000, 20);
    let before = raw(&db);
    let size = page_size(&db);
    let mut bytes = std::fs::read(&db).unwrap();

    // The payload of the event at position 100.
    let at = find(&bytes, r#"{"n":100,"#, 0);
    bytes[at + 3] ^= 0x01; // "n" becomes "o"

    // The leaf page holding position 1,000, and every event on it.
    let at = find(&bytes, r#"{"n":1000,"#, 0);
    let page = at / size;
    let on_page: BTreeSet<u64> = (1..=2_000u64)
        .filter(|n| {
            let text = format!(r#"{{"n":{n},"#);
            let range = &bytes[page * size..(page + 1) * size];
            range.windows(text.len()).any(|w| w == text.as_bytes())
        })
        .collect();
    assert!(on_page.len() > 3, "{on_page:?}");
    bytes[page * size..(page + 1) * size].fill(0xff);

    // The id of stream `ledger-7` in the streams table (not its index).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'streams'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let table = (usize::try_from(root).unwrap() - 1) * size;
    let at = find(&bytes[..table + size], "ledger-7", table);
    bytes[at + 7] = b'8'; // `ledger-8` in the table, `ledger-7` in the index
    std::fs::write(&db, &bytes).unwrap();

    let (served, salvaged, undamaged, _) = check_salvage(&db, &original, &before);
    assert_eq!(served, 99, "read_all stops at position 100");
    let store = SqliteStore::options()
        .verify(Verify::Off)
        .open(&db)
        .unwrap();
    let (_, damaged) = split(&salvage(&store));
    let kinds: BTreeMap<u64, DamageKind> = damaged.iter().map(|d| (d.position, d.kind)).collect();
    assert_eq!(kinds[&100], DamageKind::Row);
    let row = damaged.iter().find(|d| d.position == 100).unwrap();
    assert_eq!(
        (row.stream.as_deref(), row.version),
        (
            Some(original[99].stream_id.as_str()),
            Some(original[99].version)
        )
    );
    for position in &on_page {
        assert_eq!(kinds[position], DamageKind::Unreadable, "{position}");
        // Named as the index on (stream, version) holds them.
        let found = damaged.iter().find(|d| d.position == *position).unwrap();
        let event = &original[usize::try_from(*position).unwrap() - 1];
        assert_eq!(
            (found.stream.as_deref(), found.version),
            (Some(event.stream_id.as_str()), Some(event.version))
        );
    }
    let ledger_7: BTreeSet<u64> = original
        .iter()
        .filter(|e| e.stream_id.as_str() == "ledger-7")
        .map(|e| e.position)
        .collect();
    for position in ledger_7.difference(&on_page) {
        if *position != 100 {
            assert_eq!(kinds[position], DamageKind::Stream, "{position}");
        }
    }
    let lost: BTreeSet<u64> = on_page
        .iter()
        .chain(&ledger_7)
        .copied()
        .chain([100])
        .collect();
    assert_eq!(damaged.len(), lost.len(), "{damaged:?}");
    assert_eq!(salvaged, 2_000 - lost.len());
    assert_eq!(salvaged, undamaged);
}

/// Random bytes overwritten in the middle of a 10,000-event file, k times:
/// `read_all` against the salvage, checked against the oracle each time.
#[test]
fn salvage_recovers_every_undamaged_event_of_10000_after_random_overwrites() {
    let trials: u64 = std::env::var("ES_SALVAGE_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let (db, original) = populated(dir.path(), 10_000, 100);
    let before = raw(&db);
    let size = page_size(&db);
    let pristine = std::fs::read(&db).unwrap();
    eprintln!(
        "salvage: a {}-byte file of {} events ({} pages)",
        pristine.len(),
        original.len(),
        pristine.len() / size
    );
    let mut rng = Rng::new(0x5a1_7a6e);
    for k in [1u64, 4, 16] {
        let (mut served, mut salvaged, mut intact, mut refused) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..trials {
            let mut bytes = pristine.clone();
            for _ in 0..k {
                let len = usize::try_from(rng.range(16, 256)).unwrap();
                // Past the first page (the header and the schema), inside
                // the file.
                let at =
                    size + usize::try_from(rng.below((bytes.len() - size - len) as u64)).unwrap();
                for byte in &mut bytes[at..at + len] {
                    *byte = u8::try_from(rng.below(256)).unwrap();
                }
            }
            let case = tempfile::tempdir().unwrap();
            let damaged = case.path().join("events.db");
            std::fs::write(&damaged, &bytes).unwrap();
            let (read, recovered, undamaged, was_refused) =
                check_salvage(&damaged, &original, &before);
            assert!(recovered >= undamaged && recovered >= read);
            served.push(read);
            salvaged.push(recovered);
            intact.push(undamaged);
            refused += usize::from(was_refused);
        }
        let mean = |v: &[usize]| v.iter().sum::<usize>() / v.len().max(1);
        eprintln!(
            "salvage: k = {k:>2} overwrites, {trials} files: read_all served {} events on average \
             (min {}, max {}); the salvage recovered {} (min {}, max {}); undamaged by the \
             oracle {} (min {}); {refused} of the {trials} files refused at open by the default check",
            mean(&served),
            served.iter().min().unwrap(),
            served.iter().max().unwrap(),
            mean(&salvaged),
            salvaged.iter().min().unwrap(),
            salvaged.iter().max().unwrap(),
            mean(&intact),
            intact.iter().min().unwrap(),
        );
    }
}
