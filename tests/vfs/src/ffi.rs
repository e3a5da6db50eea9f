//! The C side: the `sqlite3_vfs` and `sqlite3_io_methods` SQLite calls.
//! Each method forwards to the default VFS (unix) and tells the
//! [`Recorder`] what happened. Every `unsafe` of the crate is in this file.
//!
//! Our VFS is a copy of the default one with `xOpen` and `xDelete`
//! replaced, its file objects one of ours followed by the default VFS's:
//!
//! ```text
//! [ File { base, recorder, id, real } | the unix VFS's own file object ]
//!                                 real ^
//! ```
//!
//! The default VFS's other methods (`xAccess`, `xFullPathname`,
//! `xRandomness`, `xSleep`, `xCurrentTime*`, `xDl*`, `x*SystemCall`) are
//! called with our VFS as their first argument, which SQLite 3.54's unix
//! VFS never reads in them (each marks it `UNUSED_PARAMETER`); only
//! `xOpen` reads it (its `pAppData`), and ours passes the real one.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use rusqlite::ffi;

use crate::recorder::{FileId, Recorder};

/// What our VFS's `pAppData` points to. Leaked: SQLite may call a
/// registered VFS for the rest of the process.
struct Shared {
    real: *mut ffi::sqlite3_vfs,
    recorder: Arc<Recorder>,
}

/// Our file object, at the start of the `szOsFile` bytes SQLite allocates.
#[repr(C)]
struct File {
    /// What SQLite reads: our method table.
    base: ffi::sqlite3_file,
    recorder: &'static Recorder,
    /// `None`: a temporary file, passed through unrecorded.
    id: Option<FileId>,
    /// The default VFS's file object, right after this one.
    real: *mut ffi::sqlite3_file,
}

/// Where the real file object starts (SQLite's allocations are 8-aligned).
const FILE_SIZE: usize = std::mem::size_of::<File>().next_multiple_of(8);

/// Why [`TestVfs::register`](crate::TestVfs::register) failed.
#[derive(Debug)]
pub enum RegisterError {
    /// The name has a NUL byte.
    BadName,
    /// A VFS of that name is already registered.
    Taken(String),
    /// SQLite has no default VFS, or refused ours (its result code).
    Sqlite(c_int),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::BadName => f.write_str("a VFS name cannot hold a NUL byte"),
            RegisterError::Taken(name) => write!(f, "a VFS named `{name}` is already registered"),
            RegisterError::Sqlite(code) => write!(f, "SQLite refused the VFS (code {code})"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Registers a VFS named `name` that records into `recorder`; it stays
/// registered for the rest of the process.
pub(crate) fn register(name: &str, recorder: Arc<Recorder>) -> Result<(), RegisterError> {
    let c_name = CString::new(name).map_err(|_| RegisterError::BadName)?;
    // SAFETY: `sqlite3_vfs_find` initialises SQLite if needed and reads its
    // registry (under SQLite's own mutex); a null name asks for the
    // default VFS, `c_name` is NUL-terminated.
    let (real, taken) = unsafe {
        (
            ffi::sqlite3_vfs_find(ptr::null()),
            !ffi::sqlite3_vfs_find(c_name.as_ptr()).is_null(),
        )
    };
    if taken {
        return Err(RegisterError::Taken(name.to_owned()));
    }
    if real.is_null() {
        return Err(RegisterError::Sqlite(ffi::SQLITE_ERROR));
    }
    // SAFETY: `real` is the registered default VFS, which SQLite never
    // frees; this copies its fields.
    let mut vfs = unsafe { *real };
    let own = c_int::try_from(FILE_SIZE).map_err(|_| RegisterError::Sqlite(ffi::SQLITE_ERROR))?;
    vfs.szOsFile += own;
    vfs.pNext = ptr::null_mut();
    vfs.zName = c_name.into_raw();
    vfs.pAppData = Box::into_raw(Box::new(Shared { real, recorder })).cast();
    vfs.xOpen = Some(open);
    vfs.xDelete = Some(delete);
    let vfs = Box::into_raw(Box::new(vfs));
    // SAFETY: `vfs` is a complete `sqlite3_vfs`, leaked so it outlives every
    // use; its methods are ours or the default VFS's (see the module docs).
    let code = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(RegisterError::Sqlite(code))
    }
}

/// `xOpen`: opens the real file after our header, and records it.
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls `xOpen` with our VFS (whose `pAppData` is a
    // leaked `Shared`) and `file` pointing at `szOsFile` 8-aligned bytes:
    // room for a `File` and the real file object after it. `name` is null
    // or a NUL-terminated path that SQLite keeps while the file is open.
    unsafe {
        let shared: &'static Shared = &*(*vfs).pAppData.cast::<Shared>();
        let real = file.byte_add(FILE_SIZE);
        (*file).pMethods = ptr::null();
        (*real).pMethods = ptr::null();
        let Some(real_open) = (*shared.real).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let code = real_open(shared.real, name, real, flags, out_flags);
        if code != ffi::SQLITE_OK {
            // A file whose methods are set must be closed even on failure.
            if let Some(close) = (*real).pMethods.as_ref().and_then(|m| m.xClose) {
                close(real);
            }
            return code;
        }
        let path = if name.is_null() {
            None
        } else {
            CStr::from_ptr(name).to_str().ok()
        };
        let id = path.and_then(|path| shared.recorder.open(path, flags));
        file.cast::<File>().write(File {
            base: ffi::sqlite3_file {
                pMethods: &raw const IO_METHODS,
            },
            recorder: &shared.recorder,
            id,
            real,
        });
    }
    ffi::SQLITE_OK
}

/// `xDelete`: deletes the real file, and records it.
unsafe extern "C" fn delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    // SAFETY: SQLite calls `xDelete` with our VFS and a NUL-terminated path.
    unsafe {
        let shared: &'static Shared = &*(*vfs).pAppData.cast::<Shared>();
        let Some(real_delete) = (*shared.real).xDelete else {
            return ffi::SQLITE_IOERR_DELETE;
        };
        let code = real_delete(shared.real, name, sync_dir);
        if code == ffi::SQLITE_OK
            && !name.is_null()
            && let Ok(path) = CStr::from_ptr(name).to_str()
        {
            shared.recorder.deleted(path);
        }
        code
    }
}

/// Version 2: no `xFetch`, so SQLite never reads through a memory map and
/// every read is an `xRead`.
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

/// Defines an `sqlite3_io_methods` entry that calls the real file's
/// method of the same name with the same arguments (`$missing` when the
/// real file lacks it).
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite calls a method only on a file our `open`
            // opened and has not closed: a `File` whose `real` is the
            // default VFS's open file object, with its method table set.
            unsafe {
                let real = (*file.cast::<File>()).real;
                match (*(*real).pMethods).$method {
                    Some(method) => method(real, $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

forward!(close, xClose, () -> c_int, ffi::SQLITE_OK);
forward!(file_size, xFileSize, (size: *mut i64) -> c_int, ffi::SQLITE_IOERR_FSTAT);
forward!(lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
forward!(unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
forward!(sector_size, xSectorSize, () -> c_int, 4096);
forward!(device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
forward!(shm_map, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
forward!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR_SHMLOCK);
forward!(shm_barrier, xShmBarrier, () -> (), ());
forward!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
forward!(real_read, xRead, (buf: *mut c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR_READ);
forward!(real_write, xWrite, (buf: *const c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR_WRITE);
forward!(real_truncate, xTruncate, (size: i64) -> c_int, ffi::SQLITE_IOERR_TRUNCATE);
forward!(real_sync, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR_FSYNC);
forward!(real_file_control, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);

/// Our part of an open file.
///
/// # Safety
///
/// `file` is a file our `open` opened and SQLite has not closed.
unsafe fn ours(file: *mut ffi::sqlite3_file) -> (&'static Recorder, Option<FileId>) {
    // SAFETY: as the function's contract says, `file` starts with a `File`.
    let file = unsafe { &*file.cast::<File>() };
    (file.recorder, file.id)
}

/// `xRead`: counted (and failed when a fault says so), then passed on.
unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls methods on files our `open` opened, with
    // `amount` writable bytes at `buf`.
    unsafe {
        let (recorder, id) = ours(file);
        if id.is_some()
            && let Err(code) = recorder.read()
        {
            return code;
        }
        real_read(file, buf, amount, offset)
    }
}

/// `xWrite`: counted (and failed when a fault says so), passed on, and
/// recorded.
unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls methods on files our `open` opened, with
    // `amount` readable bytes at `buf`, unchanged during the call.
    unsafe {
        let (recorder, id) = ours(file);
        let Some(id) = id else {
            return real_write(file, buf, amount, offset);
        };
        let len = usize::try_from(amount).unwrap_or(0);
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        recorder.write(id, offset, data, || real_write(file, buf, amount, offset))
    }
}

/// `xTruncate`: passed on, and recorded.
unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite calls methods on files our `open` opened.
    unsafe {
        match ours(file) {
            (recorder, Some(id)) => recorder.truncate(id, size, || real_truncate(file, size)),
            (_, None) => real_truncate(file, size),
        }
    }
}

/// `xSync`: recorded (and failed when a fault says so), not passed on: the
/// log decides what a power cut keeps, and the tests need no real flush.
unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls methods on files our `open` opened.
    unsafe {
        match ours(file) {
            (recorder, Some(id)) => recorder.sync(id),
            (_, None) => real_sync(file, flags),
        }
    }
}

/// `xFileControl`: passed on, except the size hints of recorded files,
/// which the unix VFS would act on with an `ftruncate` the log would not
/// see (they are only hints: SQLite goes on without them).
unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls methods on files our `open` opened, with the
    // argument `op` calls for.
    unsafe {
        let (_, id) = ours(file);
        if id.is_some()
            && matches!(
                op,
                ffi::SQLITE_FCNTL_SIZE_HINT | ffi::SQLITE_FCNTL_CHUNK_SIZE
            )
        {
            return ffi::SQLITE_NOTFOUND;
        }
        real_file_control(file, op, arg)
    }
}
