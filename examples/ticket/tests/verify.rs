//! `ticket verify`, the replay check: clean on what this build wrote; on a
//! file with an event a newer build wrote, a payload that no longer
//! matches, and a snapshot that disagrees with its events, it lists each
//! with its stream and version, exits with 1, and writes nothing. Then the
//! audit chain: its head on a clean file; on a file whose event was edited
//! behind the store's back (its checksum resealed, so the replay check
//! sees nothing), the position, and exit 1; a kept head checked with
//! `--head`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{NewEvent, Snapshot};
use es_sqlite::SqliteStore;
use es_sqlite::rusqlite;

fn verify(db: &Path) -> Output {
    verify_with(db, &[])
}

fn verify_with(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticket"))
        .arg("--db")
        .arg(db)
        .arg("verify")
        .args(args)
        .output()
        .unwrap()
}

/// The audit chain's head of the file, as `ticket verify` prints it.
fn head(db: &Path) -> String {
    let store = SqliteStore::open(db).unwrap();
    block_on(store.head()).unwrap().to_string()
}

fn digest(path: &Path) -> (u64, u32) {
    let bytes = std::fs::read(path).unwrap();
    (bytes.len() as u64, crc32fast::hash(&bytes))
}

/// Two tickets as this build writes them.
fn tickets(db: &Path) -> SqliteStore {
    let store = SqliteStore::open(db).unwrap();
    let tickets = es_core::blocking::Repository::<ticket::Ticket, _>::new(store.clone());
    for id in ["1", "2"] {
        tickets
            .execute(id, |t| t.open("printer", "ada@example.com"))
            .unwrap();
        tickets
            .execute(id, |t| t.add_message("it is on fire", "customer"))
            .unwrap();
    }
    store
}

#[test]
fn a_store_this_build_wrote_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    drop(tickets(&db));
    let head = head(&db);
    assert!(head.starts_with("4:"), "{head}");
    let out = verify(&db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "2 streams, 4 events and 0 snapshots replayed: no findings\n\
             audit chain: 4 events verified, head {head}\n"
        )
    );
}

#[test]
fn each_problem_is_listed_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    {
        let store = tickets(&db);
        let one = StreamId::new("ticket-1").unwrap();
        let two = StreamId::new("ticket-2").unwrap();
        let newer = NewEvent::new("ticket", "ticket-archived", 1, r#"{"shelf":"B"}"#);
        block_on(store.append(&one, ExpectedVersion::Exact(2), vec![newer])).unwrap();
        let garbled = NewEvent::new("ticket", "message-added", 1, r#"{"body":7}"#);
        block_on(store.append(&two, ExpectedVersion::Exact(2), vec![garbled])).unwrap();
        // A snapshot of ticket 2 at version 1 that says it has 5 messages.
        let state = serde_json::json!({
            "status": "Open", "title": "printer", "escalated": false,
            "messages": 5, "customer_waiting": false,
        });
        block_on(store.save_snapshot(Snapshot {
            stream_id: two,
            aggregate_type: "ticket".into(),
            version: 1,
            schema_version: 1,
            state: serde_json::to_vec(&state).unwrap(),
            taken_at: Timestamp::now(),
        }))
        .unwrap();
    }
    let head = head(&db);
    let before = digest(&db);
    let out = verify(&db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // The README shows this output (the head shortened).
    assert_eq!(
        stdout,
        format!(
            "2 streams, 6 events and 1 snapshot replayed: 3 findings\n  \
             ticket-1 version 3: `ticket-archived` version 1 does not decode: \
             unknown event `ticket-archived` (schema version 1)\n  \
             ticket-2 version 1: the snapshot differs from the events: \
             `/messages`: snapshot 5, events 0\n  \
             ticket-2 version 3: `message-added` version 1 does not decode: \
             payload of event `message-added` version 1 does not match its type: \
             invalid type: integer `7`, expected a string at line 1 column 9\n\
             audit chain: 6 events verified, head {head}\n"
        )
    );
    assert!(
        stderr.contains("the replay check found 3 problems"),
        "{stderr}"
    );
    assert_eq!(digest(&db), before, "nothing was written to the file");
}

/// The row checksum es-sqlite keeps in `events.checksum` (the format of
/// `es-sqlite/src/checksum.rs`, restated), for a row without an
/// occurred-at time: what someone editing the file on purpose computes
/// again, so that reads find nothing wrong.
#[allow(clippy::cast_possible_wrap)]
fn reseal(conn: &rusqlite::Connection, position: i64) {
    let (pk, version, id, recorded, name, schema, payload, metadata): (
        i64,
        i64,
        Vec<u8>,
        i64,
        String,
        i64,
        String,
        Option<String>,
    ) = conn
        .query_row(
            "SELECT stream_pk, version, event_id, recorded_at, name, schema_version, payload, \
             metadata FROM events WHERE position = ?1 AND occurred_at IS NULL",
            [position],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .unwrap();
    let meta = metadata.as_deref().unwrap_or_default().as_bytes();
    let mut header = Vec::with_capacity(80);
    for field in [
        pk,
        version,
        recorded,
        schema,
        name.len() as i64,
        payload.len() as i64,
        meta.len() as i64,
        i64::from(metadata.is_some()),
    ] {
        header.extend_from_slice(&field.to_le_bytes());
    }
    header.extend_from_slice(&id);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(name.as_bytes());
    crc.update(payload.as_bytes());
    crc.update(meta);
    conn.execute(
        "UPDATE events SET checksum = ?1 WHERE position = ?2",
        [i64::from(crc.finalize()), position],
    )
    .unwrap();
}

/// Edits the message at `position` behind the store's back: the
/// append-only trigger dropped, the checksum resealed.
fn edit_message(db: &Path, position: i64, body: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("DROP TRIGGER events_are_never_changed")
        .unwrap();
    let payload = serde_json::json!({"body": body, "by": "customer"}).to_string();
    let edited = conn
        .execute(
            "UPDATE events SET payload = ?1 WHERE position = ?2 AND name = 'message-added'",
            rusqlite::params![payload, position],
        )
        .unwrap();
    assert_eq!(edited, 1);
    reseal(&conn, position);
}

#[test]
fn an_event_edited_behind_the_stores_back_fails_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    drop(tickets(&db));
    // Ticket 1's message is at position 2.
    edit_message(&db, 2, "it was never on fire");
    let before = digest(&db);
    let out = verify(&db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "2 streams, 4 events and 0 snapshots replayed: no findings\n\
         audit chain: broken at position 2: the event was changed after it was written\n"
    );
    assert!(
        stderr.contains("error: the audit chain does not verify"),
        "{stderr}"
    );
    assert_eq!(digest(&db), before, "nothing was written to the file");
}

#[test]
fn a_kept_head_is_checked_with_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    let store = tickets(&db);
    let kept = block_on(store.head()).unwrap().to_string();
    let tickets = es_core::blocking::Repository::<ticket::Ticket, _>::new(store);
    tickets
        .execute("1", |t| t.add_message("still on fire", "customer"))
        .unwrap();
    drop(tickets);
    let out = verify_with(&db, &["--head", &kept]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with(&format!(
            "kept head {kept}: nothing at or before it changed\n"
        )),
        "{stdout}"
    );
    // An edit before the kept head.
    edit_message(&db, 4, "fixed");
    let out = verify_with(&db, &["--head", &kept]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.ends_with(&format!(
            "audit chain: broken at position 4: the event was changed after it was written\n\
             kept head {kept}: broken at position 4: the event was changed after it was written\n"
        )),
        "{stdout}"
    );
    // A head that is not one.
    let out = verify_with(&db, &["--head", "4:beef"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("64 hexadecimal digits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
