//! Helpers shared by the es-sqlite test files.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::missing_panics_doc
)]

pub mod oracle;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::task::{Context, Waker};

use es_core::blocking::block_on;
use es_core::store::next;
use es_core::{
    AppendResult, Error, EventStore, EventStream, ExpectedVersion, NewEvent, ReadRange,
    RecordedEvent, StreamId,
};
use es_sqlite::SqliteStore;

pub mod history;

/// A small seeded generator (xorshift64*), so runs can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The environment variable that makes a test binary play a child role.
pub const ROLE: &str = "ES_TEST_ROLE";
/// The database a child works on.
pub const DB: &str = "ES_TEST_DB";

/// The command that runs this test binary again as a child that executes
/// only `test`, with `role` set; its stderr is the caller's.
pub fn child_command(test: &str, role: &str, db: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args([
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .env(DB, db)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::inherit());
    command
}

/// Runs this test binary again as a child that executes only `test`, with
/// `role` set; its stdout is piped to the caller.
pub fn spawn_child(test: &str, role: &str, db: &Path, env: &[(&str, String)]) -> Child {
    child_command(test, role, db, env)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the child process starts")
}

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// When this process runs as root, runs `test` of this test binary again as
/// the unprivileged user `nobody`, whose writes file modes do refuse, waits
/// for it and fails when it failed; returns `true` then, and the caller
/// returns. Otherwise (not root, or that child itself) returns `false` and
/// the test runs here.
pub fn rerun_unprivileged(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    let status = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "unprivileged")
        .status()
        .expect("`runuser` (util-linux) runs the test as `nobody`");
    assert!(status.success(), "{test} as `nobody` failed: {status}");
    true
}

/// A temporary directory, in memory (`/dev/shm`) when the machine has
/// one: tests that open many stores do not wait for the disk's flushes.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// `PRAGMA quick_check` (or `integrity_check`) on a database file.
pub fn check_integrity(db: &Path, full: bool) -> String {
    let conn = rusqlite::Connection::open(db).expect("a raw connection opens");
    let pragma = if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    conn.query_row(pragma, [], |r| r.get(0))
        .expect("the check runs")
}

/// Drops the store's append-only triggers, as a program that damages or
/// rewrites the file (which tests play) would: they guard against mistakes,
/// not against someone who can write the file.
pub fn drop_append_only_triggers(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS events_are_never_changed; \
         DROP TRIGGER IF EXISTS events_are_never_deleted;",
    )
    .expect("the triggers are dropped");
}

/// The row checksum the store keeps in `events.checksum` (the format of
/// `es-sqlite/src/checksum.rs`, restated), for tests that write rows with
/// raw SQL as an older or another program would: rows without an
/// occurred-at time, whose sum is the same in schemas 1 and 2.
#[allow(clippy::too_many_arguments, clippy::cast_possible_wrap)]
pub fn row_checksum(
    stream_pk: i64,
    version: i64,
    event_id: &[u8],
    recorded_at: i64,
    name: &[u8],
    schema_version: i64,
    payload: &[u8],
    metadata: Option<&[u8]>,
) -> i64 {
    let meta = metadata.unwrap_or_default();
    let mut header = Vec::with_capacity(80);
    for field in [
        stream_pk,
        version,
        recorded_at,
        schema_version,
        name.len() as i64,
        payload.len() as i64,
        meta.len() as i64,
        i64::from(metadata.is_some()),
    ] {
        header.extend_from_slice(&field.to_le_bytes());
    }
    header.extend_from_slice(&event_id[..event_id.len().min(16)]);
    header.resize(80, 0);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(name);
    crc.update(payload);
    crc.update(meta);
    i64::from(crc.finalize())
}

/// Recomputes the checksum of the event at `position`, as a program that
/// wrote the row itself would have: the row then reads as intact.
pub fn reseal(conn: &rusqlite::Connection, position: i64) {
    let sum = conn
        .query_row(
            "SELECT stream_pk, version, event_id, recorded_at, CAST(name AS BLOB), schema_version, \
             CAST(payload AS BLOB), CAST(metadata AS BLOB) FROM events \
             WHERE position = ?1 AND occurred_at IS NULL",
            [position],
            |r| {
                Ok(row_checksum(
                    r.get(0)?,
                    r.get(1)?,
                    &r.get::<_, Vec<u8>>(2)?,
                    r.get(3)?,
                    &r.get::<_, Vec<u8>>(4)?,
                    r.get(5)?,
                    &r.get::<_, Vec<u8>>(6)?,
                    r.get::<_, Option<Vec<u8>>>(7)?.as_deref(),
                ))
            },
        )
        .expect("the row exists");
    conn.execute(
        "UPDATE events SET checksum = ?1 WHERE position = ?2",
        [sum, position],
    )
    .expect("resealed");
}

/// The audit chain hash of one event, written again from the format the
/// README and `chain.rs` document (not with the store's code): SHA-256 of
/// the tag, the previous hash, then each column, integers as 8 big-endian
/// bytes, byte strings after their 8-byte big-endian length, optional
/// values after a byte 0 (NULL) or 1.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    previous: &[u8; 32],
    position: i64,
    stream_id: &str,
    version: i64,
    event_id: &[u8],
    aggregate_type: &str,
    name: &str,
    schema_version: i64,
    recorded_at: i64,
    occurred_at: Option<i64>,
    metadata: Option<&str>,
    payload: &str,
) -> [u8; 32] {
    use sha2::Digest;
    let mut input = Vec::new();
    let string = |input: &mut Vec<u8>, bytes: &[u8]| {
        input.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        input.extend_from_slice(bytes);
    };
    input.extend_from_slice(b"es-audit-chain/1");
    input.extend_from_slice(previous);
    input.extend_from_slice(&position.to_be_bytes());
    string(&mut input, stream_id.as_bytes());
    input.extend_from_slice(&version.to_be_bytes());
    string(&mut input, event_id);
    string(&mut input, aggregate_type.as_bytes());
    string(&mut input, name.as_bytes());
    input.extend_from_slice(&schema_version.to_be_bytes());
    input.extend_from_slice(&recorded_at.to_be_bytes());
    match occurred_at {
        None => input.push(0),
        Some(at) => {
            input.push(1);
            input.extend_from_slice(&at.to_be_bytes());
        }
    }
    match metadata {
        None => input.push(0),
        Some(m) => {
            input.push(1);
            string(&mut input, m.as_bytes());
        }
    }
    string(&mut input, payload.as_bytes());
    sha2::Sha256::digest(&input).into()
}

/// The audit chain of a file, recomputed with raw SQL (the README's query)
/// and [`chain_hash`]: each event's position, stored hash and recomputed
/// hash (from the stored hash before it).
pub fn recompute_chain(conn: &rusqlite::Connection) -> Vec<(i64, Vec<u8>, [u8; 32])> {
    let mut query = conn
        .prepare(
            "SELECT e.position, s.stream_id, e.version, e.event_id, s.aggregate_type, e.name, \
             e.schema_version, e.recorded_at, e.occurred_at, e.metadata, e.payload, e.hash \
             FROM events e JOIN streams s USING (stream_pk) ORDER BY e.position",
        )
        .expect("the chain query");
    let mut previous = [0u8; 32];
    let mut out = Vec::new();
    let mut rows = query.query([]).expect("the rows");
    while let Some(r) = rows.next().expect("a row") {
        let position: i64 = r.get(0).unwrap();
        let recomputed = chain_hash(
            &previous,
            position,
            &r.get::<_, String>(1).unwrap(),
            r.get(2).unwrap(),
            &r.get::<_, Vec<u8>>(3).unwrap(),
            &r.get::<_, String>(4).unwrap(),
            &r.get::<_, String>(5).unwrap(),
            r.get(6).unwrap(),
            r.get(7).unwrap(),
            r.get(8).unwrap(),
            r.get::<_, Option<String>>(9).unwrap().as_deref(),
            &r.get::<_, String>(10).unwrap(),
        );
        let stored: Vec<u8> = r.get(11).unwrap();
        previous = stored.as_slice().try_into().unwrap_or([0; 32]);
        out.push((position, stored, recomputed));
    }
    out
}

/// Fails unless every stored hash of the file at `db` is the one the
/// documented format gives; the number of events.
pub fn assert_chain_recomputes(db: &Path) -> usize {
    let conn = rusqlite::Connection::open(db).expect("a raw connection opens");
    let chain = recompute_chain(&conn);
    for (position, stored, recomputed) in &chain {
        assert_eq!(
            stored.as_slice(),
            recomputed.as_slice(),
            "the stored hash at position {position} is the documented one"
        );
    }
    chain.len()
}

/// A small event: `{"n":n}`.
pub fn event(n: u64) -> NewEvent {
    NewEvent::new("race", "ran", 1, format!(r#"{{"n":{n}}}"#))
}

/// Polls `future` once, so a request it makes is in the writer's queue when
/// this returns (the queue has room, so sending completes at once); the
/// future is then awaited for its answer.
pub fn enqueue<F: Future>(future: F) -> Pin<Box<F>> {
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        future.as_mut().poll(&mut cx).is_pending(),
        "the writer is held: nothing can be answered yet"
    );
    future
}

/// The writer held at the start of a batch: a first request is sent and the
/// writer stops in its batch, so requests sent meanwhile queue up for the
/// batch after it.
pub struct Held {
    first: std::thread::JoinHandle<Result<AppendResult, Error>>,
    release: mpsc::Sender<()>,
}

impl Held {
    pub fn new(store: &SqliteStore) -> Self {
        let (reached, is_reached) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let gate = Mutex::new(Some((reached, released)));
        fail::cfg_callback("es-sqlite::writer::batch-start", move || {
            let first = gate.lock().unwrap().take();
            if let Some((reached, released)) = first {
                reached.send(()).unwrap();
                released.recv().unwrap();
            }
        })
        .unwrap();
        let store = store.clone();
        let first = std::thread::spawn(move || {
            let stream = StreamId::new("first-1").unwrap();
            block_on(store.append(&stream, ExpectedVersion::Any, vec![event(0)]))
        });
        is_reached.recv().unwrap();
        Held { first, release }
    }

    /// Lets the writer go on; the first request's answer.
    pub fn release(self) -> Result<AppendResult, Error> {
        self.release.send(()).unwrap();
        self.first.join().unwrap()
    }
}

/// Every event of `events`; fails the test on an error.
pub async fn collect_ok(mut events: EventStream) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    while let Some(e) = next(&mut events).await {
        out.push(e.expect("every event reads back"));
    }
    out
}

/// Every event of `$all`, in order.
pub async fn all_events(store: &SqliteStore) -> Vec<RecordedEvent> {
    collect_ok(store.read_all(0)).await
}

/// Every event of `stream`, in order.
pub async fn stream_events(store: &SqliteStore, stream: &StreamId) -> Vec<RecordedEvent> {
    collect_ok(store.read_stream(stream, ReadRange::all())).await
}
