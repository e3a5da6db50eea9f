//! Opening connections and creating or migrating the schema.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, config::DbConfig};

use crate::error::OpenError;
use crate::options::{Durability, SqliteOptions, Verify};

/// `PRAGMA application_id` of an es event store: "esSQ".
pub(crate) const APPLICATION_ID: i64 = 0x6573_5351;

/// The schema version this code writes and reads (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// The size the write-ahead log is cut back to (`PRAGMA journal_size_limit`
/// on every writing connection): SQLite truncates the `-wal` to it when it
/// starts the log again from the beginning, after a checkpoint moved all of
/// it into the database. Just over the 1,000 pages of 4 KiB after which
/// SQLite checkpoints (`wal_autocheckpoint`), so a log that never grew
/// past that is never cut, and one that grew while a reader held it open
/// comes back to it. See `writer.rs` for the rest of the policy.
pub(crate) const LOG_LIMIT: u64 = 4 * 1024 * 1024;

/// Work a migration does in Rust, in its transaction, before its SQL.
type Step = fn(&rusqlite::Transaction<'_>, &Path) -> Result<(), OpenError>;

/// One step of the schema: what runs first in Rust (for what SQL cannot
/// compute), then its SQL file.
struct Migration {
    before: Option<Step>,
    sql: &'static str,
}

/// Migration `i` takes the schema from version `i` to `i + 1`. Released
/// migrations are never edited: files of every older schema must keep
/// opening (`tests/fixtures/`).
const MIGRATIONS: &[Migration] = &[
    Migration {
        before: None,
        sql: include_str!("sql/0001_init.sql"),
    },
    Migration {
        before: None,
        sql: include_str!("sql/0002_lean_log.sql"),
    },
    Migration {
        before: None,
        sql: include_str!("sql/0003_inline_read_models.sql"),
    },
    Migration {
        before: None,
        sql: include_str!("sql/0004_event_types.sql"),
    },
    Migration {
        before: Some(compute_chain),
        sql: include_str!("sql/0005_audit_chain.sql"),
    },
];

/// Before `0005_audit_chain.sql`: the hash of every stored event, in
/// position order, into `temp.audit_chain`, which that file copies into
/// `events.hash` (see the file, and `chain.rs` for what is hashed).
fn compute_chain(tx: &rusqlite::Transaction<'_>, path: &Path) -> Result<(), OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    tx.execute_batch(
        "CREATE TEMP TABLE audit_chain (position INTEGER PRIMARY KEY, hash BLOB NOT NULL) STRICT",
    )
    .map_err(sqlite)?;
    let mut insert = tx
        .prepare("INSERT INTO temp.audit_chain (position, hash) VALUES (?1, ?2)")
        .map_err(sqlite)?;
    let computed = crate::chain::compute_all(tx, |position, hash| {
        insert
            .execute(rusqlite::params![position, hash.as_bytes().as_slice()])
            .map(drop)
    })
    .map_err(sqlite)?;
    computed.map_err(|position| OpenError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("the event at position {position} has a column of a type it cannot have"),
    })
}

/// What a connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

/// Creates the file readable and writable by its owner only (RELIABILITY S4)
/// unless it exists; refuses an existing file that everyone may write. For
/// read-model files and the key file; the events file is first prepared by
/// [`prepare_events_file`].
pub(crate) fn prepare_file(path: &Path) -> Result<(), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // SQLite reads a file shorter than its 100-byte header as an
            // empty database and would write over it; an SQLite database is
            // at least one 512-byte page, and an empty file is a new one.
            let len = std::fs::metadata(path).map_err(io)?.len();
            if (1..512).contains(&len) {
                return Err(OpenError::NotADatabase {
                    path: path.to_path_buf(),
                });
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
                if mode & 0o002 != 0 {
                    return Err(OpenError::InsecurePermissions {
                        path: path.to_path_buf(),
                    });
                }
            }
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

/// Before a writable open of the events file: a missing file becomes a new
/// store, made whole beside it and moved into place ([`create_whole`]); an
/// empty (0-byte) one is refused ([`OpenError::EmptyFile`]) unless a new
/// store was asked for ([`SqliteOptions::create_new`]), which refuses any
/// file that holds something ([`OpenError::AlreadyExists`]).
pub(crate) fn prepare_events_file(path: &Path, options: &SqliteOptions) -> Result<(), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > 0 => {
            if options.create_new {
                return Err(OpenError::AlreadyExists {
                    path: path.to_path_buf(),
                });
            }
            Ok(())
        }
        Ok(_) if !options.create_new => Err(OpenError::EmptyFile {
            path: path.to_path_buf(),
        }),
        Ok(_) => {
            // Asked for: SQLite makes a new database in the empty file, as
            // long as no log beside it holds pages that it would replay.
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            match std::fs::metadata(&wal) {
                Ok(log) if log.len() > 0 => Err(OpenError::AlreadyExists {
                    path: path.to_path_buf(),
                }),
                _ => Ok(()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_whole(path, options),
        Err(e) => Err(io(e)),
    }
}

/// Makes a new store at `path` all at once: its schema is written into a
/// temporary file in the same directory (private to its owner, named
/// `.NAME.XXXXXX.new`), which is then moved to `path` unless something is
/// there by then. So a file at `path` is never a store half made: another
/// process opening it at that moment finds no file, or a complete store,
/// never the empty file a new database starts as (which
/// [`prepare_events_file`] refuses). A crash while making it can leave the
/// temporary file behind, never a file at `path`. When another process
/// made the store first, its store is opened (or, for
/// [`SqliteOptions::create_new`], refused as [`OpenError::AlreadyExists`]).
fn create_whole(path: &Path, options: &SqliteOptions) -> Result<(), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile makes the file readable and writable by its owner only
    // (0600), whatever the umask (RELIABILITY S4).
    let temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(io)?
        .into_temp_path();
    {
        let mut conn = connect(&temporary, options, Role::Writer)?;
        migrate(&mut conn, &temporary)?;
        // Out of WAL mode for the move, so that the file alone is the whole
        // store (no `-wal` or `-shm` of the temporary name is left); the
        // first open of `path` sets WAL mode again.
        let mode = switch_journal(&conn, "PRAGMA journal_mode = DELETE")
            .map_err(|e| OpenError::sqlite(path, e))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(OpenError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("a new store stayed in journal mode {mode}"),
            });
        }
        conn.close().map_err(|(_, e)| OpenError::sqlite(path, e))?;
    }
    match temporary.persist_noclobber(path) {
        Ok(()) => {
            // The new name is made durable with the directory.
            #[cfg(unix)]
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(())
        }
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process made it first; the temporary file goes with `e`.
            if options.create_new {
                Err(OpenError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(())
            }
        }
        Err(e) => Err(io(e.error)),
    }
}

/// For a read-only open: the file must exist and be at least one page
/// long, as [`prepare_file`] checks an existing file; an empty one may be
/// a truncated copy ([`OpenError::EmptyFile`]).
fn check_existing(path: &Path) -> Result<(), OpenError> {
    let len = std::fs::metadata(path)
        .map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len == 0 {
        return Err(OpenError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if (1..512).contains(&len) {
        return Err(OpenError::NotADatabase {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Opens one connection with every per-connection setting applied: these
/// are not stored in the file, so each connection sets them (RELIABILITY S5).
pub(crate) fn connect(
    path: &Path,
    options: &SqliteOptions,
    role: Role,
) -> Result<Connection, OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    let flags = if options.read_only {
        if role == Role::Writer {
            check_existing(path)?;
        }
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        if role == Role::Writer {
            prepare_file(path)?;
        }
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let mut conn = match &options.vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs.as_str()),
        None => Connection::open_with_flags(path, flags),
    }
    .map_err(sqlite)?;
    conn.busy_timeout(options.busy_timeout).map_err(sqlite)?;
    // Refuse writes that could corrupt the file (writable_schema, ...), and
    // never run SQL functions named in the schema.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(sqlite)?;
    conn.pragma_update(None, "trusted_schema", false)
        .map_err(sqlite)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sqlite)?;
    let synchronous = match options.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(sqlite)?;
    if role == Role::Reader || options.read_only {
        conn.pragma_update(None, "query_only", true)
            .map_err(sqlite)?;
    } else {
        // What is deleted (a replaced or forgotten snapshot, a read
        // model's rows of a forgotten subject) is overwritten with zeros,
        // not left in free space. Read-model files and their registry are
        // written through this role too.
        conn.pragma_update(None, "secure_delete", true)
            .map_err(sqlite)?;
        conn.query_row(
            &format!("PRAGMA journal_size_limit = {LOG_LIMIT}"),
            [],
            |_| Ok(()),
        )
        .map_err(sqlite)?;
    }
    if let (Role::Writer, Some(pages)) = (role, options.max_page_count) {
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(sqlite)?;
    }
    conn.set_prepared_statement_cache_capacity(32);
    if let Some(trace) = options.trace {
        conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
            Some(move |event: rusqlite::trace::TraceEvent<'_>| {
                if let rusqlite::trace::TraceEvent::Stmt(_, sql) = event {
                    trace(sql);
                }
            }),
        )
        .map_err(sqlite)?;
    }
    Ok(conn)
}

/// Checks the file as `verify` says (see [`Verify`]).
pub(crate) fn verify(conn: &Connection, path: &Path, verify: Verify) -> Result<(), OpenError> {
    let pragma = match verify {
        Verify::Full => "PRAGMA integrity_check(10)",
        Verify::Quick => "PRAGMA quick_check(10)",
        Verify::Off => return Ok(()),
    };
    let check = || -> Result<Vec<String>, OpenError> {
        let mut check = conn
            .prepare(pragma)
            .map_err(|e| OpenError::sqlite(path, e))?;
        check
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| OpenError::sqlite(path, e))
    };
    let mut found = check()?;
    // The check reports a page it could not read (an I/O error, which it
    // does not return as one) among its findings, with what follows from
    // the page missing. Once more: a read that failed once and not again
    // was the disk's, not the file's; one that fails again is an I/O error,
    // not proof of damage either way.
    if unreadable(&found) {
        tracing::warn!(path = %path.display(), found = %found.join("; "), "the integrity check could not read a page; checking again");
        found = check()?;
        if unreadable(&found) {
            return Err(OpenError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!(
                    "the integrity check cannot read the file: {}",
                    found.join("; ")
                )),
            });
        }
    }
    if found == ["ok"] {
        Ok(())
    } else {
        Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            detail: found.join("; "),
        })
    }
}

/// Whether an integrity check's findings include a page it could not read:
/// SQLite's words for a failed page read, "failed to get page N" or
/// "unable to get the page. error code=C" with an I/O error's code
/// (`SQLITE_IOERR`, 10, in its low byte).
fn unreadable(found: &[String]) -> bool {
    found.iter().any(|line| {
        line.contains("failed to get page")
            || line
                .split("unable to get the page. error code=")
                .nth(1)
                .and_then(|code| code.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == rusqlite::ffi::SQLITE_IOERR)
    })
}

/// Puts the file in WAL mode and brings its schema to [`SCHEMA_VERSION`].
/// A database of a newer schema or of another application is refused and
/// left untouched.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    let (app, version) = identity(conn).map_err(sqlite)?;
    check_identity(conn, path, app, version)?;
    // A read-only file in another journal mode (a backup made with
    // `VACUUM INTO`) cannot switch; it can still be read.
    match switch_to_wal(conn) {
        Ok(mode) if mode.eq_ignore_ascii_case("wal") => {}
        Ok(mode) => tracing::warn!(path = %path.display(), %mode, "cannot switch to WAL mode"),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) => {
            tracing::warn!(path = %path.display(), "read-only file: staying in its journal mode");
        }
        Err(e) => return Err(sqlite(e)),
    }
    if app == APPLICATION_ID && version == SCHEMA_VERSION {
        return Ok(());
    }
    // Rebuilding a table (migration 2) drops a table other tables refer to:
    // foreign keys are off while migrating (they cannot change inside a
    // transaction), checked before the commit, and on again after.
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(sqlite)?;
    let migrated = migrate_locked(conn, path);
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sqlite)?;
    migrated
}

/// `PRAGMA journal_mode = WAL`, run to its end: the new mode, or the
/// error of the switch's commit. The switch writes the database's header
/// in a transaction that commits after the pragma's row, and `query_row`
/// would drop that commit's error (a failed write or flush) and report
/// `wal` for a file left in its old mode.
pub(crate) fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    switch_journal(conn, "PRAGMA journal_mode = WAL")
}

/// A `journal_mode` pragma run to its end, as [`switch_to_wal`] explains:
/// the new mode, or the error of its commit (or, out of WAL mode, of its
/// checkpoint).
fn switch_journal(conn: &Connection, pragma: &str) -> rusqlite::Result<String> {
    let mut pragma = conn.prepare(pragma)?;
    let mut rows = pragma.query([])?;
    let mode = match rows.next()? {
        Some(row) => row.get(0)?,
        None => String::new(),
    };
    while rows.next()?.is_some() {}
    Ok(mode)
}

/// For a read-only open, instead of [`migrate`]: the file must be an es
/// store of exactly this schema, since nothing may be created or upgraded.
pub(crate) fn check_current(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let (app, version) = identity(conn).map_err(|e| OpenError::sqlite(path, e))?;
    check_identity(conn, path, app, version)?;
    if app != APPLICATION_ID {
        // An empty database: its schema would have to be created.
        return Err(OpenError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    if version < SCHEMA_VERSION {
        return Err(OpenError::SchemaTooOld {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The migrations, in one `IMMEDIATE` transaction: another process may be
/// migrating too, so the version is read again under the write lock.
fn migrate_locked(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let (app, version) = identity(&tx).map_err(sqlite)?;
    check_identity(&tx, path, app, version)?;
    let from = usize::try_from(version).unwrap_or(usize::MAX);
    for migration in MIGRATIONS.iter().skip(from) {
        if let Some(before) = migration.before {
            before(&tx, path)?;
        }
        tx.execute_batch(migration.sql).map_err(sqlite)?;
    }
    let dangling: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()
        .map_err(sqlite)?;
    if let Some(table) = dangling {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("a row of `{table}` refers to a row that does not exist"),
        });
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sqlite)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sqlite)?;
    tx.commit().map_err(sqlite)
}

fn identity(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let app = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((app, version))
}

fn check_identity(conn: &Connection, path: &Path, app: i64, version: i64) -> Result<(), OpenError> {
    let path_buf = || path.to_path_buf();
    if app == APPLICATION_ID {
        return match version {
            v if v > SCHEMA_VERSION => Err(OpenError::SchemaTooNew {
                path: path_buf(),
                found: v,
                supported: SCHEMA_VERSION,
            }),
            v if v < 0 => Err(OpenError::Corrupt {
                path: path_buf(),
                detail: format!("schema version {v}"),
            }),
            _ => Ok(()),
        };
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| OpenError::sqlite(path, e))?;
    if app != 0 || version != 0 || tables != 0 {
        return Err(OpenError::ForeignDatabase { path: path_buf() });
    }
    Ok(())
}
