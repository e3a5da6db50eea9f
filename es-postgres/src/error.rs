//! Errors of opening a store, and how PostgreSQL's errors become
//! [`es_core::Error`]s.

use es_core::Error;
use es_core::privacy::PrivacyError;
use postgres::error::SqlState;

/// Why a [`PostgresStore`](crate::PostgresStore) or a
/// [`PostgresKeyStore`](crate::PostgresKeyStore) did not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string: {0}")]
    Config(#[source] postgres::Error),
    /// The server could not be reached, or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] postgres::Error),
    /// A statement of the schema set-up failed.
    #[error("cannot set up the es schema `{schema}`: {source}")]
    Schema {
        /// The PostgreSQL schema (namespace) the store's tables are in.
        schema: String,
        /// What PostgreSQL reported.
        #[source]
        source: postgres::Error,
    },
    /// The tables were made by a newer version of es-postgres: this one
    /// does not know their format and does not touch them.
    #[error(
        "the es schema `{schema}` is at version {found}, newer than this es-postgres knows ({known}); upgrade es-postgres"
    )]
    NewerSchema {
        /// The PostgreSQL schema.
        schema: String,
        /// The version found.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
    /// The schema name is empty, longer than PostgreSQL's 63 bytes, or
    /// holds other than ASCII letters, digits and `_`.
    #[error(
        "invalid schema name {0:?}: use 1 to 63 ASCII letters, digits or `_`, not starting with a digit"
    )]
    InvalidSchemaName(String),
    /// The server is not on this machine and no TLS connector was given:
    /// the connection (passwords, events) would cross the network in
    /// clear text.
    #[error(
        "refusing a connection without TLS to `{host}`, which is not on this machine: give a TLS connector with PostgresOptions::tls, or allow clear text with PostgresOptions::allow_plaintext"
    )]
    TlsRequired {
        /// The host named by the configuration.
        host: String,
    },
    /// The store's threads (writer, readers, listener) could not be
    /// started.
    #[error("cannot start the store's threads: {0}")]
    Threads(#[source] std::io::Error),
    /// The key-encryption key does not open the key store, or another
    /// failure of the keys.
    #[error("the key store failed: {0}")]
    Keys(#[from] PrivacyError),
}

/// A PostgreSQL error as the store reports it.
///
/// A lost connection or a refused socket is [`Error::Io`]; a full disk
/// [`Error::StorageFull`]; a read-only server (a standby, or
/// `default_transaction_read_only`) [`Error::ReadOnly`]; too many
/// connections, a lock or statement timeout, a deadlock or a
/// serialization failure [`Error::Busy`], which a caller may retry; data
/// corruption PostgreSQL detects [`Error::Corrupt`]; anything else
/// [`Error::Backend`] with the PostgreSQL error as its source.
pub(crate) fn store_error(e: postgres::Error) -> Error {
    let Some(code) = e.code() else {
        return Error::Io {
            detail: e.to_string(),
        };
    };
    match code {
        c if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => Error::StorageFull,
        c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => Error::ReadOnly,
        c if *c == SqlState::TOO_MANY_CONNECTIONS
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::QUERY_CANCELED
            || *c == SqlState::CANNOT_CONNECT_NOW =>
        {
            Error::Busy
        }
        c if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => Error::Corrupt {
            detail: e.to_string(),
        },
        c if *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CONNECTION_FAILURE
            || *c == SqlState::IO_ERROR =>
        {
            Error::Io {
                detail: e.to_string(),
            }
        }
        _ => Error::backend(e),
    }
}

/// Stored data that does not read back as what this store writes.
pub(crate) fn corrupt(detail: impl Into<String>) -> Error {
    Error::Corrupt {
        detail: detail.into(),
    }
}

/// A stored `bigint` as the store's unsigned number (positions, versions,
/// counts are never negative).
pub(crate) fn unsigned(n: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(n).map_err(|_| corrupt(format!("a stored {what} is negative: {n}")))
}

/// One of the store's numbers as PostgreSQL's `bigint`.
pub(crate) fn signed(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| corrupt(format!("{n} is over 2^63 - 1")))
}

/// A stored stream id, checked as every stream id is.
pub(crate) fn stored_stream(id: String) -> Result<es_core::StreamId, Error> {
    es_core::StreamId::new(id).map_err(|e| corrupt(format!("a stored stream id is invalid: {e}")))
}

/// A key store failure, as [`PrivacyError::KeyStore`].
pub(crate) fn key_error(e: postgres::Error) -> PrivacyError {
    PrivacyError::KeyStore(Box::new(e))
}
