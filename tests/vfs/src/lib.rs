//! A test-only SQLite VFS (RELIABILITY T2 and T7), in the manner of SQLite's
//! own `test6.c` crash VFS and its I/O-error tests.
//!
//! [`TestVfs::register`] registers, under a name, a VFS that wraps the
//! default (unix) one: files live on disk as usual, locks and shared memory
//! are the unix VFS's, and every write, truncation, sync and delete of a
//! database, write-ahead log or rollback journal is also recorded, in order,
//! with its bytes. Syncs are recorded, not passed to the disk. From the
//! record ([`TestVfs::log`]) come the files a power cut at any moment would
//! leave ([`Log::image`]): everything a sync put on disk, and of each
//! file's writes after its last sync none, all, or each one dropped, kept
//! or torn at a sector boundary by a seeded generator ([`Unsynced`]).
//!
//! It also injects I/O errors ([`TestVfs::inject`]): the nth read, write or
//! sync (counted across the recorded files, per kind) fails with
//! `SQLITE_IOERR_READ`, `SQLITE_IOERR_WRITE` or `SQLITE_IOERR_FSYNC`, once
//! or from then on. A failed sync loses the file's unsynced writes for good,
//! as Linux does (see [`Op::FailedSync`]).
//!
//! ```
//! use es_test_vfs::{TestVfs, Unsynced};
//! use rusqlite::{Connection, OpenFlags};
//!
//! let vfs = TestVfs::register("doc-example")?;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("a.db");
//! let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
//! let db = Connection::open_with_flags_and_vfs(&path, flags, vfs.name())?;
//! db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (x)")?;
//! let before = vfs.ops();
//! db.execute("INSERT INTO t VALUES (1)", [])?;
//! drop(db);
//!
//! // A power cut before the insert's commit: the row is not there.
//! let image = vfs.log().image(before, Unsynced::Dropped);
//! let copy = tempfile::tempdir()?;
//! image.write_to(copy.path())?;
//! let db = Connection::open(copy.path().join("a.db"))?;
//! assert_eq!(db.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Not modelled: a file's creation or deletion is taken as on disk at once
//! (no directory sync), and the `-shm` file is not recorded (SQLite
//! rebuilds it from the log after a crash; images leave it out).

mod ffi;
mod log;
mod recorder;

use std::sync::Arc;

pub use crate::ffi::RegisterError;
pub use crate::log::{Image, Log, Op, Replay, SECTOR, Unsynced};
pub use crate::recorder::{Counts, Fault, Kind};

use crate::recorder::Recorder;

/// A registered test VFS; cheap to clone (clones share its record).
///
/// Give its name to a connection (`Connection::open_with_flags_and_vfs`,
/// or es-sqlite's `SqliteOptions::vfs`). A VFS stays registered for the
/// rest of the process: give each test its own name.
#[derive(Debug, Clone)]
pub struct TestVfs {
    name: Arc<str>,
    recorder: Arc<Recorder>,
}

impl TestVfs {
    /// Registers a new VFS named `name` (not the default VFS).
    ///
    /// # Errors
    ///
    /// When a VFS of that name exists, or SQLite refuses it.
    pub fn register(name: &str) -> Result<Self, RegisterError> {
        let recorder = Arc::new(Recorder::default());
        ffi::register(name, recorder.clone())?;
        Ok(TestVfs {
            name: name.into(),
            recorder,
        })
    }

    /// The name connections open it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many operations are recorded so far: a point in the log, to cut
    /// at later (an append acknowledged when `ops()` was `n` must survive
    /// every cut at `n` or after).
    pub fn ops(&self) -> usize {
        self.recorder.len()
    }

    /// A copy of everything recorded so far.
    pub fn log(&self) -> Log {
        self.recorder.log()
    }

    /// The reads, writes and syncs of recorded files so far.
    pub fn counts(&self) -> Counts {
        self.recorder.counts()
    }

    /// Arms `fault`, counting from now (`nth` 1 is the next operation of its
    /// kind); replaces any fault armed before.
    pub fn inject(&self, fault: Fault) {
        self.recorder.arm(fault);
    }

    /// Disarms the fault: every operation succeeds again.
    pub fn heal(&self) {
        self.recorder.disarm();
    }

    /// How many operations faults have failed so far.
    pub fn fired(&self) -> u64 {
        self.recorder.fired()
    }

    /// Forgets the record, the counts and the fault: for the next case of a
    /// test, once every connection of the last one is closed.
    pub fn reset(&self) {
        self.recorder.reset();
    }
}
