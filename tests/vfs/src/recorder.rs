//! The VFS's state, shared by every connection on it: the log of
//! operations and the armed fault. Safe Rust; `ffi.rs` calls it.

use std::collections::HashMap;
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::ffi;

use crate::log::{Log, Op};

/// A kind of I/O operation, as faults count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `xRead`.
    Read,
    /// `xWrite`.
    Write,
    /// `xSync`.
    Sync,
}

impl Kind {
    /// The SQLite error an injected fault of this kind returns.
    pub fn error_code(self) -> c_int {
        match self {
            Kind::Read => ffi::SQLITE_IOERR_READ,
            Kind::Write => ffi::SQLITE_IOERR_WRITE,
            Kind::Sync => ffi::SQLITE_IOERR_FSYNC,
        }
    }
}

/// An I/O error to inject: the `nth` operation of `kind` (1 is the next
/// one), counted across every recorded file of the VFS, fails with
/// [`Kind::error_code`]; with `persistent`, every later one of that kind
/// too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which operations.
    pub kind: Kind,
    /// Which one fails first (1-based).
    pub nth: u64,
    /// Whether every later one fails too.
    pub persistent: bool,
}

impl Fault {
    /// The `nth` operation of `kind` fails, and no other.
    pub fn transient(kind: Kind, nth: u64) -> Self {
        Fault {
            kind,
            nth,
            persistent: false,
        }
    }

    /// The `nth` operation of `kind` fails, and every later one of that kind.
    pub fn persistent(kind: Kind, nth: u64) -> Self {
        Fault {
            kind,
            nth,
            persistent: true,
        }
    }
}

/// How many operations of each kind the recorded files saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `xRead` calls.
    pub reads: u64,
    /// `xWrite` calls.
    pub writes: u64,
    /// `xSync` calls.
    pub syncs: u64,
}

impl Counts {
    /// The count of `kind`.
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Read => self.reads,
            Kind::Write => self.writes,
            Kind::Sync => self.syncs,
        }
    }

    fn bump(&mut self, kind: Kind) -> u64 {
        let count = match kind {
            Kind::Read => &mut self.reads,
            Kind::Write => &mut self.writes,
            Kind::Sync => &mut self.syncs,
        };
        *count += 1;
        *count
    }
}

/// A recorded file.
pub(crate) type FileId = usize;

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    log: Log,
    ids: HashMap<PathBuf, FileId>,
    counts: Counts,
    /// The armed fault, and the count of its kind when it was armed.
    fault: Option<(Fault, u64)>,
    fired: u64,
}

impl Inner {
    /// Counts an operation of `kind`; the error code when the armed fault
    /// fails it.
    fn count(&mut self, kind: Kind) -> Result<(), c_int> {
        let n = self.counts.bump(kind);
        let Some((fault, base)) = self.fault else {
            return Ok(());
        };
        let first = base.saturating_add(fault.nth);
        if fault.kind == kind && (n == first || (fault.persistent && n > first)) {
            self.fired += 1;
            return Err(kind.error_code());
        }
        Ok(())
    }
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A file SQLite opened: recorded when it is a database, a write-ahead
    /// log or a rollback journal (`flags` of `xOpen`), not a temporary file.
    pub(crate) fn open(&self, path: &str, flags: c_int) -> Option<FileId> {
        let kept = ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_JOURNAL;
        if flags & kept == 0 {
            return None;
        }
        let mut inner = self.lock();
        let path = PathBuf::from(path);
        if let Some(id) = inner.ids.get(&path) {
            return Some(*id);
        }
        let id = inner.log.files.len();
        // A file with content at its first open was made outside the VFS's
        // view (see `Op::Existing`). An empty one is the file this open
        // just created, or one with nothing to lose: absent, as before any
        // write. A file that cannot be read is taken as absent too.
        if let Ok(data) = std::fs::read(&path)
            && !data.is_empty()
        {
            inner.log.ops.push(Op::Existing { file: id, data });
        }
        inner.log.files.push(path.clone());
        inner.ids.insert(path, id);
        Some(id)
    }

    /// Before a read: counted, and failed when the fault says so.
    pub(crate) fn read(&self) -> Result<(), c_int> {
        self.lock().count(Kind::Read)
    }

    /// A write: counted, failed when the fault says so, else done by
    /// `real` (under the lock, so the log has the files' order of writes)
    /// and recorded when it succeeded.
    pub(crate) fn write(
        &self,
        file: FileId,
        offset: i64,
        data: &[u8],
        real: impl FnOnce() -> c_int,
    ) -> c_int {
        let mut inner = self.lock();
        if let Err(code) = inner.count(Kind::Write) {
            return code;
        }
        let code = real();
        if code == ffi::SQLITE_OK {
            inner.log.ops.push(Op::Write {
                file,
                offset: u64::try_from(offset).unwrap_or(0),
                data: data.to_vec(),
            });
        }
        code
    }

    /// A truncation, done by `real` and recorded when it succeeded.
    pub(crate) fn truncate(&self, file: FileId, size: i64, real: impl FnOnce() -> c_int) -> c_int {
        let mut inner = self.lock();
        let code = real();
        if code == ffi::SQLITE_OK {
            inner.log.ops.push(Op::Truncate {
                file,
                size: u64::try_from(size).unwrap_or(0),
            });
        }
        code
    }

    /// A sync: recorded, never passed to the disk (the log decides what a
    /// power cut keeps); failed when the fault says so.
    pub(crate) fn sync(&self, file: FileId) -> c_int {
        let mut inner = self.lock();
        match inner.count(Kind::Sync) {
            Ok(()) => {
                inner.log.ops.push(Op::Sync { file });
                ffi::SQLITE_OK
            }
            Err(code) => {
                inner.log.ops.push(Op::FailedSync { file });
                code
            }
        }
    }

    /// A file deleted (`xDelete` succeeded).
    pub(crate) fn deleted(&self, path: &str) {
        let mut inner = self.lock();
        if let Some(&file) = inner.ids.get(&PathBuf::from(path)) {
            inner.log.ops.push(Op::Delete { file });
        }
    }

    pub(crate) fn log(&self) -> Log {
        self.lock().log.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().log.ops.len()
    }

    pub(crate) fn counts(&self) -> Counts {
        self.lock().counts
    }

    pub(crate) fn arm(&self, fault: Fault) {
        let mut inner = self.lock();
        let base = inner.counts.of(fault.kind);
        inner.fault = Some((fault, base));
    }

    pub(crate) fn disarm(&self) {
        self.lock().fault = None;
    }

    pub(crate) fn fired(&self) -> u64 {
        self.lock().fired
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Inner::default();
    }
}
