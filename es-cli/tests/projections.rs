//! `es projections` against a store of the leads example, whose read
//! models live in `leads.read-models/` beside `leads.db`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use es_core::blocking::block_on;
use es_core::privacy::KeyEncryptionKey;
use es_core::{CheckpointStore, EventStore, Repository, Timestamp};
use es_sqlite::{ReadModels, SqliteStore};
use leads::{AnalysisModel, Lead, LeadSearchModel};

/// Runs `es ARGS...`.
fn es(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es"))
        .args(args)
        .output()
        .expect("the es binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A leads store: lead 12 imported from the seed with both read models
/// caught up (positions 1..=7), then lead 13 imported with only the search
/// model running (8..=14): the analysis model is 7 events behind. A mailer
/// kept its position in the checkpoint store, at 10.
fn leads_store(dir: &Path) -> PathBuf {
    let path = dir.join("leads.db");
    let store = SqliteStore::options()
        .personal_data(KeyEncryptionKey::generate())
        .open(&path)
        .unwrap();
    let leads = Repository::<Lead, _>::new(store.clone());
    block_on(leads::seed::import(&leads, "12")).unwrap();
    let models = ReadModels::open(&store).unwrap();
    block_on(models.catch_up(LeadSearchModel)).unwrap();
    block_on(models.catch_up(AnalysisModel)).unwrap();
    let search = models.start(LeadSearchModel).unwrap();
    block_on(leads::seed::import(&leads, "13")).unwrap();
    block_on(search.wait_for(14)).unwrap();
    search.stop().unwrap();
    block_on(store.save_checkpoint("mailer", 10)).unwrap();
    drop(models);
    drop(store);
    path
}

use es_sqlite::testing::file_digests as files;

#[test]
fn lists_each_read_model_and_checkpoint_with_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let db = leads_store(dir.path());
    let file = db.to_str().unwrap();

    let out = es(&["--json", "projections", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lead-analysis", "lead-search", "mailer"]);

    let (analysis, search, mailer) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(analysis["kind"], "read-model");
    assert_eq!(
        (&analysis["version"], &analysis["generation"]),
        (&1.into(), &0.into())
    );
    assert_eq!(analysis["serving"], true);
    assert_eq!(
        (
            &analysis["position"],
            &analysis["head"],
            &analysis["lag_events"]
        ),
        (&7.into(), &14.into(), &7.into())
    );
    assert_eq!(analysis["parked"], 0);
    let models_dir = dir.path().join("leads.read-models");
    assert_eq!(
        analysis["file"],
        models_dir.join("lead-analysis.v1.db").to_str().unwrap()
    );
    // Its lag in time: the head's recorded time less that of position 7.
    let store = SqliteStore::options().read_only().open(&db).unwrap();
    let recorded = |position: u64| -> Timestamp {
        let mut events = store.read_all(position);
        block_on(es_core::store::next(&mut events))
            .unwrap()
            .unwrap()
            .recorded_at
    };
    let lag = recorded(14).as_unix_micros() - recorded(7).as_unix_micros();
    assert_eq!(analysis["lag_micros"], lag);
    drop(store);

    assert_eq!(search["kind"], "read-model");
    assert_eq!(
        (
            &search["position"],
            &search["lag_events"],
            &search["lag_micros"]
        ),
        (&14.into(), &0.into(), &0.into())
    );
    assert_eq!(mailer["kind"], "checkpoint");
    assert_eq!(
        (&mailer["version"], &mailer["serving"], &mailer["file"]),
        (
            &serde_json::Value::Null,
            &serde_json::Value::Null,
            &serde_json::Value::Null
        )
    );
    assert_eq!(
        (&mailer["position"], &mailer["lag_events"]),
        (&10.into(), &4.into())
    );

    let out = es(&["projections", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "KIND", "VERSION", "POSITION", "HEAD", "LAG", "PARKED", "SERVING"
        ]
    );
    assert!(lines[1].starts_with("lead-analysis"), "{table}");
    assert!(
        lines[1].contains("read model") && lines[1].contains(" 7 (") && lines[1].ends_with("yes"),
        "{table}"
    );
    let search_line: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        search_line,
        [
            "lead-search",
            "read",
            "model",
            "1",
            "14",
            "14",
            "0",
            "0",
            "yes"
        ]
    );
    let mailer_line: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(mailer_line[..2], ["mailer", "checkpoint"], "{table}");
    assert!(lines[3].ends_with('-'), "{table}");
}

#[test]
fn listing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = leads_store(dir.path());
    let before = files(dir.path());
    for args in [
        &["projections", db.to_str().unwrap()][..],
        &["--json", "projections", db.to_str().unwrap()],
    ] {
        let out = es(args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let after = files(dir.path());
    for (path, file) in &before {
        assert_eq!(after.get(path), Some(file), "{} changed", path.display());
    }
    // Reading a database in WAL mode makes SQLite's companions of it when
    // they are missing: an empty log and its index, no data.
    for (path, (len, _)) in &after {
        if !before.contains_key(path) {
            let name = path.to_string_lossy();
            assert!(
                (name.ends_with("-wal") && *len == 0) || name.ends_with("-shm"),
                "{name} was created"
            );
        }
    }
}

#[test]
fn a_store_without_read_models_lists_none_and_creates_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    let store = SqliteStore::open(&db).unwrap();
    let noted = es_core::NewEvent::new("note", "noted", 1, "{}");
    let stream = es_core::StreamId::new("note-1").unwrap();
    block_on(store.append(&stream, es_core::ExpectedVersion::NoStream, vec![noted])).unwrap();
    drop(store);
    let out = es(&["--json", "projections", db.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(!dir.path().join("plain.read-models").exists());
    let missing = dir.path().join("missing.db");
    let out = es(&["projections", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!missing.exists());
}
