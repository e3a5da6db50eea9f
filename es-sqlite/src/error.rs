//! Errors of opening a database, and how SQLite's errors become
//! [`es_core::Error`]s.

use std::path::PathBuf;

use es_core::Error;
use rusqlite::ErrorCode;

/// Why [`SqliteStore::open`](crate::SqliteStore::open) failed. Nothing was
/// written to the file when opening fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file could not be created, read or inspected.
    #[error("cannot open `{}`", path.display())]
    Io {
        /// The database path.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is writable by every user: anyone could change the events.
    #[error("`{}` is writable by every user; refusing to open it (run `chmod o-w` on it)", path.display())]
    InsecurePermissions {
        /// The database path.
        path: PathBuf,
    },
    /// The file exists and is empty (0 bytes): it may be a truncated copy
    /// of a store (a copy cut short, a disk that filled during a backup),
    /// so it is not made into a new, empty store, which would hide the
    /// loss. Nothing was written to it. To start a new store in it, open
    /// it with [`SqliteOptions::create_new`](crate::SqliteOptions::create_new),
    /// or delete it (a missing file is created).
    #[error(
        "`{}` is an empty file (0 bytes), perhaps a truncated copy of a store; refusing to make a new store of it (delete it, or ask for a new store explicitly)",
        path.display()
    )]
    EmptyFile {
        /// The database path.
        path: PathBuf,
    },
    /// [`SqliteOptions::create_new`](crate::SqliteOptions::create_new) was
    /// asked for, and the file (or a write-ahead log beside it) is not
    /// empty; it was left untouched.
    #[error("`{}` already holds data; a new store was asked for, so it was left untouched", path.display())]
    AlreadyExists {
        /// The database path.
        path: PathBuf,
    },
    /// The file is not an SQLite database (or its header is damaged).
    #[error("`{}` is not an SQLite database, or its header is damaged", path.display())]
    NotADatabase {
        /// The database path.
        path: PathBuf,
    },
    /// The file is an SQLite database of another application.
    #[error("`{}` is an SQLite database of another application, not an es event store", path.display())]
    ForeignDatabase {
        /// The database path.
        path: PathBuf,
    },
    /// The database was written by a newer version of es-sqlite; it is left untouched.
    #[error(
        "`{}` has schema version {found}, newer than the {supported} this program knows; it was left untouched: upgrade the program",
        path.display()
    )]
    SchemaTooNew {
        /// The database path.
        path: PathBuf,
        /// The schema version found.
        found: i64,
        /// The newest schema version this program knows.
        supported: i64,
    },
    /// The file was opened read-only ([`SqliteOptions::read_only`](crate::SqliteOptions::read_only))
    /// and has an older schema, which only a writable open migrates; it is
    /// left untouched.
    #[error(
        "`{}` has schema version {found}, older than the {supported} this program reads; opened read-only, it was left untouched: open it once for writing to upgrade it",
        path.display()
    )]
    SchemaTooOld {
        /// The database path.
        path: PathBuf,
        /// The schema version found.
        found: i64,
        /// The schema version this program reads.
        supported: i64,
    },
    /// The file needs its schema created or upgraded but cannot be written.
    #[error("`{}` is read-only and needs its schema created or upgraded", path.display())]
    ReadOnly {
        /// The database path.
        path: PathBuf,
    },
    /// Another process held the database past the busy timeout.
    #[error("`{}` stayed locked by another process past the busy timeout", path.display())]
    Busy {
        /// The database path.
        path: PathBuf,
    },
    /// The database is damaged.
    #[error("`{}` is damaged: {detail}", path.display())]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// An inline read model could not be created, rebuilt or caught up
    /// (its `create` failed, or a handler refused an event): the store does
    /// not open with it. Nothing of the failed step was written.
    #[error("`{}`: inline read model `{name}` cannot be brought up to date: {detail}", path.display())]
    InlineReadModel {
        /// The database path.
        path: PathBuf,
        /// The read model's name.
        name: &'static str,
        /// What failed, with its causes.
        detail: String,
    },
    /// The key file of personal data does not open: the key-encryption key
    /// is not the one its keys were wrapped with
    /// ([`PrivacyError::WrongKey`](es_core::privacy::PrivacyError::WrongKey)),
    /// or the file is damaged.
    #[error("`{}`: the key file of personal data does not open", path.display())]
    Keys {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: es_core::privacy::PrivacyError,
    },
    /// Any other SQLite failure.
    #[error("cannot open `{}`", path.display())]
    Sqlite {
        /// The database path.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
}

impl OpenError {
    /// A read of the store's file at open that failed: an I/O error as
    /// [`OpenError::Io`], anything else as damage ([`OpenError::Corrupt`]).
    pub(crate) fn of_read(path: &std::path::Path, e: Error) -> Self {
        let path = path.to_path_buf();
        match e {
            Error::Io { detail } => OpenError::Io {
                path,
                source: std::io::Error::other(detail),
            },
            Error::SyncFailed => OpenError::Io {
                path,
                source: std::io::Error::other(Error::SyncFailed),
            },
            e => OpenError::Corrupt {
                path,
                detail: e.to_string(),
            },
        }
    }

    pub(crate) fn sqlite(path: &std::path::Path, e: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotADatabase { path },
            Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt {
                path,
                detail: e.to_string(),
            },
            Some(ErrorCode::ReadOnly) => OpenError::ReadOnly { path },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OpenError::Busy { path },
            Some(ErrorCode::SystemIoFailure) => OpenError::Io {
                path,
                source: std::io::Error::other(e),
            },
            _ => OpenError::Sqlite { path, source: e },
        }
    }
}

/// Maps an SQLite failure by its error code, never by message text.
pub(crate) fn store_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy,
        Some(ErrorCode::DiskFull) => Error::StorageFull,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt {
            detail: e.to_string(),
        },
        Some(ErrorCode::ReadOnly) => Error::ReadOnly,
        Some(ErrorCode::SystemIoFailure) if is_sync_failure(&e) => Error::SyncFailed,
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => Error::Io {
            detail: e.to_string(),
        },
        _ => Error::backend(e),
    }
}

/// Whether `e` is a failed flush to disk: `SQLITE_IOERR_FSYNC` (a file's)
/// or `SQLITE_IOERR_DIR_FSYNC` (its directory's).
pub(crate) fn is_sync_failure(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_extended_error_code(),
        Some(rusqlite::ffi::SQLITE_IOERR_FSYNC | rusqlite::ffi::SQLITE_IOERR_DIR_FSYNC)
    )
}

/// A failure to open one more connection to a store that is open, as the
/// store's error: by SQLite's code, as for any statement.
pub(crate) fn connect_error(e: OpenError) -> Error {
    match e {
        OpenError::Sqlite { source, .. } => store_error(source),
        OpenError::Io { source, .. } => {
            match source
                .get_ref()
                .and_then(|e| e.downcast_ref::<rusqlite::Error>())
            {
                Some(sqlite) if is_sync_failure(sqlite) => Error::SyncFailed,
                _ => Error::Io {
                    detail: source.to_string(),
                },
            }
        }
        OpenError::Busy { .. } => Error::Busy,
        OpenError::ReadOnly { .. } => Error::ReadOnly,
        OpenError::Corrupt { detail, .. } => Error::Corrupt { detail },
        OpenError::NotADatabase { path } => Error::Corrupt {
            detail: format!("`{}` is not an SQLite database any more", path.display()),
        },
        other => Error::backend(other),
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY violation (extended codes 2067 and
/// 1555): another writer's row, or one of our event ids, is already there.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_extended_error_code(),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

/// A value read from the database that does not have the shape the schema
/// promises: the file was damaged or written by something else.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        detail: what.to_string(),
    }
}

/// `n` as SQLite stores integers; a number past `i64::MAX` (which no version
/// or position can reach) is an input over the limit.
pub(crate) fn stored_integer(what: &'static str, n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| {
        Error::Limit(es_core::LimitError {
            what,
            size: usize::try_from(n).unwrap_or(usize::MAX),
            limit: usize::try_from(i64::MAX).unwrap_or(usize::MAX),
        })
    })
}
