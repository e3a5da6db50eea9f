//! `SqliteStore::projections`: every projection's checkpoint and lag (read
//! models beside the events file, inline read models, the checkpoint
//! store), read from a store opened read-only without creating or
//! changing a byte.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common/bank.rs"]
mod bank;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bank::{Balances, Deposited, REFUSED, deposited, noted, withdrawn};
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{BoxError, CheckpointStore, NewEvent, RecordedEvent};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{
    OnError, ProjectionKind, ProjectionStatus, ProjectionsError, ReadModel, ReadModels, RunOptions,
    SqliteStore,
};

/// Deposits, refusing those of [`REFUSED`]: with the default
/// `OnError::Stop`, its runner stops there and never serves.
#[derive(Projection, Default)]
#[projection(name = "strict-deposits", events(Deposited), context = Connection)]
struct StrictDeposits;

impl ReadModel for StrictDeposits {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch("CREATE TABLE deposits (position INTEGER PRIMARY KEY)")
    }
}

impl Handle<Deposited, Connection> for StrictDeposits {
    fn handle(&mut self, db: &Connection, e: &Envelope<Deposited>) -> Result<(), BoxError> {
        if e.event.amount == REFUSED {
            return Err("refused".into());
        }
        db.execute(
            "INSERT INTO deposits VALUES (?1)",
            [i64::try_from(e.position)?],
        )?;
        Ok(())
    }
}

/// How many deposits there are: an inline read model.
#[derive(Projection, Default)]
#[projection(name = "deposit-count", version = 2, events(Deposited), context = Connection)]
struct DepositCount;

impl ReadModel for DepositCount {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(
            "CREATE TABLE deposit_count (n INTEGER NOT NULL); INSERT INTO deposit_count VALUES (0)",
        )
    }
}

impl Handle<Deposited, Connection> for DepositCount {
    fn handle(&mut self, db: &Connection, _: &Envelope<Deposited>) -> Result<(), BoxError> {
        db.execute("UPDATE deposit_count SET n = n + 1", [])?;
        Ok(())
    }
}

fn append(store: &SqliteStore, stream: &str, events: Vec<NewEvent>) -> u64 {
    let stream = StreamId::new(stream).unwrap();
    let done = block_on(store.append(&stream, ExpectedVersion::Any, events)).unwrap();
    done.last_position.unwrap()
}

fn all(store: &SqliteStore) -> Vec<RecordedEvent> {
    block_on(async {
        let mut all = store.read_all(1);
        let mut events = Vec::new();
        while let Some(e) = es_core::store::next(&mut all).await {
            events.push(e.unwrap());
        }
        events
    })
}

use es_sqlite::testing::file_digests as files;

/// A store with each kind of projection, each behind the head:
///
/// - `balances` (read model, parks refused deposits): positions 1..=5 taken,
///   one parked, serving;
/// - `strict-deposits` (read model): stopped by the refused deposit
///   (position 4) while catching up, at 1 (the deposit before), so never
///   served;
/// - `deposit-count` (inline, version 2): moved by every append of a process
///   that registers it, up to 7;
/// - `mailer` (checkpoint store): at 2.
///
/// The head is 8, appended by a process without the inline model.
fn store_with_every_kind(dir: &Path) -> PathBuf {
    let path = dir.join("events.db");
    let store = SqliteStore::options()
        .inline(DepositCount)
        .open(&path)
        .unwrap();
    append(&store, "a-1", vec![deposited(5), noted(), withdrawn(2)]);
    append(&store, "a-2", vec![deposited(REFUSED)]);
    let models = ReadModels::open(&store).unwrap();
    let parking = RunOptions::new().on_error(OnError::Park);
    let balances = models
        .start_with(Balances { refuse: true }, parking)
        .unwrap();
    let strict = models.start(StrictDeposits).unwrap();
    let five = append(&store, "a-2", vec![deposited(1)]);
    block_on(balances.wait_for(five)).unwrap();
    balances.stop().unwrap();
    assert!(
        block_on(strict.wait_for(five)).is_err(),
        "strict stops at 4"
    );
    drop(strict);
    block_on(store.save_checkpoint("mailer", 2)).unwrap();
    append(&store, "a-3", vec![deposited(2), withdrawn(1)]);
    drop(models);
    drop(store);
    let plain = SqliteStore::open(&path).unwrap();
    append(&plain, "a-3", vec![withdrawn(1)]);
    drop(plain);
    path
}

/// Every file of `before` is in `after` with the same bytes, and `after`
/// has no other file but SQLite's companions of a WAL database, which any
/// reader of one makes when they are missing: an empty `-wal`, and the
/// `-shm` index of it (no data of the database is in either).
fn assert_unchanged(
    before: &BTreeMap<PathBuf, (usize, u32)>,
    after: &BTreeMap<PathBuf, (usize, u32)>,
) {
    for (path, file) in before {
        assert_eq!(after.get(path), Some(file), "{} changed", path.display());
    }
    for (path, (len, _)) in after {
        if before.contains_key(path) {
            continue;
        }
        let name = path.to_string_lossy();
        let companion = (name.ends_with("-wal") && *len == 0) || name.ends_with("-shm");
        assert!(companion, "{name} was created");
        let db = name.trim_end_matches("-wal").trim_end_matches("-shm");
        assert!(before.contains_key(Path::new(db)), "{name} of no database");
    }
}

fn find<'a>(listed: &'a [ProjectionStatus], name: &str) -> &'a ProjectionStatus {
    listed
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} is listed: {listed:#?}"))
}

#[test]
fn lists_read_models_inline_models_and_checkpoints_with_their_lag() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_with_every_kind(dir.path());
    let store = SqliteStore::options().read_only().open(&path).unwrap();
    let listed = store.projections().unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["balances", "strict-deposits", "deposit-count", "mailer"],
        "read models, then inline models, then checkpoints"
    );
    let models_dir = dir.path().join("events.read-models");

    let balances = find(&listed, "balances");
    assert_eq!(
        balances.kind,
        ProjectionKind::ReadModel {
            version: 1,
            generation: 0,
            serving: true,
            rebuild_for: None,
            file: models_dir.join("balances.v1.db"),
        }
    );
    assert_eq!((balances.position, balances.head), (5, 8));
    assert_eq!((balances.lag_events(), balances.parked), (3, 1));
    assert!(!balances.caught_up());

    let strict = find(&listed, "strict-deposits");
    assert!(
        matches!(
            strict.kind,
            ProjectionKind::ReadModel {
                version: 1,
                serving: false,
                ..
            }
        ),
        "{strict:?}"
    );
    assert_eq!(
        (strict.position, strict.lag_events(), strict.parked),
        (1, 7, 0),
        "the deposit before the refused one is the last it took"
    );

    let inline = find(&listed, "deposit-count");
    assert_eq!(inline.kind, ProjectionKind::Inline { version: 2 });
    assert_eq!((inline.position, inline.lag_events()), (7, 1));

    let mailer = find(&listed, "mailer");
    assert_eq!(mailer.kind, ProjectionKind::Checkpoint);
    assert_eq!((mailer.position, mailer.lag_events()), (2, 6));

    // The lag in time: from the last event taken to the head's, as recorded.
    let events = all(&store);
    let at = |position: u64| events[usize::try_from(position).unwrap() - 1].recorded_at;
    for status in &listed {
        let expected = at(8).as_unix_micros() - at(status.position).as_unix_micros();
        assert_eq!(status.lag_micros, Some(expected), "{status:?}");
    }
}

#[test]
fn listing_changes_no_byte_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_with_every_kind(dir.path());
    let before = files(dir.path());
    let store = SqliteStore::options().read_only().open(&path).unwrap();
    for _ in 0..2 {
        assert_eq!(store.projections().unwrap().len(), 4);
    }
    drop(store);
    assert_unchanged(&before, &files(dir.path()));

    // With no directory of read models, there are none, and none is made.
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    append(&store, "a-1", vec![deposited(1)]);
    drop(store);
    let store = SqliteStore::options().read_only().open(&path).unwrap();
    assert_eq!(store.projections().unwrap(), []);
    assert!(!other.path().join("events.read-models").exists());
}

#[test]
fn a_caught_up_model_has_no_lag_and_one_that_took_nothing_no_lag_in_time() {
    let store = SqliteStore::open_temporary().unwrap();
    let models = ReadModels::open(&store).unwrap();
    let last = append(&store, "a-1", vec![deposited(1), deposited(2)]);
    let runner = models.start(Balances::default()).unwrap();
    block_on(runner.wait_for(last)).unwrap();
    runner.stop().unwrap();
    block_on(store.save_checkpoint("fresh", 0)).unwrap();
    let listed = store.projections().unwrap();
    let balances = find(&listed, "balances");
    assert!(balances.caught_up());
    assert_eq!((balances.lag_events(), balances.lag_micros), (0, Some(0)));
    let fresh = find(&listed, "fresh");
    assert_eq!((fresh.lag_events(), fresh.lag_micros), (2, None));
}

#[test]
fn a_foreign_file_named_as_a_model_is_an_error_and_others_are_passed_by() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    let models_dir = dir.path().join("events.read-models");
    std::fs::create_dir(&models_dir).unwrap();
    // Not named as a model file: not looked at.
    std::fs::write(models_dir.join("notes.txt"), "hello").unwrap();
    // Named as one, but still empty (a runner is creating it): passed by.
    std::fs::write(models_dir.join("being-made.v1.db"), "").unwrap();
    assert_eq!(store.projections().unwrap(), []);

    let foreign = models_dir.join("other-app.v1.db");
    let conn = Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE t (x)").unwrap();
    drop(conn);
    let listed = store.projections();
    assert!(
        matches!(&listed, Err(ProjectionsError::Foreign { path, .. }) if *path == foreign),
        "{listed:?}"
    );
}

#[test]
fn a_model_file_under_another_name_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
    append(&store, "a-1", vec![deposited(1)]);
    let models = ReadModels::open(&store).unwrap();
    block_on(models.catch_up(Balances::default())).unwrap();
    let copied = models.dir().join("renamed.v1.db");
    std::fs::copy(models.model_path("balances", 1), &copied).unwrap();
    let listed = store.projections();
    assert!(
        matches!(&listed, Err(ProjectionsError::Foreign { path, detail })
            if *path == copied && detail.contains("balances")),
        "{listed:?}"
    );
}
