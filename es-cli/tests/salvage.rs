//! Issue 11: `es verify` lists every damaged range of a damaged file;
//! `es export --salvage` exports exactly the events that still read back
//! whole, byte for byte, with a report of what it skipped; `es import
//! --renumber` of the salvage into a new file gives a store that verifies.
//! The damage is made in the bytes of a closed file: one payload byte, and
//! a whole leaf page of the events table (as `es-sqlite/tests/salvage.rs`
//! does, which also checks random overwrites against an oracle).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{all, stderr, stdout};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId, StreamWrite};
use es_sqlite::SqliteStore;
use serde_json::value::RawValue;

fn es(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es"))
        .args(args)
        .output()
        .expect("the es binary runs")
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A closed store of 1,200 events over 12 streams, ten events a stream at
/// a time; each payload names its position.
fn store(dir: &Path) -> (PathBuf, Vec<RecordedEvent>) {
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut n = 0u64;
    for round in 0..10u64 {
        let writes = (0..12u64)
            .map(|s| {
                let events = (0..10)
                    .map(|_| {
                        n += 1;
                        let memo = "m".repeat(usize::try_from(40 + (n * 37) % 200).unwrap());
                        NewEvent::new(
                            "account",
                            "noted",
                            1,
                            format!(r#"{{"n":{n},"memo":"{memo}"}}"#),
                        )
                    })
                    .collect();
                let expected = if round == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(round * 10)
                };
                StreamWrite::new(
                    StreamId::new(format!("account-{s}")).unwrap(),
                    expected,
                    events,
                )
            })
            .collect();
        block_on(store.append_to_streams(writes)).unwrap();
    }
    drop(store);
    let events = all(&db);
    assert_eq!(events.len(), 1_200);
    (db, events)
}

/// Damages the file: one letter of the payload at position 100, and the
/// leaf page holding position 700 overwritten. Returns the positions
/// damaged.
fn damage(db: &Path) -> BTreeSet<u64> {
    let size: i64 = es_sqlite::rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let size = usize::try_from(size).unwrap();
    let mut bytes = std::fs::read(db).unwrap();
    let find = |bytes: &[u8], needle: &str| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap()
    };
    let at = find(&bytes, r#"{"n":100,"#);
    bytes[at + 2] ^= 0x01; // "n" becomes "o": the JSON stays valid
    let page = find(&bytes, r#"{"n":700,"#) / size;
    let mut damaged: BTreeSet<u64> = (1..=1_200u64)
        .filter(|n| {
            let needle = format!(r#"{{"n":{n},"#);
            bytes[page * size..(page + 1) * size]
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .collect();
    assert!(damaged.len() > 5, "{damaged:?}");
    let (first, last) = (*damaged.first().unwrap(), *damaged.last().unwrap());
    assert_eq!(last - first + 1, damaged.len() as u64, "a page holds a run");
    bytes[page * size..(page + 1) * size].fill(0xee);
    damaged.insert(100);
    std::fs::write(db, bytes).unwrap();
    damaged
}

/// A damaged store: its directory, file, events as first read, and the
/// positions damaged.
fn damaged_store() -> (
    tempfile::TempDir,
    PathBuf,
    Vec<RecordedEvent>,
    BTreeSet<u64>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (db, original) = store(dir.path());
    let damaged = damage(&db);
    (dir, db, original, damaged)
}

/// `es export --salvage` of `db` into `salvage.jsonl` beside it; exit 1.
fn salvage_of(dir: &Path, db: &Path) -> PathBuf {
    let salvage = dir.join("salvage.jsonl");
    let out = es(&["export", "--salvage", text(db), "--out", text(&salvage)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    salvage
}

#[test]
fn verify_lists_every_damaged_range() {
    let (_dir, db, original, damaged) = damaged_store();
    let page: Vec<u64> = damaged.iter().copied().filter(|&p| p != 100).collect();
    let (first, last) = (page[0], page[page.len() - 1]);

    // The default check at open refuses the file; verify reports it all.
    let out = es(&["streams", text(&db)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = es(&["verify", text(&db)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report = stdout(&out);
    let before_100 = &original[99];
    for expected in [
        format!(
            "{} of 1200 events read back whole; {} damaged, in 2 ranges of positions",
            1_200 - damaged.len(),
            damaged.len()
        ),
        format!(
            "position 100 (1 event; row): stream `{}` version {}",
            before_100.stream_id, before_100.version
        ),
        format!(
            "positions {first}-{last} ({} events; unreadable): stream `{}` version",
            page.len(),
            original[usize::try_from(first).unwrap() - 1].stream_id
        ),
    ] {
        assert!(report.contains(&expected), "{expected}\n{report}");
    }
    let out = es(&["--json", "verify", text(&db)]);
    assert_eq!(out.status.code(), Some(1));
    let checks: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events = checks.iter().find(|c| c["check"] == "events").unwrap();
    assert_eq!(events["ok"], false);
    let ranges: Vec<(u64, u64)> = events["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["from"].as_u64().unwrap(), r["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(ranges, [(100, 100), (first, last)]);
}

#[test]
fn export_salvage_writes_exactly_the_undamaged_events_and_a_report() {
    let (dir, db, original, damaged) = damaged_store();
    // The salvage: exactly the undamaged events, byte for byte.
    let salvage = dir.path().join("salvage.jsonl");
    let skipped = dir.path().join("skipped.json");
    let out = es(&[
        "export",
        "--salvage",
        text(&db),
        "--out",
        text(&salvage),
        "--report",
        text(&skipped),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "salvage: {} events exported; {} of the 1200 positions skipped, in 2 ranges",
            1_200 - damaged.len(),
            damaged.len()
        )),
        "{}",
        stderr(&out)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&salvage)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<&RecordedEvent> = original
        .iter()
        .filter(|e| !damaged.contains(&e.position))
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, event) in lines.iter().zip(&expected) {
        assert_eq!(line["position"], event.position);
        assert_eq!(line["event_id"], event.event_id.to_string());
        assert_eq!(line["stream"], event.stream_id.as_str());
        assert_eq!(line["version"], event.version);
    }
    // Each payload's text exactly as stored.
    for (line, event) in std::fs::read_to_string(&salvage)
        .unwrap()
        .lines()
        .zip(&expected)
    {
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(line).unwrap();
        assert_eq!(fields["payload"].get(), event.payload().as_str());
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&skipped).unwrap()).unwrap();
    assert_eq!(report["exported"], expected.len());
    assert_eq!(report["skipped"], damaged.len());
    assert_eq!(
        (report["end"].as_u64(), report["complete"].as_bool()),
        (Some(1_200), Some(true))
    );
    assert_eq!(report["damaged"].as_array().unwrap().len(), 2);
    // With --json, the report on standard error is that JSON, on one line.
    let out = es(&["--json", "export", "--salvage", text(&db)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).lines().count(), expected.len());
    let summary: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(summary, report);
}

#[test]
fn a_salvage_imports_with_renumbered_versions_into_a_store_that_verifies() {
    let (dir, db, original, damaged) = damaged_store();
    let salvage = salvage_of(dir.path(), &db);
    let expected: Vec<&RecordedEvent> = original
        .iter()
        .filter(|e| !damaged.contains(&e.position))
        .collect();
    // Imported plainly, the gaps are refused; renumbered, they close.
    let fresh = dir.path().join("fresh.db");
    let out = es(&["--db", text(&fresh), "import", text(&salvage)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("import --renumber"),
        "{}",
        stderr(&out)
    );
    let out = es(&["--db", text(&fresh), "import", "--renumber", text(&salvage)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{} events imported", expected.len())),
        "{}",
        stdout(&out)
    );
    let out = es(&["verify", text(&fresh)]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let imported = all(&fresh);
    assert_eq!(imported.len(), expected.len());
    for (new, old) in imported.iter().zip(&expected) {
        assert_eq!(new.event_id, old.event_id);
        assert_eq!(new.stream_id, old.stream_id);
        assert_eq!(new.payload().as_str(), old.payload().as_str());
        assert_eq!(new.metadata, old.metadata);
        assert_eq!(new.occurred_at, old.occurred_at);
    }
    // Each stream's versions are 1, 2, 3, ... in the old order.
    for stream in 0..12 {
        let id = format!("account-{stream}");
        let versions: Vec<u64> = imported
            .iter()
            .filter(|e| e.stream_id.as_str() == id)
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
    // Again: nothing more.
    let out = es(&["--db", text(&fresh), "import", "--renumber", text(&salvage)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 events imported"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_salvage_of_a_sound_store_is_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = store(dir.path());
    let plain = es(&["export", text(&db)]);
    assert!(plain.status.success());
    let salvage = es(&["export", "--salvage", text(&db)]);
    assert_eq!(salvage.status.code(), Some(0), "{}", stderr(&salvage));
    assert_eq!(stdout(&salvage), stdout(&plain));
    assert_eq!(
        stderr(&salvage).trim(),
        "salvage: 1200 events exported; nothing skipped"
    );
    let out = es(&["verify", text(&db)]);
    assert!(out.status.success(), "{}", stdout(&out));
    // --report needs --salvage.
    assert_eq!(
        es(&["export", "--report", "r.json", text(&db)])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn an_empty_file_is_refused_as_perhaps_a_truncated_copy() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("copy.db");
    std::fs::write(&empty, b"").unwrap();
    for args in [&["verify"][..], &["export", "--salvage"], &["streams"]] {
        let mut args = args.to_vec();
        args.push(text(&empty));
        let out = es(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(stderr(&out).contains("truncated copy"), "{}", stderr(&out));
    }
    let file = dir.path().join("none.jsonl");
    std::fs::write(&file, "").unwrap();
    let out = es(&["--db", text(&empty), "import", text(&file)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("truncated copy"), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
}
