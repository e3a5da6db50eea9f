//! The `es` binary against stores written with the Ticket example's domain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use es_core::EventStore;
use es_core::blocking::{Repository, block_on};
use es_sqlite::SqliteStore;
use ticket::Ticket;

mod common;
use common::{all, stderr, stdout, tickets};

/// Runs `es --db DB ARGS...`.
fn es(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("the es binary runs")
}

#[test]
fn streams_lists_each_stream() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let out = es(&db, &["streams"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("STREAM"), "{text}");
    assert!(text.contains("t-2") && text.contains("ticket"), "{text}");
    let json = es(&db, &["--json", "streams"]);
    let rows: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["stream"], "ticket-t-2");
    assert_eq!(rows[1]["aggregate_type"], "ticket");
    assert_eq!(rows[1]["events"], 3);
    assert!(rows[1]["last_recorded_at"].is_string());
}

#[test]
fn events_prints_a_range_with_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let out = es(
        &db,
        &["--json", "events", "ticket-t-2", "--from", "2", "--to", "3"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["version"], 2);
    assert_eq!(lines[1]["name"], "ticket-escalated");
    assert_eq!(lines[1]["metadata"]["actor"], "agent-7");
    assert!(lines[1]["payload"].is_object());
    let text = stdout(&es(&db, &["events", "ticket-t-2"]));
    assert!(
        text.contains("ticket-opened") && text.contains("payload"),
        "{text}"
    );
    let missing = es(&db, &["events", "ticket-t-9"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
}

#[test]
fn types_counts_stored_types() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let out = es(&db, &["--json", "types"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let types: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let opened = types.iter().find(|t| t["name"] == "ticket-opened").unwrap();
    assert_eq!(opened["count"], 3);
    assert_eq!(opened["aggregate_type"], "ticket");
    assert!(stdout(&es(&db, &["types"])).contains("message-added"));
}

#[test]
fn verify_is_clean_then_finds_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let out = es(&db, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("chain") && text.contains("8 events verified"),
        "{text}"
    );

    let head = block_on(SqliteStore::open(&db).unwrap().head()).unwrap();
    let kept = head.to_string();
    assert_eq!(es(&db, &["verify", "--head", &kept]).status.code(), Some(0));
    let bad_head = es(&db, &["verify", "--head", "nonsense"]);
    assert_eq!(bad_head.status.code(), Some(2));

    // Someone edits a payload behind the store's back.
    let conn = es_sqlite::rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS events_are_never_changed; \
         DROP TRIGGER IF EXISTS events_are_never_deleted;",
    )
    .unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('events')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(columns.iter().any(|c| c == "payload"), "{columns:?}");
    conn.execute(
        "UPDATE events SET payload = replace(payload, 'smokes', 'smoked') WHERE position = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let out = es(&db, &["--json", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let checks: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(checks.iter().any(|c| c["ok"] == false), "{checks:?}");
}

#[test]
fn export_then_import_gives_identical_events_and_repeats_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let file = dir.path().join("all.jsonl");
    let out = es(&db, &["export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 8);

    let copy = dir.path().join("copy.db");
    let out = es(&copy, &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("8 events imported"),
        "{}",
        stdout(&out)
    );
    let (from, to) = (all(&db), all(&copy));
    assert_eq!(from.len(), to.len());
    for (a, b) in from.iter().zip(&to) {
        assert_eq!(a.stream_id, b.stream_id);
        assert_eq!(a.aggregate_type, b.aggregate_type);
        assert_eq!(a.version, b.version);
        assert_eq!(a.position, b.position);
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.occurred_at, b.occurred_at);
        assert_eq!(a.name, b.name);
        assert_eq!(a.schema_version, b.schema_version);
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.payload(), b.payload());
    }

    let again = es(&copy, &["import", file.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("0 events imported, 8 already stored"));
    assert_eq!(all(&copy).len(), 8);
    // The copy decodes with the domain's own types.
    let copied = Repository::<Ticket, _>::new(SqliteStore::open(&copy).unwrap());
    assert_eq!(copied.load("t-2").unwrap().version, 3);
}

/// A stream longer than one append (1,000 events by default) imports in
/// several; it was refused as over the limit.
#[test]
fn a_stream_longer_than_one_append_imports_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("long.db");
    let store = SqliteStore::open(&db).unwrap();
    let stream = es_core::StreamId::new("log-1").unwrap();
    for _ in 0..5 {
        let events = (0..500)
            .map(|n| es_core::NewEvent::new("log", "noted", 1, format!("{{\"n\":{n}}}")))
            .collect();
        block_on(store.append(&stream, es_core::ExpectedVersion::Any, events)).unwrap();
    }
    drop(store);
    let file = dir.path().join("long.jsonl");
    let out = es(&db, &["export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let copy = dir.path().join("copy.db");
    let out = es(&copy, &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2500 events imported"),
        "{}",
        stdout(&out)
    );
    let (from, to) = (all(&db), all(&copy));
    assert_eq!(to.len(), 2500);
    for (a, b) in from.iter().zip(&to) {
        assert_eq!(
            (a.version, a.event_id, a.payload()),
            (b.version, b.event_id, b.payload())
        );
    }
}

/// An event name no store accepts is refused by the check, before anything
/// is written (the T14 import fuzzer found it refused by the store midway).
#[test]
fn t14_an_invalid_event_name_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let exported = stdout(&es(&db, &["export"]));
    let mut lines: Vec<String> = exported.lines().map(str::to_owned).collect();
    lines[6] = lines[6].replacen("\"name\":\"", "\"name\":\"bad`", 1);
    let file = dir.path().join("bad-name.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let copy = dir.path().join("copy.db");
    let out = es(&copy, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 7"), "{}", stderr(&out));
    assert!(!copy.exists(), "nothing is written");
}

#[test]
fn a_bad_line_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let exported = stdout(&es(&db, &["export"]));
    let mut lines: Vec<&str> = exported.lines().collect();
    lines.insert(5, "{\"stream\": \"t-1\", oops");
    let file = dir.path().join("bad.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let copy = dir.path().join("copy.db");
    let out = es(&copy, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 6"), "{}", stderr(&out));
    assert!(!copy.exists(), "nothing is created for a bad file");

    let missing = es(&copy, &["import", "no-such-file.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn a_missing_or_foreign_file_is_exit_3_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    for command in [
        &["streams"][..],
        &["events", "ticket-t-1"],
        &["types"],
        &["verify"],
        &["export"],
        &["tail"],
    ] {
        let out = es(&missing, command);
        assert_eq!(out.status.code(), Some(3), "{command:?}: {}", stderr(&out));
        assert!(!missing.exists(), "{command:?} created the file");
    }
    let foreign = dir.path().join("notes.txt");
    std::fs::write(
        &foreign,
        "not a database at all, but long enough? no.".repeat(40),
    )
    .unwrap();
    let out = es(&foreign, &["streams"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = es(&foreign, &["verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn reading_commands_leave_the_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let before = std::fs::read(&db).unwrap();
    for command in [
        &["streams"][..],
        &["--json", "streams"],
        &["events", "ticket-t-1"],
        &["types"],
        &["verify"],
        &["export"],
    ] {
        let out = es(&db, command);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "{command:?} changed the file"
        );
    }
}

#[test]
fn help_documents_exit_codes_and_sealed_fields() {
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .arg("--help")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("Exit codes") && text.contains("sealed"),
        "{text}"
    );
    for command in [
        "streams",
        "events",
        "types",
        "projections",
        "verify",
        "export",
        "import",
        "tail",
        "serve",
    ] {
        assert!(text.contains(command), "{command} missing from --help");
        let help = Command::new(env!("CARGO_BIN_EXE_es"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(help.status.success());
    }
}

#[test]
fn tail_prints_stored_then_new_events() {
    use std::io::{BufRead, BufReader};

    use es_core::{ExpectedVersion, NewEvent, StreamId};

    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_es"))
        .arg("--db")
        .arg(&db)
        .args(["--json", "tail", "--from", "7"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let position = |line: Option<std::io::Result<String>>| {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap().unwrap()).unwrap();
        line["position"].as_u64().unwrap()
    };
    assert_eq!(position(lines.next()), 7);
    assert_eq!(position(lines.next()), 8);
    let store = SqliteStore::open(&db).unwrap();
    let noted = NewEvent::new("note", "noted", 1, "{}");
    block_on(store.append(
        &StreamId::new("note-1").unwrap(),
        ExpectedVersion::NoStream,
        vec![noted],
    ))
    .unwrap();
    assert_eq!(position(lines.next()), 9);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs `es ARGS...`, with no `--db`.
fn es_args(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es"))
        .args(args)
        .output()
        .expect("the es binary runs")
}

#[test]
fn the_file_is_the_last_argument_or_db_and_both_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let file = db.as_os_str();
    let by_db = stdout(&es(&db, &["--json", "streams"]));
    let out = es_args(&["--json".as_ref(), "streams".as_ref(), file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), by_db);

    // After the command's own arguments, and before its options.
    let out = es_args(&[
        "--json".as_ref(),
        "events".as_ref(),
        "ticket-t-2".as_ref(),
        file,
        "--from".as_ref(),
        "3".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["name"], "ticket-escalated");
    for command in ["types", "verify", "export"] {
        let out = es_args(&[command.as_ref(), file]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        assert_eq!(stdout(&out), stdout(&es(&db, &[command])), "{command}");
    }

    // Both, naming one file: fine; naming two: a usage error, nothing read.
    let out = es(&db, &["streams", db.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let other = dir.path().join("other.db");
    let out = es(&other, &["streams", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--db"), "{}", stderr(&out));
    assert!(!other.exists());

    // Without either: events.db in the current directory.
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .arg("streams")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("events.db"), "{}", stderr(&out));
    std::fs::copy(&db, dir.path().join("events.db")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .args(["--json", "streams"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), by_db);

    // `import` reads its argument and writes the store of --db.
    let exported = dir.path().join("all.jsonl");
    let out = es_args(&[
        "export".as_ref(),
        file,
        "--out".as_ref(),
        exported.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copy = dir.path().join("copy.db");
    let out = es(&copy, &["import", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(all(&copy).len(), 8);
}

#[test]
fn help_shows_the_file_argument() {
    for command in [
        "streams",
        "types",
        "projections",
        "verify",
        "export",
        "tail",
        "serve",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_es"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(text.contains("[FILE]"), "{command}: {text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .args(["events", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("<STREAM> [FILE]"), "{}", stdout(&out));
}

/// `import --shard I/M` imports only the streams of shard I of M, so the
/// exports of a store imported with 0/2 and 1/2 split it into the two
/// shard files of a `ShardedStore`; a shard out of range is a usage error.
#[test]
fn import_with_shard_takes_only_the_streams_of_that_shard() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let file = dir.path().join("all.jsonl");
    let out = es(&db, &["export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shards: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("shard-{i}.db")))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let spec = format!("{i}/2");
        let out = es(shard, &["import", "--shard", &spec, file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("left out"), "{}", stdout(&out));
    }
    let original = all(&db);
    let mut imported = 0;
    for (i, shard) in shards.iter().enumerate() {
        for event in all(shard) {
            assert_eq!(
                es_core::shard::shard_of(&event.stream_id, 2) as usize,
                i,
                "{} in shard {i}",
                event.stream_id
            );
            imported += 1;
        }
    }
    assert_eq!(imported, original.len());
    let sharded = es_core::ShardedStore::new(
        shards
            .iter()
            .map(|s| SqliteStore::open(s).unwrap())
            .collect(),
    )
    .unwrap();
    for event in &original {
        let found = block_on(sharded.find_event(event.event_id))
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.stream_id.clone(), found.version),
            (event.stream_id.clone(), event.version)
        );
    }
    for bad in ["2/2", "1", "a/b", "0/0"] {
        let out = es(
            &shards[0],
            &["import", "--shard", bad, file.to_str().unwrap()],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "--shard {bad}: {}",
            stderr(&out)
        );
    }
}
