//! How to open a store: durability, timeouts, threads, limits.

use std::path::Path;
use std::time::Duration;

use es_core::Limits;

use crate::error::OpenError;
use crate::inline::InlineModels;
use crate::read_model::ReadModel;
use crate::store::SqliteStore;

/// When an acknowledged append is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `PRAGMA synchronous = FULL` (the default): the write-ahead log is
    /// flushed to disk at every commit, so every acknowledged append survives
    /// a process crash, an operating-system crash and a power loss (when the
    /// disk honours flushes). Group commit shares one flush among all appends
    /// waiting at that moment.
    #[default]
    Full,
    /// `PRAGMA synchronous = NORMAL`: the log is flushed only at checkpoints.
    /// Acknowledged appends survive a process crash, and the database is never
    /// corrupted, but an operating-system crash or power loss may roll back
    /// the most recent commits. Faster; choose it only when losing the last
    /// moments of appends on power loss is acceptable.
    Normal,
}

/// How thoroughly [`SqliteStore::open`] checks a file before serving it,
/// as KurrentDB verifies its data files at start-up.
///
/// Every event carries a checksum checked on every read, and reads check
/// that versions and positions have no gaps; but damage to SQLite's own
/// pages can also hide rows without any read failing: a flipped byte in an
/// index makes a stream look shorter, or a stream id unfindable. Checking
/// the file at open finds it, and the store refuses to open
/// (`OpenError::Corrupt`) instead of answering from a damaged file.
///
/// Measured on this project's CI machine, for 1,000,000 Ticket events
/// (285 MB, in the operating system's cache): `Full` 1.05 s, `Quick`
/// 0.31 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// `PRAGMA integrity_check` (the default): every page, every index
    /// against its table. Finds every damage a single flipped byte was seen
    /// to cause in the T8 test.
    #[default]
    Full,
    /// `PRAGMA quick_check`: every page's structure, not the indexes'
    /// content (a damaged index key goes unnoticed).
    Quick,
    /// No check: for very large files opened often, checked some other way.
    Off,
}

/// Options for [`SqliteStore`]; start with [`SqliteStore::options`].
///
/// ```
/// use std::time::Duration;
/// use es_sqlite::{Durability, SqliteStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::options()
///     .durability(Durability::Full)
///     .busy_timeout(Duration::from_secs(10))
///     .readers(2)
///     .open(dir.path().join("events.db"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub(crate) durability: Durability,
    pub(crate) busy_timeout: Duration,
    pub(crate) readers: usize,
    pub(crate) limits: Limits,
    pub(crate) max_page_count: Option<u64>,
    pub(crate) trace: Option<fn(&str)>,
    pub(crate) max_batch: usize,
    pub(crate) page_size: usize,
    pub(crate) verify: Verify,
    pub(crate) inline: InlineModels,
    pub(crate) personal: Option<PersonalData>,
    pub(crate) read_only: bool,
    pub(crate) vfs: Option<String>,
    pub(crate) create_new: bool,
}

/// Where the keys of personal data come from.
#[derive(Clone)]
pub(crate) enum PersonalData {
    /// A [`SqliteKeyStore`](crate::SqliteKeyStore) at `<events file>.keys`.
    Beside(es_core::privacy::KeyEncryptionKey),
    /// The application's key store.
    Keys(es_core::privacy::Keys),
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PersonalData::Beside(_) => "PersonalData::Beside(..)",
            PersonalData::Keys(_) => "PersonalData::Keys(..)",
        })
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            readers: 2,
            limits: Limits::default(),
            max_page_count: None,
            trace: None,
            max_batch: 512,
            page_size: 512,
            verify: Verify::Full,
            inline: InlineModels::default(),
            personal: None,
            read_only: false,
            vfs: None,
            create_new: false,
        }
    }
}

impl SqliteOptions {
    /// The defaults: [`Durability::Full`], a 5 s busy timeout, 2 readers,
    /// default [`Limits`], the file's structure verified at open
    /// ([`Verify::Full`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the [`Durability`].
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long to wait for another process's lock before failing with
    /// `Error::Busy` (default 5 s).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many reader threads (each with its own connection) serve reads,
    /// and how many idle connections are kept for reads on the caller's
    /// thread (default 2, at least 1).
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// The input [`Limits`].
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Caps the database at this many pages (`PRAGMA max_page_count`); an
    /// append past it fails with `Error::StorageFull` and writes nothing.
    #[must_use]
    pub fn max_page_count(mut self, pages: u64) -> Self {
        self.max_page_count = Some(pages);
        self
    }

    /// Calls `trace` with every SQL statement the store runs, on every
    /// connection (for debugging and tests).
    #[must_use]
    pub fn trace(mut self, trace: fn(&str)) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The most queued requests committed in one transaction (default 512).
    #[must_use]
    pub fn max_batch(mut self, requests: usize) -> Self {
        self.max_batch = requests.max(1);
        self
    }

    /// How thoroughly opening checks the file's structure first (default
    /// [`Verify::Full`]); see [`Verify`].
    #[must_use]
    pub fn verify(mut self, verify: Verify) -> Self {
        self.verify = verify;
        self
    }

    /// Registers an inline read model: its tables live in the events file
    /// and the writer updates them inside each append's own transaction, so
    /// an append's caller reads its write as soon as the append returns
    /// ([`SqliteStore::query`]). A handler that refuses an event refuses the
    /// whole append (`Error::Projection`; nothing of it is written): an
    /// inline model can hold a rule across streams (a unique email), at the
    /// price of work on every append.
    ///
    /// At open the model is created when new, rebuilt from the first event
    /// when its version changed, and caught up when events were appended
    /// without it; opening waits for that. A model that takes long to build
    /// belongs in [`ReadModels`](crate::ReadModels), rebuilt without
    /// downtime.
    ///
    /// ```
    /// use es_core::prelude::*;
    /// use es_core::{BoxError, Envelope, NewEvent};
    /// use es_sqlite::rusqlite::{self, Connection};
    /// use es_sqlite::{ReadModel, SqliteStore};
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    /// # #[event(name = "user-registered")]
    /// # pub struct Registered { pub email: String }
    ///
    /// /// Emails in use: a second registration with one is refused.
    /// #[derive(Projection, Default)]
    /// #[projection(name = "emails", events(Registered), context = Connection)]
    /// pub struct Emails;
    /// impl ReadModel for Emails {
    ///     fn create(db: &Connection) -> rusqlite::Result<()> {
    ///         db.execute_batch("CREATE TABLE emails (email TEXT PRIMARY KEY, user TEXT NOT NULL)")
    ///     }
    /// }
    /// impl Handle<Registered, Connection> for Emails {
    ///     fn handle(&mut self, db: &Connection, e: &Envelope<Registered>) -> Result<(), BoxError> {
    ///         db.prepare_cached("INSERT INTO emails VALUES (?1, ?2)")?
    ///             .execute((&e.event.email, e.stream_id.as_str()))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # es_core::blocking::block_on(async {
    /// let store = SqliteStore::options().inline(Emails).open_temporary()?;
    /// let registered = |email: &str| NewEvent::new("user", "user-registered", 1, format!(r#"{{"email":"{email}"}}"#));
    /// let ada = StreamId::new("user-1")?;
    /// store.append(&ada, ExpectedVersion::NoStream, vec![registered("ada@example.com")]).await?;
    /// // Read at once: the table changed in the append's transaction.
    /// let owner: Vec<(String,)> = store.rows::<Emails, _>("SELECT user FROM emails WHERE email = ?1", ["ada@example.com"])?;
    /// assert_eq!(owner, [("user-1".to_string(),)]);
    /// // The same email again: the model refuses it, and the append with it.
    /// let eve = StreamId::new("user-2")?;
    /// let refused = store.append(&eve, ExpectedVersion::NoStream, vec![registered("ada@example.com")]).await;
    /// assert!(matches!(refused, Err(es_core::Error::Projection(_))));
    /// assert_eq!(store.stream_version(&eve).await?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn inline<R: ReadModel>(mut self, model: R) -> Self {
        self.inline.push(model);
        self
    }

    /// Seals the [`Personal`](es_core::Personal) fields of every event it
    /// appends, under keys kept in a [`SqliteKeyStore`](crate::SqliteKeyStore)
    /// beside the events file (`<events file>.keys`, created when missing)
    /// and wrapped by `kek`; see [`es_core::privacy`] and
    /// [`SqliteStore::forget`](es_core::privacy::Forget::forget).
    ///
    /// ```
    /// use es_core::privacy::KeyEncryptionKey;
    /// use es_sqlite::SqliteStore;
    ///
    /// let dir = tempfile::tempdir()?;
    /// // In a program: KeyEncryptionKey::from_env("TICKETS_KEK")?
    /// let kek = KeyEncryptionKey::from_hex(&"5a".repeat(32))?;
    /// let store = SqliteStore::options().personal_data(kek).open(dir.path().join("tickets.db"))?;
    /// assert!(dir.path().join("tickets.db.keys").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn personal_data(mut self, kek: es_core::privacy::KeyEncryptionKey) -> Self {
        self.personal = Some(PersonalData::Beside(kek));
        self
    }

    /// As [`personal_data`](SqliteOptions::personal_data), with the keys
    /// in `keys` (another file, a key service, memory for tests).
    #[must_use]
    pub fn key_store(mut self, keys: impl es_core::privacy::KeyStore) -> Self {
        self.personal = Some(PersonalData::Keys(es_core::privacy::Keys::new(keys)));
        self
    }

    /// Opens the store for reading only, for tools that inspect a file
    /// they must not change (an auditor's copy, a backup, another
    /// program's store).
    ///
    /// Every connection is opened `SQLITE_OPEN_READONLY`: the file must
    /// already exist (it is never created), its schema is never created or
    /// migrated, and the log is not checkpointed on close. A file of the
    /// current schema opens; one of an older schema is refused with
    /// [`OpenError::SchemaTooOld`] (open it once for writing to upgrade
    /// it), an empty (0-byte) one with [`OpenError::EmptyFile`], an SQLite
    /// database without a store's schema with [`OpenError::ReadOnly`]. Every read works as
    /// usual; every write fails with `Error::ReadOnly` and writes nothing.
    /// Inline read models are not created or caught up: their tables are
    /// read as they are.
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
    /// use es_core::blocking::block_on;
    /// use es_sqlite::SqliteStore;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("events.db");
    /// let stream = StreamId::new("ticket-1")?;
    /// let opened = NewEvent::new("ticket", "ticket-opened", 1, "{}");
    /// block_on(SqliteStore::open(&path)?.append(&stream, ExpectedVersion::NoStream, vec![opened]))?;
    ///
    /// let reading = SqliteStore::options().read_only().open(&path)?;
    /// assert_eq!(block_on(reading.stream_version(&stream))?, 1);
    /// let closed = NewEvent::new("ticket", "ticket-closed", 1, "{}");
    /// let refused = block_on(reading.append(&stream, ExpectedVersion::Exact(1), vec![closed]));
    /// assert!(matches!(refused, Err(es_core::Error::ReadOnly)));
    /// assert!(SqliteStore::options().read_only().open(dir.path().join("missing.db")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Opens every connection of the store (its writer, its readers, its
    /// read-model files; not the key file of personal data) through the
    /// SQLite VFS registered under `name`, instead of the default one: for
    /// tests that simulate a power cut or a failing disk (the workspace's
    /// `es-test-vfs` does both), or a program's own VFS. The VFS must be
    /// registered (`sqlite3_vfs_register`, through `rusqlite::ffi`) before
    /// the store opens; an unknown name fails the open.
    #[must_use]
    pub fn vfs(mut self, name: &str) -> Self {
        self.vfs = Some(name.to_owned());
        self
    }

    /// Asks for a new store: the file must be missing or empty (0 bytes),
    /// and becomes a new, empty store; a file with anything in it (or a
    /// non-empty write-ahead log beside it) is refused with
    /// [`OpenError::AlreadyExists`] and left untouched.
    ///
    /// Without it (the default), a missing file is created and an existing
    /// store is opened, but an existing empty file is refused with
    /// [`OpenError::EmptyFile`]: a 0-byte file where a store should be is
    /// more often a truncated copy than a new store, and opening it as a new
    /// one would hide the loss.
    ///
    /// ```
    /// use es_sqlite::{OpenError, SqliteStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("events.db");
    /// std::fs::write(&path, b"")?; // a copy cut short, or a file made on purpose
    /// assert!(matches!(SqliteStore::open(&path), Err(OpenError::EmptyFile { .. })));
    /// drop(SqliteStore::options().create_new().open(&path)?); // asked for: a new store
    /// assert!(matches!(
    ///     SqliteStore::options().create_new().open(&path),
    ///     Err(OpenError::AlreadyExists { .. })
    /// ));
    /// drop(SqliteStore::open(&path)?); // an existing store opens as usual
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn create_new(mut self) -> Self {
        self.create_new = true;
        self
    }

    /// Opens (creating or migrating) the database at `path`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`]; with [`create_new`](SqliteOptions::create_new),
    /// [`OpenError::AlreadyExists`]; with [`personal_data`](SqliteOptions::personal_data),
    /// [`OpenError::Keys`] when the key-encryption key is not the key file's.
    pub fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_with(path.as_ref(), &self, None)
    }

    /// Opens a new database in a temporary directory, deleted when the last
    /// handle to the store is dropped. For tests and examples.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created.
    pub fn open_temporary(self) -> Result<SqliteStore, OpenError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("es-sqlite-");
        // Private to its owner whatever the umask (RELIABILITY S4).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let dir = builder.tempdir().map_err(|source| OpenError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let path = dir.path().join("events.db");
        SqliteStore::open_with(&path, &self, Some(dir))
    }
}
