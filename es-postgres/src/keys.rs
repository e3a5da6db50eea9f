//! [`PostgresKeyStore`]: the data keys of forgettable payloads, wrapped, in
//! PostgreSQL tables.

use std::sync::{Mutex, MutexGuard, PoisonError};

use es_core::Uuid;
use es_core::privacy::{DataKey, KeyEncryptionKey, KeyStore, PrivacyError};
use postgres::Client;

use crate::conn::{Connector, quote_ident};
use crate::error::{OpenError, key_error};
use crate::options::PostgresOptions;

/// The data keys of subjects, each wrapped by the application's
/// [`KeyEncryptionKey`], in two tables (`es_data_keys`, `es_key_check`) of
/// a PostgreSQL schema: by default the store's own (see
/// [`PostgresOptions::personal_data`]), or one on another server
/// ([`PostgresKeyStore::connect`], then
/// [`PostgresOptions::key_store`]), so that a backup of the events holds
/// no key.
///
/// A stolen table reveals nothing without the key-encryption key. Opening
/// checks the key against a value sealed with it when the tables were
/// made: a wrong key is [`PrivacyError::WrongKey`] at once, not garbage
/// later.
///
/// Forgetting a subject deletes its rows and vacuums the table, so the
/// space is reused. PostgreSQL does not overwrite deleted rows at once:
/// until the page is rewritten, and as long as the write-ahead log and
/// base backups that hold them are kept, the wrapped keys are still on
/// disk (wrapped: useless without the key-encryption key). Where erasure
/// must reach the disk on a deadline, keep the key store on a server of
/// its own whose log and backups are kept for no longer than that.
pub struct PostgresKeyStore {
    /// The connection, made again when it was lost.
    client: Mutex<Option<Client>>,
    connector: Connector,
    kek: KeyEncryptionKey,
}

impl std::fmt::Debug for PostgresKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresKeyStore").finish_non_exhaustive()
    }
}

impl PostgresKeyStore {
    /// Connects to the database `url` names and opens (or makes) the key
    /// tables in schema `schema`, whose keys `kek` wraps.
    ///
    /// # Errors
    ///
    /// [`OpenError::Keys`] with [`PrivacyError::WrongKey`] when `kek` is
    /// not the key the stored keys were wrapped with; another
    /// [`OpenError`] when the database cannot be reached.
    pub fn connect(url: &str, schema: &str, kek: KeyEncryptionKey) -> Result<Self, OpenError> {
        let config: postgres::Config = url.parse().map_err(OpenError::Config)?;
        let connector = PostgresOptions::new().schema(schema).connector(config)?;
        Self::open(&connector, kek)
    }

    pub(crate) fn open(connector: &Connector, kek: KeyEncryptionKey) -> Result<Self, OpenError> {
        let failed = |source| OpenError::Schema {
            schema: connector.schema.clone(),
            source,
        };
        let mut client = connector.client().map_err(OpenError::Connect)?;
        let mut tx = client.transaction().map_err(failed)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('es-postgres keys ' || $1::text))",
            &[&connector.schema],
        )
        .map_err(failed)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.es_key_check (
                 one boolean PRIMARY KEY DEFAULT true CHECK (one),
                 value bytea NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {schema}.es_data_keys (
                 subject text NOT NULL,
                 key_id uuid NOT NULL,
                 wrapped bytea NOT NULL,
                 PRIMARY KEY (subject, key_id)
             );",
            schema = quote_ident(&connector.schema)
        ))
        .map_err(failed)?;
        let stored: Option<Vec<u8>> = tx
            .query_opt("SELECT value FROM es_key_check", &[])
            .map_err(failed)?
            .map(|row| row.get(0));
        if let Some(value) = stored {
            kek.check(&value)?;
        } else {
            let value = kek.check_value()?;
            tx.execute(
                "INSERT INTO es_key_check (one, value) VALUES (true, $1)",
                &[&value],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        Ok(PostgresKeyStore {
            client: Mutex::new(Some(client)),
            connector: connector.clone(),
            kek,
        })
    }

    /// Runs `f` with the connection, connecting again when it was lost.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, PrivacyError> {
        // Every use is one statement, which PostgreSQL undoes when it does
        // not finish: a panic cannot leave the data half-changed.
        let mut guard: MutexGuard<'_, Option<Client>> =
            self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connector.client().map_err(key_error)?);
        }
        let client = guard
            .as_mut()
            .ok_or(PrivacyError::KeyStore("no connection".into()))?;
        f(client).map_err(key_error)
    }
}

impl KeyStore for PostgresKeyStore {
    fn current_key(&self, subject: &str) -> Result<DataKey, PrivacyError> {
        // The newest key of the subject: UUID v7 ids sort by creation.
        let newest = self.with(|client| {
            client.query_opt(
                "SELECT key_id, wrapped FROM es_data_keys WHERE subject = $1 ORDER BY key_id DESC LIMIT 1",
                &[&subject],
            )
        })?;
        if let Some(row) = newest {
            let wrapped: Vec<u8> = row.get(1);
            return self.kek.unwrap_key(subject, row.get(0), &wrapped);
        }
        let key = DataKey::generate();
        let wrapped = self.kek.wrap(subject, &key)?;
        // Two processes may make a first key at once: both keep working,
        // each with its own (a subject may have several keys).
        self.with(|client| {
            client.execute(
                "INSERT INTO es_data_keys (subject, key_id, wrapped) VALUES ($1, $2, $3)",
                &[&subject, &key.id, &wrapped],
            )
        })?;
        Ok(key)
    }

    fn key(&self, subject: &str, id: Uuid) -> Result<Option<DataKey>, PrivacyError> {
        let row = self.with(|client| {
            client.query_opt(
                "SELECT wrapped FROM es_data_keys WHERE subject = $1 AND key_id = $2",
                &[&subject, &id],
            )
        })?;
        row.map(|row| self.kek.unwrap_key(subject, id, &row.get::<_, Vec<u8>>(0)))
            .transpose()
    }

    fn forget(&self, subject: &str) -> Result<usize, PrivacyError> {
        let deleted = self.with(|client| {
            let deleted =
                client.execute("DELETE FROM es_data_keys WHERE subject = $1", &[&subject])?;
            if deleted > 0 {
                // Outside a transaction block, as VACUUM must be.
                client.batch_execute("VACUUM es_data_keys")?;
            }
            Ok(deleted)
        })?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }
}
