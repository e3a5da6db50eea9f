//! [`SqliteKeyStore`]: the data keys of forgettable payloads, wrapped, in a
//! SQLite file of their own.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use es_core::Uuid;
use es_core::privacy::{DataKey, KeyEncryptionKey, KeyStore, PrivacyError};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::OpenError;

/// The data keys of subjects, each wrapped by the application's
/// [`KeyEncryptionKey`], in a SQLite file separate from the events (by
/// default `<events file>.keys`, see
/// [`SqliteOptions::personal_data`](crate::SqliteOptions::personal_data)).
///
/// A stolen key file reveals nothing without the key-encryption key, and
/// the events file holds no key. Forgetting a subject deletes its rows
/// with `secure_delete` on, so the deleted bytes are overwritten with
/// zeros in the file, and the rollback journal that held the page while
/// the deletion was written is removed when it commits (the file uses a
/// rollback journal, not a write-ahead log, so no old copy of a page
/// outlives the transaction). The file is created readable by its owner
/// only.
///
/// Opening checks the key-encryption key against a value sealed with it
/// when the file was created: a wrong key is
/// [`PrivacyError::WrongKey`] at once, not garbage later.
///
/// ```
/// use es_core::privacy::{KeyEncryptionKey, KeyStore, PrivacyError};
/// use es_sqlite::SqliteKeyStore;
///
/// let dir = tempfile::tempdir()?;
/// let kek = KeyEncryptionKey::generate();
/// let keys = SqliteKeyStore::open(dir.path().join("app.keys"), kek.clone())?;
/// let key = keys.current_key("customer-42")?;
/// assert_eq!(keys.key("customer-42", key.id)?.map(|k| k.id), Some(key.id));
/// assert_eq!(keys.forget("customer-42")?, 1);
/// assert!(keys.key("customer-42", key.id)?.is_none());
/// drop(keys);
///
/// let wrong = SqliteKeyStore::open(dir.path().join("app.keys"), KeyEncryptionKey::generate());
/// assert!(matches!(wrong, Err(es_sqlite::OpenError::Keys { source: PrivacyError::WrongKey, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteKeyStore {
    conn: Mutex<Connection>,
    kek: KeyEncryptionKey,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS es_keys (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS data_keys (
        subject TEXT NOT NULL,
        key_id BLOB NOT NULL,
        wrapped BLOB NOT NULL,
        PRIMARY KEY (subject, key_id)
    ) WITHOUT ROWID;
";

impl SqliteKeyStore {
    /// Opens (or creates) the key file at `path`, whose keys `kek` wraps.
    ///
    /// # Errors
    ///
    /// [`OpenError::Keys`] with [`PrivacyError::WrongKey`] when `kek` is not
    /// the key the file's keys were wrapped with; [`OpenError::Io`],
    /// [`OpenError::InsecurePermissions`] or another [`OpenError`] when the
    /// file cannot be opened.
    pub fn open(path: impl AsRef<Path>, kek: KeyEncryptionKey) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        crate::schema::prepare_file(&path)?;
        let sqlite = |source| OpenError::sqlite(&path, source);
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        // A rollback journal (deleted at each commit, so it keeps no old
        // page), zeros over deleted bytes, and every commit on disk.
        conn.execute_batch(
            "PRAGMA journal_mode = DELETE; PRAGMA secure_delete = ON; PRAGMA synchronous = FULL;",
        )
        .map_err(sqlite)?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(sqlite)?;
        let check: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM es_keys WHERE name = 'check'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sqlite)?;
        let keys_error = |source| OpenError::Keys {
            path: path.clone(),
            source,
        };
        if let Some(value) = check {
            kek.check(&value).map_err(keys_error)?;
        } else {
            let value = kek.check_value().map_err(keys_error)?;
            conn.execute(
                "INSERT OR IGNORE INTO es_keys (name, value) VALUES ('check', ?1)",
                [value],
            )
            .map_err(sqlite)?;
            // Another process may have created it first, with its key.
            let stored: Vec<u8> = conn
                .query_row("SELECT value FROM es_keys WHERE name = 'check'", [], |r| {
                    r.get(0)
                })
                .map_err(sqlite)?;
            kek.check(&stored).map_err(keys_error)?;
        }
        Ok(SqliteKeyStore {
            conn: Mutex::new(conn),
            kek,
            path,
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Every use is one statement or one transaction, which SQLite undoes
        // when it does not finish: a panic cannot leave the data half-changed.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn failed(e: rusqlite::Error) -> PrivacyError {
    PrivacyError::KeyStore(Box::new(e))
}

impl KeyStore for SqliteKeyStore {
    fn current_key(&self, subject: &str) -> Result<DataKey, PrivacyError> {
        let conn = self.conn();
        // The newest key of the subject: UUID v7 ids sort by creation.
        let newest = |conn: &Connection| {
            conn.query_row(
                "SELECT key_id, wrapped FROM data_keys WHERE subject = ?1 ORDER BY key_id DESC LIMIT 1",
                [subject],
                |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(failed)
        };
        if let Some((id, wrapped)) = newest(&conn)? {
            let id = Uuid::from_slice(&id).map_err(|e| PrivacyError::KeyStore(Box::new(e)))?;
            return self.kek.unwrap_key(subject, id, &wrapped);
        }
        let key = DataKey::generate();
        let wrapped = self.kek.wrap(subject, &key)?;
        conn.execute(
            "INSERT INTO data_keys (subject, key_id, wrapped) VALUES (?1, ?2, ?3)",
            params![subject, key.id.as_bytes().as_slice(), wrapped],
        )
        .map_err(failed)?;
        Ok(key)
    }

    fn key(&self, subject: &str, id: Uuid) -> Result<Option<DataKey>, PrivacyError> {
        let wrapped: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT wrapped FROM data_keys WHERE subject = ?1 AND key_id = ?2",
                params![subject, id.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(failed)?;
        wrapped
            .map(|w| self.kek.unwrap_key(subject, id, &w))
            .transpose()
    }

    fn forget(&self, subject: &str) -> Result<usize, PrivacyError> {
        self.conn()
            .execute("DELETE FROM data_keys WHERE subject = ?1", [subject])
            .map_err(failed)
    }
}
