//! What a store does once it finds damage in its file: it goes on reading
//! and refuses every write until it is opened again.
//!
//! Damage is [`Error::Corrupt`]: SQLite's `SQLITE_CORRUPT` or
//! `SQLITE_NOTADB` on any statement, a row that fails its checksum or has a
//! column of a type it cannot have, a gap in a stream's versions or in the
//! positions of `$all`. Whichever read or write meets it first (on any
//! clone of the store, on the caller's thread, a reader thread or the
//! writer) records it here; from then on the writer answers every request
//! with [`Error::WritesRefused`] without starting a transaction. Writing on
//! into a file known to be damaged would put new events beside rows that
//! no longer read back, and a later SQLite write through a damaged b-tree
//! page can spread the damage.

use std::sync::OnceLock;

use es_core::Error;

/// The first damage the store found since it was opened, if any.
#[derive(Debug, Default)]
pub(crate) struct Damage {
    first: OnceLock<String>,
}

impl Damage {
    /// Records `error` when it reports damage.
    pub(crate) fn note(&self, error: &Error) {
        if let Error::Corrupt { detail } = error
            && self.first.set(detail.clone()).is_ok()
        {
            tracing::error!(
                %detail,
                "damage found in the events file: every further write is refused until the store is opened again"
            );
        }
    }

    /// Records the error of `result`, if it reports damage; returns
    /// `result` unchanged.
    pub(crate) fn check<T>(&self, result: es_core::Result<T>) -> es_core::Result<T> {
        if let Err(error) = &result {
            self.note(error);
        }
        result
    }

    /// What the first damage found said.
    pub(crate) fn found(&self) -> Option<&str> {
        self.first.get().map(String::as_str)
    }

    /// The error every write gets once damage was found.
    pub(crate) fn refusal(&self) -> Option<Error> {
        self.found().map(|detail| Error::WritesRefused {
            detail: detail.to_owned(),
        })
    }
}
