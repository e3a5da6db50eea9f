//! Forgetting a lead: `leads forget 12 --reason ..` destroys its keys; its
//! names and phone numbers are gone from `leads search`, from every file of
//! the events and the read models, and read as forgotten in its history;
//! everything else is intact (its status and version, another lead's
//! names). The key-encryption key comes from `LEADS_KEK`, or from the key
//! file made beside the database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use es_core::blocking::{Repository, block_on};
use es_core::prelude::*;
use es_core::privacy::KeyEncryptionKey;
use es_sqlite::{ReadModels, SqliteStore};
use leads::read_models::search;
use leads::{Lead, LeadEvent, LeadSearchModel};

/// Runs the `leads` binary on `db` with `args`, with `LEADS_KEK` set to
/// `kek` or unset: (success, stdout, stderr).
fn run(db: &Path, kek: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_leads"));
    command.arg("--db").arg(db).args(args);
    match kek {
        Some(kek) => command.env("LEADS_KEK", kek),
        None => command.env_remove("LEADS_KEK"),
    };
    let out = command.output().expect("the leads binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir`, and in its subdirectories.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// How many times `needle` occurs in the bytes of the files under `dir`.
fn occurrences(dir: &Path, needle: &str) -> usize {
    files_under(dir)
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).unwrap();
            bytes
                .windows(needle.len())
                .filter(|w| *w == needle.as_bytes())
                .count()
        })
        .sum()
}

/// Lead 12's personal data, as the seed has it.
const LEAD_12: [&str; 5] = ["Casey", "David", "Davis", "555-2951", "555-8101"];

#[test]
fn forgetting_lead_12_takes_its_names_out_of_search_and_every_file_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let (ok, _, err) = run(&db, None, &["demo"]);
    assert!(ok, "{err}");

    // The key-encryption key was made beside the database, owner-only.
    let kek_file = dir.path().join("leads.db.kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let kek = KeyEncryptionKey::from_hex(&std::fs::read_to_string(&kek_file).unwrap()).unwrap();
    // Another lead, through the library, with the same key.
    {
        let store = SqliteStore::options()
            .personal_data(kek.clone())
            .open(&db)
            .unwrap();
        Repository::<Lead, _>::new(store)
            .execute("13", |l| l.initialize("Avery", "Quinn", "555-0113"))
            .unwrap();
    }
    let (ok, out, err) = run(&db, None, &["search", "casey"]);
    assert!(ok, "{err}");
    assert!(out.contains("lead 12: Casey Davis, 555-8101"), "{out}");
    // The events hold them sealed; the search model's file in the clear.
    let events_db = std::fs::read(&db).unwrap();
    assert!(!events_db.windows(5).any(|w| w == b"Casey"));
    for value in LEAD_12 {
        assert!(occurrences(dir.path(), value) > 0, "{value}");
    }

    let (ok, out, err) = run(
        &db,
        None,
        &["forget", "12", "--reason", "asked to be forgotten"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("== lead 12 forgotten: 1 key(s) destroyed"),
        "{out}"
    );

    // Gone from search, by any value it ever had; the other lead is found.
    for value in LEAD_12 {
        let (ok, out, err) = run(&db, None, &["search", value]);
        assert!(ok, "{err}");
        assert_eq!(out, format!("== leads that have or had {value:?}: none\n"));
    }
    let (ok, out, err) = run(&db, None, &["search", "avery"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("lead 13: Avery Quinn, 555-0113 (version 1)"),
        "{out}"
    );
    // Gone from every file: the events and their log, the keys, the read
    // models (the other lead's name is still there: the scan finds it).
    for value in LEAD_12 {
        assert_eq!(
            occurrences(dir.path(), value),
            0,
            "{value} remains in {:?}",
            files_under(dir.path())
        );
    }
    assert!(occurrences(dir.path(), "Avery") > 0);

    // Its history reads every personal field as forgotten and keeps the
    // rest; its state is intact.
    let (ok, out, err) = run(&db, None, &["history", "12"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 8, "a header and seven events: {out}");
    assert!(
        out.contains("(forgotten) (forgotten), (forgotten) (why: seed 004)"),
        "{out}"
    );
    assert!(out.contains("payment-confirmed@v1"), "{out}");
    let (ok, out, err) = run(&db, None, &["show", "12"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("lead 12 at version 7") && out.contains("status:    converted"),
        "{out}"
    );

    lead_12_reads_as_forgotten_through_the_library(&db, kek);
}

/// Lead 12's events read every personal field as forgotten, lead 13's as
/// known; the search model agrees with the per-stream form; the
/// forgetting is recorded with who and why.
fn lead_12_reads_as_forgotten_through_the_library(db: &Path, kek: KeyEncryptionKey) {
    let store = SqliteStore::options().personal_data(kek).open(db).unwrap();
    let leads = Repository::<Lead, _>::new(store.clone());
    let trail = leads.history("12").unwrap();
    assert_eq!(trail.len(), 7);
    let Decoded::Event(LeadEvent::LeadInitialized(initialized)) = &trail[0].event else {
        panic!("{:?}", trail[0].event);
    };
    assert_eq!(initialized.first_name, Personal::Forgotten);
    assert_eq!(initialized.last_name, Personal::Forgotten);
    assert_eq!(initialized.phone_number, Personal::Forgotten);
    let Decoded::Event(LeadEvent::LeadInitialized(other)) = &leads.history("13").unwrap()[0].event
    else {
        panic!("lead 13 is initialized");
    };
    assert_eq!(other.first_name, Personal::known("Avery".to_owned()));
    // The read model agrees with the lead's events folded now.
    let per_stream = block_on(search::project(&store, "12")).unwrap().unwrap();
    assert!(per_stream.first_names.is_empty() && per_stream.phone_numbers.is_empty());
    assert_eq!(per_stream.version, 7);
    let models = ReadModels::open(&store).unwrap();
    block_on(models.catch_up(LeadSearchModel)).unwrap();
    assert_eq!(search::lookup(&models, "12").unwrap(), Some(per_stream));

    // The forgetting is recorded, with who and why, and no personal data.
    let mut recorded = store.read_stream(
        &StreamId::new("es.subject-lead-12").unwrap(),
        es_core::ReadRange::all(),
    );
    let forgetting = block_on(es_core::store::next(&mut recorded))
        .unwrap()
        .unwrap();
    assert_eq!(forgetting.name, "es.subject-forgotten");
    assert_eq!(forgetting.metadata.actor.as_deref(), Some("leads"));
    assert_eq!(
        forgetting.metadata.reason.as_deref(),
        Some("asked to be forgotten")
    );
    assert!(block_on(es_core::store::next(&mut recorded)).is_none());
}

#[test]
fn the_key_encryption_key_comes_from_leads_kek_when_it_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let kek = KeyEncryptionKey::generate();
    let (ok, _, err) = run(&db, Some(&kek.to_hex()), &["demo"]);
    assert!(ok, "{err}");
    assert!(
        !dir.path().join("leads.db.kek").exists(),
        "no key file made"
    );

    // Another key does not open the keys; a malformed one is named.
    let other = KeyEncryptionKey::generate();
    let (ok, _, err) = run(&db, Some(&other.to_hex()), &["show", "12"]);
    assert!(!ok);
    assert!(err.contains("does not open"), "{err}");
    let (ok, _, err) = run(&db, Some("abc"), &["show", "12"]);
    assert!(!ok);
    assert!(err.contains("LEADS_KEK"), "{err}");
    let (ok, out, err) = run(&db, Some(&kek.to_hex()), &["search", "555-2951"]);
    assert!(ok, "{err}");
    assert!(out.contains("lead 12"), "{out}");

    let (ok, out, _) = run(&db, None, &["--help"]);
    assert!(ok);
    assert!(
        out.contains("LEADS_KEK") && out.contains("keeps the key-encryption key elsewhere"),
        "{out}"
    );
}
