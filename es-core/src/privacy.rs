//! Forgettable payloads (crypto-shredding): [`Personal<T>`](crate::Personal)
//! fields encrypted under a key per data subject, and [`forget`](Keys::forget)
//! destroying the key.
//!
//! Events are immutable, so personal data in them cannot be deleted; it can
//! be made unreadable. A store opened with a [`KeyStore`] encrypts every
//! `Personal` field of every event it appends with XChaCha20-Poly1305 under
//! the data key of the field's *subject* (the person it is about: the
//! stream by default, or another field of the event named with
//! `#[personal(subject = field)]`). Destroying a subject's keys makes each
//! of its fields read as [`Personal::Forgotten`](crate::Personal::Forgotten)
//! forever, while every other field, every other subject and the events
//! themselves read as before.
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::privacy::{KeyEncryptionKey, MemoryKeyStore};
//! # use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Registered { pub plan: String, pub email: Personal<String> }
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "customer", events(Registered))]
//! pub struct Customer { email: Option<Personal<String>> }
//! impl Apply<Registered> for Customer {
//!     fn apply(&mut self, e: &Registered) { self.email = Some(e.email.clone()) }
//! }
//!
//! # es_core::blocking::block_on(async {
//! let keys = MemoryKeyStore::new(KeyEncryptionKey::generate());
//! let store = InMemoryStore::new().with_keys(keys);
//! let customers = Repository::<Customer, _>::new(store.clone());
//! customers
//!     .execute("42", |_| Registered { plan: "pro".into(), email: "ada@example.com".to_string().into() })
//!     .await?;
//!
//! // Stored encrypted: the store's bytes hold no e-mail.
//! let stored = store.stored_payloads();
//! assert!(!stored[0].contains("ada@example.com"));
//!
//! assert_eq!(customers.load("42").await?.state.email, Some(Personal::known("ada@example.com".into())));
//! customers.forget("customer-42").await?;
//! assert_eq!(customers.load("42").await?.state.email, Some(Personal::Forgotten));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The stored form
//!
//! Above the store, a `Personal` field of an event's payload is the object
//! `{"$personal": <value>, "subject": "<subject>"}` (`subject` absent: the
//! stream), or `{"$forgotten": true}`; that is what raw upcasters and
//! `$all` readers see. The store replaces each `$personal` object with
//! `{"$sealed": "<base64>", "subject": "<subject>"}` where the base64 is
//! 1 byte of format (1), the 16-byte id of the data key, a 24-byte random
//! nonce, and the XChaCha20-Poly1305 ciphertext and tag of the value's JSON.
//! The associated data binds each ciphertext to its place:
//! `es-personal-v1`, then the stream id, the event id (16 bytes), the
//! field's JSON pointer in the payload, and the subject, each string
//! preceded by its length as 4 bytes big-endian. A ciphertext moved to
//! another event, field or subject fails authentication: a typed error
//! ([`PrivacyError::Authentication`]), never another person's data.
//!
//! Data keys are random, 32 bytes, and kept by a [`KeyStore`] only wrapped
//! (encrypted) by a [`KeyEncryptionKey`] the application supplies, so a
//! stolen key file alone reveals nothing. A subject can get a new key after
//! it was forgotten (a returning customer); data sealed under the
//! destroyed key stays forgotten, since every ciphertext names its key.
//!
//! ## What forgetting covers, and what it does not
//!
//! - Events appended through a store without a key store, or before one
//!   was configured, hold their personal fields in plain text; forgetting
//!   cannot reach them (copy them to new streams with
//!   [`evolution::Migration`](crate::evolution::Migration), which seals the
//!   copies, then forget).
//! - Snapshots and read models hold decrypted states: a store's `forget`
//!   deletes every snapshot (they are an optimisation and are taken again),
//!   and read models that hold personal data must forget too (es-sqlite's
//!   read models delete the subject's rows in a hook of their own, or are
//!   rebuilt from the first event).
//! - Keys are cached in memory by [`Keys`]; `forget` through this process
//!   drops them from the cache at once, another process's cache keeps a
//!   forgotten key until it reopens its store or [evicts](Keys::evict) it
//!   (es-sqlite's read-model runners evict a subject's keys when they see
//!   its forgetting).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::id::StreamId;

/// The key of a personal field's value above the store.
pub const PERSONAL: &str = "$personal";
/// The key of a personal field's ciphertext in the store.
pub const SEALED: &str = "$sealed";
/// The key naming a personal field's subject.
pub const SUBJECT: &str = "subject";

/// The format byte of a sealed value.
const SEALED_FORMAT: u8 = 1;
/// The domain separation of the associated data of a sealed value.
const AAD_DOMAIN: &[u8] = b"es-personal-v1";
/// The domain separation of a wrapped data key's associated data.
const WRAP_DOMAIN: &[u8] = b"es-data-key-v1";
/// The plaintext a key store seals to check a key-encryption key at open.
const CHECK_PLAINTEXT: &[u8] = b"es key-encryption key check";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

thread_local! {
    /// Whether `Personal` fields serialize in their marked form (while an
    /// event is encoded) or as their plain value (everywhere else).
    static MARKING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with `Personal` fields serializing as `{"$personal": value}`.
pub(crate) fn marking<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MARKING.set(self.0);
        }
    }
    let _reset = Reset(MARKING.replace(true));
    f()
}

/// Whether `Personal` fields serialize marked now.
pub(crate) fn is_marking() -> bool {
    MARKING.get()
}

/// Sets the subject of the personal fields of an encoded payload: for each
/// `(field, subject_field)`, every marked value under `field` gets the text
/// of `subject_field`'s value as its subject.
///
/// # Errors
///
/// When a subject field is missing, or neither a string nor a number.
pub(crate) fn attach_subjects(
    payload: &str,
    subjects: &[(&str, &str)],
) -> Result<String, &'static str> {
    let mut value: Value =
        serde_json::from_str(payload).map_err(|_| "the encoded payload is not JSON")?;
    let Value::Object(fields) = &mut value else {
        return Err("a payload with personal subjects is a JSON object");
    };
    for (field, subject_field) in subjects {
        let subject = match fields.get(*subject_field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("a personal field's subject is a string or number field"),
        };
        if let Some(value) = fields.get_mut(*field) {
            visit_marked(value, &mut |marked| {
                marked.insert(SUBJECT.to_owned(), Value::String(subject.clone()));
            });
        }
    }
    serde_json::to_string(&value).map_err(|_| "the payload does not encode")
}

fn visit_marked(value: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(map) if map.contains_key(PERSONAL) => f(map),
        Value::Object(map) => map.values_mut().for_each(|v| visit_marked(v, f)),
        Value::Array(items) => items.iter_mut().for_each(|v| visit_marked(v, f)),
        _ => {}
    }
}

/// What can go wrong with personal data and keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivacyError {
    /// A sealed value failed authentication: it was altered, or moved from
    /// another event, field or subject.
    #[error(
        "the personal field `{pointer}` of event {event_id} in stream `{stream}` fails authentication: it was altered or moved"
    )]
    Authentication {
        /// The stream.
        stream: StreamId,
        /// The event.
        event_id: Uuid,
        /// The field, as a JSON pointer into the stored payload.
        pointer: String,
    },
    /// A sealed value or a marked one is malformed.
    #[error("the personal field `{pointer}` of event {event_id} is malformed: {reason}")]
    Malformed {
        /// The event.
        event_id: Uuid,
        /// The field.
        pointer: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key-encryption key does not open the key store: it is not the
    /// one the keys were wrapped with.
    #[error("the key-encryption key does not open this key store (a wrong key?)")]
    WrongKey,
    /// A key-encryption key of the wrong length or encoding.
    #[error("a key-encryption key is 32 bytes (64 hex digits): {0}")]
    InvalidKey(&'static str),
    /// An environment variable that should hold a key-encryption key does
    /// not.
    #[error(
        "the environment variable `{var}` holds no key-encryption key (64 hex digits): {reason}"
    )]
    InvalidKeyVariable {
        /// The variable.
        var: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key file cannot be read, or created.
    #[error("key file `{}`", path.display())]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file that others than its owner may read or write.
    #[error("key file `{}` may be read or written by others (mode {mode:o}): run `chmod 600` on it", path.display())]
    InsecureKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A value over the cipher's limit (256 GiB).
    #[error("a personal value is over the cipher's limit")]
    TooLarge,
    /// The key store failed.
    #[error("the key store failed")]
    KeyStore(#[source] crate::BoxError),
}

/// The key that wraps (encrypts) the data keys of a key store: supplied by
/// the application, from the environment or a file, and never stored with
/// the keys it wraps.
///
/// Its bytes are wiped from memory when it is dropped, and never printed.
#[derive(Clone)]
pub struct KeyEncryptionKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        KeyEncryptionKey(Zeroizing::new(bytes))
    }

    /// A key from 64 hex digits (surrounding whitespace ignored), as kept in
    /// an environment variable or a file.
    ///
    /// ```
    /// use es_core::privacy::KeyEncryptionKey;
    /// let key = KeyEncryptionKey::from_hex(&"ab".repeat(32))?;
    /// assert!(KeyEncryptionKey::from_hex("abc").is_err());
    /// # Ok::<(), es_core::privacy::PrivacyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PrivacyError::InvalidKey`] for other than 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, PrivacyError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != KEY_LEN * 2 {
            return Err(PrivacyError::InvalidKey("not 64 hex digits"));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(PrivacyError::InvalidKey("not a hex digit")),
            };
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(KeyEncryptionKey(bytes))
    }

    /// The key in the environment variable `var`, as 64 hex digits.
    ///
    /// # Errors
    ///
    /// [`PrivacyError::InvalidKeyVariable`] when the variable is unset or
    /// not 64 hex digits.
    pub fn from_env(var: &str) -> Result<Self, PrivacyError> {
        let invalid = |reason| PrivacyError::InvalidKeyVariable {
            var: var.to_owned(),
            reason,
        };
        let value = Zeroizing::new(std::env::var(var).map_err(|_| invalid("it is not set"))?);
        Self::from_hex(&value).map_err(|e| match e {
            PrivacyError::InvalidKey(reason) => invalid(reason),
            other => other,
        })
    }

    /// The key in the file at `path`, as 64 hex digits (surrounding
    /// whitespace ignored): a file the application keeps apart from the
    /// store's (a mounted secret, say).
    ///
    /// # Errors
    ///
    /// [`PrivacyError::KeyFile`] when the file cannot be read,
    /// [`PrivacyError::InsecureKeyFile`] when others than its owner may
    /// read or write it, [`PrivacyError::InvalidKey`] when it does not hold
    /// 64 hex digits.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, PrivacyError> {
        let path = path.as_ref();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|source| PrivacyError::KeyFile {
                    path: path.to_path_buf(),
                    source,
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(PrivacyError::InsecureKeyFile {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            PrivacyError::KeyFile {
                path: path.to_path_buf(),
                source,
            }
        })?);
        Self::from_hex(&text)
    }

    /// Makes a new random key and writes it to a new file at `path`, as 64
    /// hex digits, readable by its owner only; an existing file is never
    /// overwritten. For examples and first runs: a deployment keeps its key
    /// away from the store's files.
    ///
    /// ```
    /// use es_core::privacy::KeyEncryptionKey;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.kek");
    /// let made = KeyEncryptionKey::create_file(&path)?;
    /// assert_eq!(KeyEncryptionKey::from_file(&path)?.to_hex(), made.to_hex());
    /// assert!(KeyEncryptionKey::create_file(&path).is_err(), "never overwritten");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PrivacyError::KeyFile`] when the file exists or cannot be written.
    pub fn create_file(path: impl AsRef<std::path::Path>) -> Result<Self, PrivacyError> {
        use std::io::Write;
        let path = path.as_ref();
        let failed = |source| PrivacyError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(failed)?;
        file.write_all(key.to_hex().as_bytes()).map_err(failed)?;
        file.write_all(b"\n").map_err(failed)?;
        file.sync_all().map_err(failed)?;
        Ok(key)
    }

    /// The key in the environment variable `var` when it is set, else in
    /// the file at `path` ([`from_file`](KeyEncryptionKey::from_file)),
    /// else a new one written there
    /// ([`create_file`](KeyEncryptionKey::create_file)), and where it came
    /// from: what an example or a first run needs to work with no set-up.
    /// A deployment sets `var` (or points `path` at a mounted secret).
    ///
    /// ```
    /// use es_core::privacy::{KeyEncryptionKey, KeySource};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.kek");
    /// let (made, source) = KeyEncryptionKey::from_env_or_file("APP_KEK_UNSET_HERE", &path)?;
    /// assert_eq!(source, KeySource::Created);
    /// let (read, source) = KeyEncryptionKey::from_env_or_file("APP_KEK_UNSET_HERE", &path)?;
    /// assert_eq!((source, read.to_hex()), (KeySource::File, made.to_hex()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_env`](KeyEncryptionKey::from_env) when `var` is set, else
    /// as [`from_file`](KeyEncryptionKey::from_file) and
    /// [`create_file`](KeyEncryptionKey::create_file).
    pub fn from_env_or_file(
        var: &str,
        path: impl AsRef<std::path::Path>,
    ) -> Result<(Self, KeySource), PrivacyError> {
        let path = path.as_ref();
        if std::env::var_os(var).is_some() {
            return Self::from_env(var).map(|k| (k, KeySource::Env));
        }
        match Self::create_file(path) {
            Ok(key) => Ok((key, KeySource::Created)),
            Err(PrivacyError::KeyFile { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Self::from_file(path).map(|k| (k, KeySource::File))
            }
            Err(e) => Err(e),
        }
    }

    /// A new random key (for tests, or to create one to keep).
    pub fn generate() -> Self {
        KeyEncryptionKey(Zeroizing::new(random_key()))
    }

    /// The key as 64 lowercase hex digits, to keep it somewhere safe.
    pub fn to_hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = Zeroizing::new(String::with_capacity(KEY_LEN * 2));
        for b in self.0.iter() {
            hex.push(char::from(DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        hex
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }

    /// Wraps `key` (the data key `id` of `subject`): what a key store keeps.
    ///
    /// # Errors
    ///
    /// None in practice: [`PrivacyError::TooLarge`] cannot happen for a key.
    pub fn wrap(&self, subject: &str, key: &DataKey) -> Result<Vec<u8>, PrivacyError> {
        seal_bytes(&self.cipher(), key.key.as_ref(), &wrap_aad(subject, key.id))
    }

    /// Unwraps what [`wrap`](KeyEncryptionKey::wrap) made of the data key
    /// `id` of `subject`.
    ///
    /// # Errors
    ///
    /// [`PrivacyError::WrongKey`] when `wrapped` was not wrapped by this
    /// key for this subject and id.
    pub fn unwrap_key(
        &self,
        subject: &str,
        id: Uuid,
        wrapped: &[u8],
    ) -> Result<DataKey, PrivacyError> {
        let bytes = Zeroizing::new(
            open_bytes(&self.cipher(), wrapped, &wrap_aad(subject, id))
                .ok_or(PrivacyError::WrongKey)?,
        );
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| PrivacyError::WrongKey)?;
        Ok(DataKey {
            id,
            key: Zeroizing::new(key),
        })
    }

    /// A value a key store keeps to tell, when it opens, whether it was
    /// given the right key ([`check`](KeyEncryptionKey::check)).
    ///
    /// # Errors
    ///
    /// None in practice, as [`wrap`](KeyEncryptionKey::wrap).
    pub fn check_value(&self) -> Result<Vec<u8>, PrivacyError> {
        seal_bytes(&self.cipher(), CHECK_PLAINTEXT, b"es-key-check-v1")
    }

    /// Whether `value`, made by [`check_value`](KeyEncryptionKey::check_value),
    /// was made with this key.
    ///
    /// # Errors
    ///
    /// [`PrivacyError::WrongKey`] when it was not.
    pub fn check(&self, value: &[u8]) -> Result<(), PrivacyError> {
        match open_bytes(&self.cipher(), value, b"es-key-check-v1") {
            Some(plain) if plain == CHECK_PLAINTEXT => Ok(()),
            _ => Err(PrivacyError::WrongKey),
        }
    }
}

/// Where [`KeyEncryptionKey::from_env_or_file`] found the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// In the environment variable.
    Env,
    /// In the key file.
    File,
    /// Nowhere: a new key was written to the key file.
    Created,
}

/// A subject's data key: 32 random bytes and the id sealed values name it
/// by. Wiped from memory when dropped, never printed.
#[derive(Clone)]
pub struct DataKey {
    /// The key's id.
    pub id: Uuid,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A new random key with a new id.
    pub fn generate() -> Self {
        DataKey {
            id: Uuid::now_v7(),
            key: Zeroizing::new(random_key()),
        }
    }

    /// The key's bytes (for a test that checks they are gone from a file).
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let key = chacha20poly1305::Key::generate();
    key.into()
}

/// Where the data keys of subjects are kept, wrapped: es-sqlite's
/// `SqliteKeyStore` (a file of its own), or [`MemoryKeyStore`].
///
/// Calls are synchronous and may block on the key store's own file; the
/// [`Keys`] in front of a store caches the keys it unwraps, so a key store
/// is asked once per subject and process.
pub trait KeyStore: Send + Sync + 'static {
    /// The subject's current data key, made and stored (wrapped) when it
    /// has none.
    ///
    /// # Errors
    ///
    /// When the key store cannot be read or written.
    fn current_key(&self, subject: &str) -> Result<DataKey, PrivacyError>;

    /// The subject's data key `id`; `None` when it was destroyed (or never
    /// existed).
    ///
    /// # Errors
    ///
    /// When the key store cannot be read, or the key does not unwrap.
    fn key(&self, subject: &str, id: Uuid) -> Result<Option<DataKey>, PrivacyError>;

    /// Destroys every key of `subject`, so that no copy remains where the
    /// key store keeps them; returns how many it destroyed.
    ///
    /// # Errors
    ///
    /// When the key store cannot be written. Nothing may be assumed
    /// destroyed then: call it again.
    fn forget(&self, subject: &str) -> Result<usize, PrivacyError>;
}

/// A key store in memory: for tests, and for [`InMemoryStore`](crate::InMemoryStore).
#[derive(Debug, Clone)]
pub struct MemoryKeyStore {
    kek: KeyEncryptionKey,
    keys: Arc<Mutex<WrappedKeys>>,
}

/// Wrapped keys by subject, oldest first.
type WrappedKeys = HashMap<String, Vec<(Uuid, Vec<u8>)>>;

impl MemoryKeyStore {
    /// An empty key store wrapping its keys with `kek`.
    pub fn new(kek: KeyEncryptionKey) -> Self {
        MemoryKeyStore {
            kek,
            keys: Arc::default(),
        }
    }

    fn keys(&self) -> MutexGuard<'_, WrappedKeys> {
        // A panic while holding it cannot leave the map half-changed: each
        // change is one insert or remove.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyStore for MemoryKeyStore {
    fn current_key(&self, subject: &str) -> Result<DataKey, PrivacyError> {
        let mut keys = self.keys();
        if let Some((id, wrapped)) = keys.get(subject).and_then(|k| k.last()) {
            return self.kek.unwrap_key(subject, *id, wrapped);
        }
        let key = DataKey::generate();
        let wrapped = self.kek.wrap(subject, &key)?;
        keys.entry(subject.to_owned())
            .or_default()
            .push((key.id, wrapped));
        Ok(key)
    }

    fn key(&self, subject: &str, id: Uuid) -> Result<Option<DataKey>, PrivacyError> {
        let keys = self.keys();
        let Some((_, wrapped)) = keys
            .get(subject)
            .and_then(|k| k.iter().find(|(kid, _)| *kid == id))
        else {
            return Ok(None);
        };
        self.kek.unwrap_key(subject, id, wrapped).map(Some)
    }

    fn forget(&self, subject: &str) -> Result<usize, PrivacyError> {
        Ok(self.keys().remove(subject).map_or(0, |k| k.len()))
    }
}

/// A [`KeyStore`] in front of a store: seals the personal fields of the
/// events it appends, opens those it reads, and caches unwrapped keys.
///
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Keys {
    inner: Arc<KeysInner>,
}

struct KeysInner {
    store: Box<dyn KeyStore>,
    /// Unwrapped keys by subject, `None` for a key id known destroyed.
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Default)]
struct Cached {
    current: Option<DataKey>,
    by_id: HashMap<Uuid, Option<DataKey>>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys kept by `store`.
    pub fn new(store: impl KeyStore) -> Self {
        Keys {
            inner: Arc::new(KeysInner {
                store: Box::new(store),
                cache: Mutex::default(),
            }),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        // Each change to the cache is one insert or remove: a panic while
        // holding it leaves it consistent.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current_key(&self, subject: &str) -> Result<DataKey, PrivacyError> {
        if let Some(key) = self.cache().get(subject).and_then(|c| c.current.clone()) {
            return Ok(key);
        }
        let key = self.inner.store.current_key(subject)?;
        let mut cache = self.cache();
        let cached = cache.entry(subject.to_owned()).or_default();
        cached.current = Some(key.clone());
        cached.by_id.insert(key.id, Some(key.clone()));
        Ok(key)
    }

    fn key(&self, subject: &str, id: Uuid) -> Result<Option<DataKey>, PrivacyError> {
        if let Some(key) = self.cache().get(subject).and_then(|c| c.by_id.get(&id)) {
            return Ok(key.clone());
        }
        let key = self.inner.store.key(subject, id)?;
        self.cache()
            .entry(subject.to_owned())
            .or_default()
            .by_id
            .insert(id, key.clone());
        Ok(key)
    }

    /// Destroys every key of `subject` in the key store and in this cache.
    ///
    /// # Errors
    ///
    /// When the key store cannot be written.
    pub fn forget(&self, subject: &str) -> Result<usize, PrivacyError> {
        // Drop the cached keys first: a failure part way must not leave
        // them readable here.
        self.cache().remove(subject);
        let destroyed = self.inner.store.forget(subject);
        self.cache().remove(subject);
        destroyed
    }

    /// Drops the keys of `subject` cached in this process, leaving the key
    /// store as it is: for a process that learns that another one forgot
    /// the subject (es-sqlite's read-model runners do, when they see the
    /// `es.subject-forgotten` event), so that it stops opening the
    /// subject's values with a key the key store no longer holds.
    pub fn evict(&self, subject: &str) {
        self.cache().remove(subject);
    }

    /// Drops every key cached in this process (see [`evict`](Keys::evict)):
    /// each is read from the key store again when next needed.
    pub fn evict_all(&self) {
        self.cache().clear();
    }

    /// The payload with each `{"$personal": ..}` value sealed under its
    /// subject's current key; `None` when it has none (the payload is
    /// stored as it is).
    ///
    /// # Errors
    ///
    /// When a marked value is malformed, or the key store fails.
    pub fn seal(
        &self,
        payload: &str,
        stream: &StreamId,
        event_id: Uuid,
    ) -> Result<Option<String>, PrivacyError> {
        rewrite(
            payload,
            (PERSONAL, "\"$personal\""),
            event_id,
            |pointer, marked| self.seal_one(marked, pointer, stream, event_id),
        )
    }

    fn seal_one(
        &self,
        marked: &Map<String, Value>,
        pointer: &str,
        stream: &StreamId,
        event_id: Uuid,
    ) -> Result<Map<String, Value>, PrivacyError> {
        let subject = subject_of(marked, stream, event_id, pointer)?;
        let plain = Zeroizing::new(
            serde_json::to_vec(&marked[PERSONAL])
                .map_err(|_| malformed(event_id, pointer, "the value does not encode"))?,
        );
        let key = self.current_key(&subject)?;
        let aad = sealed_aad(stream, event_id, pointer, &subject);
        let mut blob = Vec::with_capacity(1 + 16 + NONCE_LEN + plain.len() + TAG_LEN);
        blob.push(SEALED_FORMAT);
        blob.extend_from_slice(key.id.as_bytes());
        blob.extend_from_slice(&seal_bytes(&key.cipher(), &plain, &aad)?);
        let mut sealed = Map::new();
        sealed.insert(
            SEALED.to_owned(),
            Value::String(Base64::encode_string(&blob)),
        );
        sealed.insert(SUBJECT.to_owned(), Value::String(subject));
        Ok(sealed)
    }

    /// Seals the personal fields of every event of `writes` (see
    /// [`seal`](Keys::seal)): what a store does before it appends them.
    ///
    /// # Errors
    ///
    /// As [`seal`](Keys::seal).
    pub fn seal_writes(&self, writes: &mut [crate::StreamWrite]) -> Result<(), PrivacyError> {
        for write in writes {
            for event in &mut write.events {
                if let Some(sealed) =
                    self.seal(event.payload.as_str(), &write.stream, event.event_id)?
                {
                    event.payload = sealed.into();
                }
            }
        }
        Ok(())
    }

    /// Opens the personal fields of a stored event in place (see
    /// [`open`](Keys::open)): what a store does before it hands the event out.
    ///
    /// # Errors
    ///
    /// As [`open`](Keys::open).
    pub fn open_event(&self, event: &mut crate::RecordedEvent) -> Result<(), PrivacyError> {
        if let Some(opened) = self.open(event.event.as_str(), &event.stream_id, event.event_id)? {
            event.event = opened.into();
        }
        Ok(())
    }

    /// The payload with each `{"$sealed": ..}` value opened back into its
    /// `{"$personal": ..}` form, or `{"$forgotten": true}` when its key was
    /// destroyed; `None` when it has none.
    ///
    /// # Errors
    ///
    /// [`PrivacyError::Authentication`] for a value altered or moved from
    /// elsewhere, [`PrivacyError::Malformed`], or the key store's failure.
    pub fn open(
        &self,
        payload: &str,
        stream: &StreamId,
        event_id: Uuid,
    ) -> Result<Option<String>, PrivacyError> {
        rewrite(
            payload,
            (SEALED, "\"$sealed\""),
            event_id,
            |pointer, sealed| open_one(self, sealed, pointer, stream, event_id),
        )
    }
}

fn open_one(
    keys: &Keys,
    sealed: &Map<String, Value>,
    pointer: &str,
    stream: &StreamId,
    event_id: Uuid,
) -> Result<Map<String, Value>, PrivacyError> {
    let subject = subject_of(sealed, stream, event_id, pointer)?;
    let blob = sealed[SEALED]
        .as_str()
        .and_then(|b| Base64::decode_vec(b).ok())
        .ok_or_else(|| malformed(event_id, pointer, "the sealed value is not base64"))?;
    if blob.len() < 1 + 16 + NONCE_LEN + TAG_LEN || blob[0] != SEALED_FORMAT {
        return Err(malformed(
            event_id,
            pointer,
            "the sealed value has an unknown format",
        ));
    }
    let (id, sealed_bytes) = blob[1..].split_at(16);
    let id = Uuid::from_slice(id).map_err(|_| malformed(event_id, pointer, "no key id"))?;
    let mut opened = Map::new();
    let Some(key) = keys.key(&subject, id)? else {
        opened.insert("$forgotten".to_owned(), Value::Bool(true));
        return Ok(opened);
    };
    let aad = sealed_aad(stream, event_id, pointer, &subject);
    let plain = Zeroizing::new(
        open_bytes(&key.cipher(), sealed_bytes, &aad).ok_or_else(|| {
            PrivacyError::Authentication {
                stream: stream.clone(),
                event_id,
                pointer: pointer.to_owned(),
            }
        })?,
    );
    let value: Value = serde_json::from_slice(&plain)
        .map_err(|_| malformed(event_id, pointer, "the opened value is not JSON"))?;
    opened.insert(PERSONAL.to_owned(), value);
    opened.insert(SUBJECT.to_owned(), Value::String(subject));
    Ok(opened)
}

fn subject_of(
    map: &Map<String, Value>,
    stream: &StreamId,
    event_id: Uuid,
    pointer: &str,
) -> Result<String, PrivacyError> {
    match map.get(SUBJECT) {
        None => Ok(stream.as_str().to_owned()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(malformed(
            event_id,
            pointer,
            "the subject is not a non-empty string",
        )),
    }
}

fn malformed(event_id: Uuid, pointer: &str, reason: &'static str) -> PrivacyError {
    PrivacyError::Malformed {
        event_id,
        pointer: pointer.to_owned(),
        reason,
    }
}

/// `payload` with each object holding the key `marker` replaced by what
/// `replace` makes of it (given its JSON pointer); `None` when no object
/// holds it. The one walk both sealing and opening make.
fn rewrite(
    payload: &str,
    (marker, quoted): (&str, &str),
    event_id: Uuid,
    mut replace: impl FnMut(&str, &Map<String, Value>) -> Result<Map<String, Value>, PrivacyError>,
) -> Result<Option<String>, PrivacyError> {
    // A cheap test first: most payloads hold no personal data.
    if !payload.contains(quoted) {
        return Ok(None);
    }
    let mut value: Value = serde_json::from_str(payload)
        .map_err(|_| malformed(event_id, "", "the payload is not JSON"))?;
    let mut failure = None;
    walk(&mut value, &mut String::new(), &mut |pointer, map| {
        if failure.is_some() || !map.contains_key(marker) {
            return false;
        }
        match replace(pointer, map) {
            Ok(replaced) => *map = replaced,
            Err(e) => failure = Some(e),
        }
        true
    });
    if let Some(e) = failure {
        return Err(e);
    }
    serde_json::to_string(&value)
        .map(Some)
        .map_err(|_| malformed(event_id, "", "the payload does not encode"))
}

/// Calls `f` with every object of `value` and its JSON pointer, depth
/// first; does not descend into an object for which `f` returns `true`.
fn walk(
    value: &mut Value,
    pointer: &mut String,
    f: &mut impl FnMut(&str, &mut Map<String, Value>) -> bool,
) {
    match value {
        Value::Object(map) => {
            if f(pointer, map) {
                return;
            }
            for (key, v) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(v, pointer, f);
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(v, pointer, f);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are of stream ids, pointers and subjects: far below 4 GiB.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn sealed_aad(stream: &StreamId, event_id: Uuid, pointer: &str, subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + stream.as_str().len() + pointer.len() + subject.len());
    aad.extend_from_slice(AAD_DOMAIN);
    push_len_prefixed(&mut aad, stream.as_str().as_bytes());
    aad.extend_from_slice(event_id.as_bytes());
    push_len_prefixed(&mut aad, pointer.as_bytes());
    push_len_prefixed(&mut aad, subject.as_bytes());
    aad
}

fn wrap_aad(subject: &str, id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_DOMAIN.len() + 20 + subject.len());
    aad.extend_from_slice(WRAP_DOMAIN);
    push_len_prefixed(&mut aad, subject.as_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// A random nonce, then the ciphertext and tag of `plain`.
///
/// # Errors
///
/// Only for a message over the cipher's limit (256 GiB).
fn seal_bytes(
    cipher: &XChaCha20Poly1305,
    plain: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PrivacyError> {
    let nonce = XNonce::generate();
    let ciphertext = cipher
        .encrypt(&nonce, AeadPayload { msg: plain, aad })
        .map_err(|_| PrivacyError::TooLarge)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens what [`seal_bytes`] made; `None` when it does not authenticate.
fn open_bytes(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher
        .decrypt(
            &nonce,
            AeadPayload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// The nonce of a sealed value (for the test that no nonce repeats).
#[doc(hidden)]
pub fn sealed_nonce(sealed: &str) -> Option<[u8; NONCE_LEN]> {
    let blob = Base64::decode_vec(sealed).ok()?;
    blob.get(17..17 + NONCE_LEN)?.try_into().ok()
}

/// The aggregate type of the streams that record forgotten subjects.
pub const SUBJECT_AGGREGATE: &str = "es.subject";
/// The name of the event that records a forgotten subject: its payload is
/// `{"subject": "...", "keys_destroyed": n, "snapshots_deleted": n}`, with
/// no personal data.
pub const FORGOTTEN_EVENT: &str = "es.subject-forgotten";

/// The stream that records the forgetting of `subject`:
/// `es.subject-{subject}`.
///
/// # Errors
///
/// When the subject makes no valid stream id (too long, control
/// characters).
pub fn subject_stream(subject: &str) -> crate::Result<StreamId> {
    Ok(StreamId::new(format!("{SUBJECT_AGGREGATE}-{subject}"))?)
}

/// What [`Forget::forget`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forgotten {
    /// The subject.
    pub subject: String,
    /// The keys destroyed (0 when it had none, or was forgotten before).
    pub keys_destroyed: usize,
    /// The snapshots deleted: every snapshot, since any may hold the
    /// subject's data decrypted.
    pub snapshots_deleted: u64,
    /// Where the `es.subject-forgotten` event was recorded.
    pub recorded: crate::AppendResult,
}

/// A store that can forget a data subject: destroy its keys so its
/// personal fields read as [`Personal::Forgotten`](crate::Personal::Forgotten)
/// everywhere, delete what holds them decrypted (snapshots), and record
/// an `es.subject-forgotten` event without personal data in
/// [`subject_stream`]. Re-running it is safe.
pub trait Forget: crate::EventStore + crate::SnapshotStore {
    /// Forgets `subject`, recording `metadata` (who asked, why) with the
    /// event: [`erase`](Forget::erase), then [`record_forgotten`]. A store
    /// overrides it only to do more after the event (es-sqlite truncates
    /// its write-ahead log, where deleted pages may linger).
    ///
    /// # Errors
    ///
    /// When the key store or the store cannot be written. The keys are
    /// destroyed first: after an error, call it again.
    fn forget(
        &self,
        subject: &str,
        metadata: crate::Metadata,
    ) -> impl Future<Output = crate::Result<Forgotten>> + Send {
        async move {
            let erased = self.erase(subject).await?;
            record_forgotten(
                self,
                subject,
                erased.keys_destroyed,
                erased.snapshots_deleted,
                metadata,
            )
            .await
        }
    }

    /// The steps of [`forget`](Forget::forget) before its event: destroys
    /// the subject's keys and deletes every snapshot, recording nothing.
    /// A [`ShardedStore`](crate::ShardedStore) forgets a subject by
    /// erasing it on every shard (its personal fields may be in streams of
    /// any shard, and each shard may have its own key store), then
    /// recording the one `es.subject-forgotten` event in the shard of
    /// [`subject_stream`]. Re-running it is safe.
    ///
    /// # Errors
    ///
    /// When the key store or the store cannot be written: the keys are
    /// destroyed first, call it again.
    fn erase(&self, subject: &str) -> impl Future<Output = crate::Result<Erased>> + Send;
}

/// What [`Forget::erase`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Erased {
    /// The keys destroyed (0 when it had none, or was forgotten before).
    pub keys_destroyed: usize,
    /// The snapshots deleted: every snapshot of the store.
    pub snapshots_deleted: u64,
}

impl Erased {
    /// What an erase did: `keys_destroyed` keys, `snapshots_deleted`
    /// snapshots.
    pub fn new(keys_destroyed: usize, snapshots_deleted: u64) -> Self {
        Erased {
            keys_destroyed,
            snapshots_deleted,
        }
    }
}

/// Whether `event` records a forgotten subject (the `es.subject-forgotten`
/// event of [`record_forgotten`]): what a read model's runner hands to the
/// model's forgetting instead of its handlers.
pub fn is_forgetting(event: &crate::RecordedEvent) -> bool {
    &*event.aggregate_type == SUBJECT_AGGREGATE && event.name == FORGOTTEN_EVENT
}

/// The subject a forgetting event names; `None` when it names none.
pub fn forgotten_subject(event: &crate::RecordedEvent) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_str(event.event.as_str()).ok()?;
    match payload.get("subject")? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Appends the `es.subject-forgotten` event of a forgetting: the last step
/// of every store's [`Forget::forget`].
///
/// # Errors
///
/// When the subject makes no valid stream id, or the append fails.
pub async fn record_forgotten<S: crate::EventStore + ?Sized>(
    store: &S,
    subject: &str,
    keys_destroyed: usize,
    snapshots_deleted: u64,
    metadata: crate::Metadata,
) -> crate::Result<Forgotten> {
    let stream = subject_stream(subject)?;
    let payload = serde_json::json!({
        "subject": subject,
        "keys_destroyed": keys_destroyed,
        "snapshots_deleted": snapshots_deleted,
    });
    let event = crate::NewEvent::new(SUBJECT_AGGREGATE, FORGOTTEN_EVENT, 1, payload.to_string())
        .with_metadata(metadata);
    let recorded = store
        .append(&stream, crate::ExpectedVersion::Any, vec![event])
        .await?;
    Ok(Forgotten {
        subject: subject.to_owned(),
        keys_destroyed,
        snapshots_deleted,
        recorded,
    })
}
