//! The deploy check: a database written by a newer build (this test plays
//! it, with a lead event the leads program does not know) makes the
//! program refuse to start, naming the event, and leaves the file as it was;
//! `leads verify` reads it all the same and names the event's stream and
//! version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::NewEvent;
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_sqlite::SqliteStore;

#[test]
fn a_store_written_by_a_newer_build_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leads"))
        .arg("--db")
        .arg(&db)
        .arg("demo")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let store = SqliteStore::open(&db).unwrap();
        let stream = StreamId::new("lead-12").unwrap();
        let newer = NewEvent::new("lead", "lead-merged", 1, r#"{"into":"13"}"#);
        block_on(store.append(&stream, ExpectedVersion::Any, vec![newer])).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leads"))
        .arg("--db")
        .arg(&db)
        .args(["search", "555-2951"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the program refuses to start: {stderr}"
    );
    assert!(
        stderr.contains("`lead-merged` version 1 of aggregate `lead` (1 stored)"),
        "{stderr}"
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "nothing was written to the file"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leads"))
        .arg("--db")
        .arg(&db)
        .arg("verify")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0], "1 stream, 8 events and 0 snapshots replayed: 1 finding",
        "the seed's 7 events and the newer build's"
    );
    assert!(
        lines[1].starts_with("  lead-12 version 8: `lead-merged` version 1 does not decode"),
        "{stdout}"
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "verify wrote nothing either"
    );
}
