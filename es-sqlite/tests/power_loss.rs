//! RELIABILITY T2: simulated power loss. A workload of appends (4 threads,
//! batches of 1 to 20 events over 12 streams, so group commit batches
//! them; the store closed and reopened between three rounds) runs on the
//! test VFS, which records every write and sync; each append's Ok is noted
//! with the point of the record it came at. Then, for 1,000 power cuts
//! under FULL and 500 under NORMAL (`ES_T2_IMAGES` sets FULL's count,
//! NORMAL gets half; `ES_T2_SEED` another seed), the files the
//! cut leaves (what the syncs put on disk, and of the later writes none,
//! all, or each one dropped, kept or torn at a sector) are opened with
//! es-sqlite as usual and checked: `integrity_check`, every event read
//! (checksums, contiguity), the audit chain verified, and the ★ invariants:
//! the events are exactly the first events of the uninterrupted run (a
//! prefix of commit order, byte for byte), every batch whole or absent.
//! With `synchronous = FULL` no acknowledged append is lost; with
//! `Durability::Normal` what is lost is a suffix of commit order, and the
//! largest such window is printed.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::too_many_lines)]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use common::oracle::{self, Attempt};
use common::{Rng, all_events, check_integrity, scratch_dir};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, RecordedEvent};
use es_sqlite::{Durability, SqliteStore};
use es_test_vfs::{Log, TestVfs, Unsynced};

const THREADS: u64 = 4;
const ROUNDS: u64 = 3;
const APPENDS_PER_THREAD: u64 = 20;
const STREAMS: u64 = 12;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The workload: every append attempted, each with its Ok; and how many
/// appends and commits the writer made (group commit's sharing).
fn workload(
    vfs: &TestVfs,
    db: &Path,
    durability: Durability,
    seed: u64,
) -> (Vec<Attempt>, u64, u64) {
    let attempts = Mutex::new(Vec::new());
    let (mut appends, mut commits) = (0, 0);
    for round in 0..ROUNDS {
        let store = SqliteStore::options()
            .vfs(vfs.name())
            .durability(durability)
            .open(db)
            .expect("the store opens");
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (store, attempts) = (&store, &attempts);
                scope.spawn(move || {
                    let mut rng = Rng::new(seed ^ (round << 40) ^ (thread << 32));
                    for i in 0..APPENDS_PER_THREAD {
                        let stream = format!("s-{}", rng.below(STREAMS));
                        let n = usize::try_from(rng.range(1, 20)).expect("small");
                        let mut attempt = Attempt::new(format!("{round}.{thread}.{i}"), &stream, n);
                        let result = block_on(store.append(
                            &attempt.stream,
                            ExpectedVersion::Any,
                            attempt.events(),
                        ))
                        .expect("appends succeed");
                        attempt.acked(&result, vfs.ops());
                        attempts.lock().expect("attempts").push(attempt);
                    }
                });
            }
        });
        let stats = store.write_stats();
        appends += stats.appends;
        commits += stats.commits;
    }
    (attempts.into_inner().expect("attempts"), appends, commits)
}

/// The cuts to check and what becomes of unsynced writes at each: the
/// syncs (FULL) or points spread over the whole record (NORMAL, which
/// syncs only at checkpoints), each cut with every writes dropped, kept,
/// and torn at random, until `images` are chosen; in log order.
fn cuts(log: &Log, durability: Durability, images: usize, seed: u64) -> Vec<(usize, Unsynced)> {
    let points: Vec<usize> = match durability {
        Durability::Full => log.syncs(),
        Durability::Normal => {
            let mut points: BTreeSet<usize> = log.syncs().into_iter().collect();
            let spread = images / 2;
            points.extend((0..spread).map(|i| i * log.len() / spread));
            points.into_iter().collect()
        }
    };
    let mut rng = Rng::new(seed);
    let mut chosen = Vec::with_capacity(images);
    for i in 0..images {
        let cut = points[i % points.len()];
        // Each cut first with nothing unsynced kept, then torn at random,
        // then with everything kept, then torn in other ways.
        let unsynced = match i / points.len() {
            0 => Unsynced::Dropped,
            2 => Unsynced::Kept,
            _ => Unsynced::Random(rng.next()),
        };
        chosen.push((cut, unsynced));
    }
    chosen.sort_by_key(|(cut, _)| *cut);
    chosen
}

/// What one image held.
struct Checked {
    events: usize,
    /// Acknowledged (before the cut) appends lost, and their events.
    lost_appends: usize,
    lost_events: usize,
    /// The commits those events were in.
    lost_commits: usize,
}

/// Opens the image in `dir` as a program would and checks everything.
fn check_image(
    what: &str,
    db: &Path,
    cut: usize,
    attempts: &[Attempt],
    history: &[RecordedEvent],
    (durability, full_check): (Durability, bool),
) -> Checked {
    let store = SqliteStore::open(db).unwrap_or_else(|e| panic!("{what}: the image opens: {e:?}"));
    let events = block_on(all_events(&store));
    let report = block_on(store.verify_chain())
        .unwrap_or_else(|e| panic!("{what}: the audit chain verifies: {e}"));
    assert_eq!(report.events, events.len() as u64, "{what}: chain length");
    drop(store);
    // Opening ran `PRAGMA integrity_check` on the image as found (the
    // default `Verify::Full`, which refuses a damaged file); the file the
    // close checkpointed is checked again for one image in ten.
    if full_check {
        assert_eq!(check_integrity(db, true), "ok", "{what}: integrity_check");
    }
    assert!(
        events.len() <= history.len() && events[..] == history[..events.len()],
        "{what}: the image's {} events are not the first of the run's {}",
        events.len(),
        history.len()
    );
    let must = |ack: &oracle::Ack| durability == Durability::Full && ack.at <= cut;
    oracle::check(what, attempts, &events, must);
    // The acknowledged appends the cut lost: after the image's last event.
    let kept_to = events.last().map_or(0, |e| e.position);
    let lost: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            a.ack
                .is_some_and(|ack| ack.at <= cut && ack.first_position > kept_to)
        })
        .collect();
    let lost_events: usize = lost.iter().map(|a| a.ids.len()).sum();
    // A commit's events share its recorded-at time (the writer reads the
    // clock once a batch).
    let lost_commits = history[events.len()..]
        .iter()
        .filter(|e| lost.iter().any(|a| a.ids.contains(&e.event_id)))
        .map(|e| e.recorded_at)
        .collect::<BTreeSet<_>>()
        .len();
    Checked {
        events: events.len(),
        lost_appends: lost.len(),
        lost_events,
        lost_commits,
    }
}

fn power_loss(name: &str, durability: Durability) {
    let images = usize::try_from(env_number("ES_T2_IMAGES", 1000)).expect("a count");
    // NORMAL's half keeps the pair of tests within a minute on two cores.
    let images = match durability {
        Durability::Full => images,
        Durability::Normal => images.div_ceil(2),
    };
    let seed = env_number("ES_T2_SEED", 0x7257_0002);
    let vfs = TestVfs::register(name).expect("registered");
    let dir = scratch_dir();
    let db = dir.path().join("events.db");
    let (attempts, appends, commits) = workload(&vfs, &db, durability, seed);
    let log = vfs.log();
    assert!(
        appends > commits,
        "group commit shared commits: {appends} appends in {commits} commits"
    );

    // The uninterrupted run, as a clean close left it.
    let store = SqliteStore::open(&db).expect("the run's store reopens");
    let history = block_on(all_events(&store));
    drop(store);
    oracle::check(
        &format!("{name}: the whole run"),
        &attempts,
        &history,
        |_| true,
    );

    let chosen = cuts(&log, durability, images, seed);
    let distinct = chosen
        .iter()
        .map(|(cut, _)| *cut)
        .collect::<BTreeSet<_>>()
        .len();
    let mut replay = log.replay();
    let (mut window_commits, mut window_events, mut window_appends) = (0, 0, 0);
    let (mut lossy, mut empty, mut whole) = (0, 0, 0);
    for (i, (cut, unsynced)) in chosen.iter().enumerate() {
        let what = format!(
            "{name}: image {i} (cut {cut} of {}, {unsynced:?})",
            log.len()
        );
        let image = replay.image(*cut, *unsynced);
        let image_dir = scratch_dir();
        image
            .write_to(image_dir.path())
            .expect("the image is written");
        let checked = check_image(
            &what,
            &image_dir.path().join("events.db"),
            *cut,
            &attempts,
            &history,
            (durability, i % 10 == 0),
        );
        if checked.lost_appends > 0 {
            lossy += 1;
        }
        if checked.events == 0 {
            empty += 1;
        }
        if checked.events == history.len() {
            whole += 1;
        }
        window_commits = window_commits.max(checked.lost_commits);
        window_events = window_events.max(checked.lost_events);
        window_appends = window_appends.max(checked.lost_appends);
    }
    eprintln!(
        "T2 {name}: {} images at {distinct} cuts of a {}-operation record ({} syncs; {appends} \
         appends of {} events in {commits} commits); {empty} images empty, {whole} whole; \
         acknowledged appends lost in {lossy} images, the largest window {window_commits} commits, \
         {window_appends} appends, {window_events} events",
        chosen.len(),
        log.len(),
        log.syncs().len(),
        history.len()
    );
    if durability == Durability::Full {
        assert_eq!(lossy, 0, "FULL loses nothing acknowledged");
    }
}

#[test]
fn t2_power_loss_full_loses_nothing_acknowledged() {
    power_loss("t2-full", Durability::Full);
}

#[test]
fn t2_power_loss_normal_loses_only_a_suffix() {
    power_loss("t2-normal", Durability::Normal);
}
