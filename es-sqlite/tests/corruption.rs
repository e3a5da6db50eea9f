//! RELIABILITY T8: single-byte corruption of the database file and of its
//! write-ahead log. A populated store (several streams, a few hundred
//! events, snapshots; part checkpointed into the database file, the rest in
//! the `-wal`) is copied while open; each iteration flips one random byte of
//! one copy, opens it, and reads everything back: `read_all`, every stream
//! through the repository, `stream_version`, `last_position` and snapshots.
//! Every outcome must be `Ok` or a typed error; no thread may panic, and no
//! reader or writer thread may die (which would show as `Error::Closed`).
//! How many flips were refused, detected, silent or harmless is printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Rng, scratch_dir};
use es_core::prelude::*;
use es_core::store::next;
use es_core::{Error, RecordedEvent, Snapshot};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "deposited")]
struct Deposited {
    amount: u64,
    memo: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "withdrawn")]
struct Withdrawn {
    amount: u64,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "account", events(Deposited, Withdrawn), snapshot(every = 10))]
struct Account {
    balance: i64,
    memos: Vec<String>,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += i64::try_from(e.amount).unwrap_or(i64::MAX);
        self.memos.push(e.memo.clone());
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance -= i64::try_from(e.amount).unwrap_or(i64::MAX);
    }
}

const ACCOUNTS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// Every panic on one of the store's threads (named `es-sqlite-*`); a
/// panic on a test's own thread fails that test by itself.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if thread.name().is_some_and(|n| n.starts_with("es-sqlite")) {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default(info);
    }));
}

/// An account's balance, memos and version.
type State = (i64, Vec<String>, u64);

/// Everything a reader can see of a store; errors as text.
#[derive(Debug, PartialEq)]
struct Observed {
    all: Result<Vec<RecordedEvent>, String>,
    accounts: Vec<Result<State, String>>,
    loaded: Vec<Result<State, String>>,
    versions: Vec<Result<u64, String>>,
    snapshots: Vec<Result<Option<Snapshot>, String>>,
    last_position: Result<u64, String>,
}

impl Observed {
    fn has_error(&self) -> bool {
        self.all.is_err()
            || self.last_position.is_err()
            || self.accounts.iter().any(Result::is_err)
            || self.loaded.iter().any(Result::is_err)
            || self.versions.iter().any(Result::is_err)
            || self.snapshots.iter().any(Result::is_err)
    }
}

/// Fails the test on an error that is not typed as a store error: a dead
/// thread shows as `Error::Closed`.
fn typed(error: &Error) -> String {
    assert!(
        !matches!(error, Error::Closed),
        "a store thread died: {error:?}"
    );
    error.to_string()
}

async fn observe(store: &SqliteStore) -> Observed {
    let mut all = Ok(Vec::new());
    let mut events = store.read_all(0);
    while let Some(event) = next(&mut events).await {
        match (event, &mut all) {
            (Ok(e), Ok(list)) => list.push(e),
            (Err(e), _) => {
                all = Err(typed(&e));
                break;
            }
            (Ok(_), Err(_)) => unreachable!(),
        }
    }
    let accounts_repo = Repository::<Account, _>::new(store.clone());
    let mut accounts = Vec::new();
    let mut loaded = Vec::new();
    let mut versions = Vec::new();
    let mut snapshots = Vec::new();
    let end_of_time = Timestamp::from_unix_micros(i64::MAX);
    for id in ACCOUNTS {
        let stream = accounts_repo.stream_id(id).unwrap();
        // Every event replayed (reading as of a time skips snapshots), and
        // the usual load from the latest snapshot.
        accounts.push(
            accounts_repo
                .load_as_of(id, end_of_time)
                .await
                .map(|a| (a.balance, a.memos.clone(), a.version))
                .map_err(|e| typed(&e)),
        );
        loaded.push(
            accounts_repo
                .load(id)
                .await
                .map(|a| (a.balance, a.memos.clone(), a.version))
                .map_err(|e| typed(&e)),
        );
        versions.push(store.stream_version(&stream).await.map_err(|e| typed(&e)));
        snapshots.push(store.load_snapshot(&stream).await.map_err(|e| typed(&e)));
    }
    Observed {
        all,
        accounts,
        loaded,
        versions,
        snapshots,
        last_position: store.last_position().await.map_err(|e| typed(&e)),
    }
}

/// Populates a store: half the events checkpointed into the database file,
/// the other half left in the `-wal`. Returns the copies of both files
/// taken while the store is open.
async fn populated_copy(work: &Path, pristine: &Path) -> (PathBuf, PathBuf) {
    let db = work.join("events.db");
    let store = SqliteStore::options().readers(1).open(&db).unwrap();
    let accounts = Repository::<Account, _>::new(store.clone());
    let mut rng = Rng::new(7);
    for round in 0..300 {
        let id = ACCOUNTS[usize::try_from(rng.below(6)).unwrap()];
        let amount = rng.below(1_000);
        if rng.below(4) == 0 {
            accounts
                .execute(id, |_| Withdrawn { amount })
                .await
                .unwrap();
        } else {
            let memo = format!("deposit {round} of {amount} \u{e9}\u{1f4b0}");
            accounts
                .execute(id, |_| Deposited {
                    amount,
                    memo: memo.clone(),
                })
                .await
                .unwrap();
        }
        if round == 150 {
            let conn = rusqlite::Connection::open(&db).unwrap();
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            assert_eq!(busy, 0, "the checkpoint ran");
        }
    }
    let wal = work.join("events.db-wal");
    let wal_len = std::fs::metadata(&wal).unwrap().len();
    assert!(
        wal_len > 50_000,
        "the log holds the second half ({wal_len} bytes)"
    );
    let copy_db = pristine.join("events.db");
    let copy_wal = pristine.join("events.db-wal");
    std::fs::copy(&db, &copy_db).unwrap();
    std::fs::copy(&wal, &copy_wal).unwrap();
    drop((accounts, store));
    (copy_db, copy_wal)
}

#[derive(Default, Debug)]
struct Counts {
    refused_at_open: usize,
    detected: usize,
    /// Read back without an error, but not as the baseline.
    silent: usize,
    /// Of those: only a suffix of the commits is missing, as after a crash
    /// before them (a damaged `-wal` frame ends the log there).
    lost_suffix: usize,
    harmless: usize,
}

/// Whether `seen` is the baseline with its last commits missing: every
/// event read is the baseline's, in order, and nothing else differs but
/// what those missing commits held.
fn lost_a_suffix(seen: &Observed, baseline: &Observed) -> bool {
    let (Ok(seen), Ok(all)) = (&seen.all, &baseline.all) else {
        return false;
    };
    seen.len() < all.len() && all[..seen.len()] == seen[..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_single_byte_flips_in_the_db_are_detected_and_in_the_wal_lose_only_a_suffix() {
    count_panics();
    let work = scratch_dir();
    let pristine = scratch_dir();
    let (db, wal) = populated_copy(work.path(), pristine.path()).await;
    let db_bytes = std::fs::read(&db).unwrap();
    let wal_bytes = std::fs::read(&wal).unwrap();

    let open = |dir: &Path| {
        SqliteStore::options()
            .readers(1)
            .open(dir.join("events.db"))
    };

    // The copy as it is: the baseline every flip is compared with.
    let baseline = {
        let dir = scratch_dir();
        std::fs::write(dir.path().join("events.db"), &db_bytes).unwrap();
        std::fs::write(dir.path().join("events.db-wal"), &wal_bytes).unwrap();
        let store = open(dir.path()).unwrap();
        observe(&store).await
    };
    assert!(!baseline.has_error(), "{baseline:?}");
    assert_eq!(baseline.all.as_ref().unwrap().len(), 300);
    assert!(
        baseline
            .snapshots
            .iter()
            .all(|s| s.as_ref().unwrap().is_some())
    );

    let mut rng = Rng::new(0x7_8_0_8);
    let mut counts = [Counts::default(), Counts::default()];
    // 600 flips in the database file, then 200 in the `-wal`.
    for iteration in 0..800 {
        let in_wal = iteration >= 600;
        let mut db = db_bytes.clone();
        let mut wal = wal_bytes.clone();
        let target = if in_wal { &mut wal } else { &mut db };
        let at = usize::try_from(rng.below(target.len() as u64)).unwrap();
        let flip = u8::try_from(1 + rng.below(255)).unwrap();
        target[at] ^= flip;

        let dir = scratch_dir();
        std::fs::write(dir.path().join("events.db"), &db).unwrap();
        std::fs::write(dir.path().join("events.db-wal"), &wal).unwrap();
        let count = &mut counts[usize::from(in_wal)];
        // A refusal is a typed `OpenError`: the signature says so.
        let Ok(store) = open(dir.path()) else {
            count.refused_at_open += 1;
            continue;
        };
        let seen = observe(&store).await;
        drop(store);
        if seen.has_error() {
            count.detected += 1;
        } else if seen == baseline {
            count.harmless += 1;
        } else {
            count.silent += 1;
            if lost_a_suffix(&seen, &baseline) {
                count.lost_suffix += 1;
            }
        }
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "iteration {iteration}: a flip at byte {at} of the {} made a store thread panic",
            if in_wal { "-wal" } else { "database" }
        );
    }
    eprintln!("T8 600 flips in the database file: {:?}", counts[0]);
    eprintln!("T8 200 flips in the -wal file: {:?}", counts[1]);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    // No flip in the database file reaches a caller undetected: every one
    // is refused at open (the structure check), reported by a read (the
    // checksums, the version and position checks), or changes nothing.
    assert_eq!(counts[0].silent, 0, "{:?}", counts[0]);
    // A flip in the `-wal` ends the log at the damaged frame: the commits
    // from there on read as never made, as after a crash before them. It
    // never changes an event.
    assert_eq!(counts[1].silent, counts[1].lost_suffix, "{:?}", counts[1]);
}

/// Flips one letter of a stored payload (the JSON stays valid) in the
/// database file, or in the `-wal`, and reads the event back.
async fn flip_inside_a_payload(in_wal: bool) -> Result<Vec<RecordedEvent>, Error> {
    const MARKER: &[u8] = b"payload-marker-QWERTYUIOP";
    let work = scratch_dir();
    let copy = scratch_dir();
    let db = work.path().join("events.db");
    let store = SqliteStore::options().readers(1).open(&db).unwrap();
    let stream = StreamId::new("marked").unwrap();
    let payload = format!(r#"{{"memo":"{}"}}"#, std::str::from_utf8(MARKER).unwrap());
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![es_core::NewEvent::new("m", "marked", 1, payload)],
        )
        .await
        .unwrap();
    if !in_wal {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0);
    }
    for name in ["events.db", "events.db-wal"] {
        std::fs::copy(work.path().join(name), copy.path().join(name)).unwrap();
    }
    drop(store);

    let target = copy
        .path()
        .join(if in_wal { "events.db-wal" } else { "events.db" });
    let mut bytes = std::fs::read(&target).unwrap();
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("the payload is in this file");
    bytes[at + MARKER.len() - 1] ^= 0x01; // 'P' becomes 'Q'
    std::fs::write(&target, bytes).unwrap();

    let store = SqliteStore::options()
        .readers(1)
        .open(copy.path().join("events.db"))
        .unwrap();
    let mut events = store.read_stream(&stream, es_core::ReadRange::all());
    let mut out = Vec::new();
    while let Some(e) = next(&mut events).await {
        out.push(e?);
    }
    Ok(out)
}

/// RELIABILITY T8: a flipped byte inside a payload in the database file is
/// caught by the row checksum. In the `-wal`, SQLite's own frame checksum
/// drops the damaged frame and every later one, so the event reads as never
/// committed (as after a crash before its commit, which no store on SQLite
/// can tell apart); it never reads back changed.
#[tokio::test]
async fn t8_flips_inside_event_payload_bytes_are_detected() {
    match flip_inside_a_payload(false).await {
        Err(e) => drop(typed(&e)),
        Ok(events) => {
            panic!("a flip inside a payload in the database file went unnoticed: {events:?}")
        }
    }
    match flip_inside_a_payload(true).await {
        Err(e) => drop(typed(&e)),
        Ok(events) => assert!(
            events.is_empty(),
            "a damaged -wal frame must not read back changed: {events:?}"
        ),
    }
}

/// A flipped byte in a key of the stream-id index: the index and its table
/// disagree. `quick_check` does not compare them, and the stream then reads
/// as if it did not exist; the default check at open (`Verify::Full`) finds
/// it and refuses the file.
#[tokio::test]
async fn t8_a_damaged_index_key_is_refused_at_open() {
    let dir = scratch_dir();
    let db = dir.path().join("events.db");
    {
        let store = SqliteStore::open(&db).unwrap();
        let accounts = Repository::<Account, _>::new(store);
        for id in ACCOUNTS {
            accounts
                .execute(id, |_| Deposited {
                    amount: 10,
                    memo: "opening".into(),
                })
                .await
                .unwrap();
        }
    }
    // The index's page, and the stream id in it.
    let (page_size, root): (i64, i64) = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let page_size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_streams_1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (page_size, root)
    };
    let mut bytes = std::fs::read(&db).unwrap();
    let page = usize::try_from((root - 1) * page_size).unwrap();
    let size = usize::try_from(page_size).unwrap();
    let id = format!("account-{}", ACCOUNTS[2]);
    let at = bytes[page..page + size]
        .windows(id.len())
        .position(|w| w == id.as_bytes())
        .expect("the index page holds the stream id");
    // The last letter of the id: another valid id, in the index only.
    bytes[page + at + id.len() - 1] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();

    // Without comparing indexes with tables, the stream is gone.
    let quick = SqliteStore::options()
        .verify(es_sqlite::Verify::Quick)
        .open(&db)
        .unwrap();
    let stream = StreamId::new(&id).unwrap();
    assert_eq!(
        quick.stream_version(&stream).await.unwrap(),
        0,
        "silently gone"
    );
    drop(quick);
    // The default check refuses the file.
    match SqliteStore::open(&db) {
        Err(es_sqlite::OpenError::Corrupt { detail, .. }) => {
            assert!(detail.contains("sqlite_autoindex_streams_1"), "{detail}");
        }
        other => panic!("expected the file to be refused, got {other:?}"),
    }
}
