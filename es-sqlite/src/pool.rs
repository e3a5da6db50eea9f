//! Reader connections used on the calling thread, for reads short enough
//! that handing them to a reader thread would cost more than running them:
//! a version, a snapshot, a checkpoint, the first page of a stream.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use es_core::Result;
use rusqlite::Connection;

use crate::damage::Damage;
use crate::error::connect_error;
use crate::options::SqliteOptions;
use crate::schema::{self, Role};

pub(crate) struct Pool {
    path: PathBuf,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
    /// Where a read that meets damage records it.
    damage: Arc<Damage>,
}

impl Pool {
    pub(crate) fn new(
        path: PathBuf,
        options: SqliteOptions,
        first: Connection,
        damage: Arc<Damage>,
    ) -> Self {
        Pool {
            path,
            options,
            idle: Mutex::new(vec![first]),
            damage,
        }
    }

    /// Runs `read` on an idle connection, opening one when all are busy.
    /// At most `readers` idle connections are kept. Damage that `read`
    /// reports is recorded (the store then refuses writes).
    pub(crate) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                schema::connect(&self.path, &self.options, Role::Reader).map_err(connect_error)?
            }
        };
        let result = self.damage.check(read(&conn));
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.options.readers {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections (the store is closing: nothing reads any
    /// more).
    pub(crate) fn close(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for conn in idle {
            if let Err((_, error)) = conn.close() {
                tracing::warn!(%error, "cannot close a read connection");
            }
        }
    }
}
