//! Commits of other processes: `LISTEN/NOTIFY`, with polling as the
//! fallback.
//!
//! The writer sends a notification on the store's channel in each write
//! transaction; PostgreSQL delivers it when (and only if) the transaction
//! commits. A thread with a connection of its own listens on the channel
//! and, on each notification that says more than the store knows, reads
//! the head of the log and wakes the store's watches. It also reads the
//! head every poll interval when nothing arrives, so a notification lost
//! with a connection (or `LISTEN` turned off) delays a watch by at most
//! one interval.

use std::sync::Weak;
use std::time::Duration;

use es_core::store::backend::Notifier;
use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use crate::conn::{Connector, quote_ident};

/// The listener thread's state.
pub(crate) struct Listener {
    pub(crate) connector: Connector,
    pub(crate) channel: String,
    pub(crate) listen: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) notifier: Notifier,
    /// Gone when the store is: the thread then stops.
    pub(crate) alive: Weak<()>,
}

impl Listener {
    pub(crate) fn run(self) {
        let mut client: Option<Client> = None;
        while self.alive.strong_count() > 0 {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = self.connect();
                if client.is_none() {
                    std::thread::sleep(self.poll_interval);
                    continue;
                }
            }
            let Some(c) = client.as_mut() else { continue };
            let mut read_head = true;
            if self.listen {
                let mut notifications = c.notifications();
                let first = notifications.timeout_iter(self.poll_interval).next();
                match first {
                    // Nothing for a whole interval: poll.
                    Ok(None) => {}
                    Ok(Some(first)) => {
                        let known = self.notifier.watch().last_position();
                        let mut newest = parse(first.payload());
                        // Drain what else is pending: one read of the head for all.
                        let mut pending = notifications.iter();
                        while let Ok(Some(more)) = pending.next() {
                            newest = newest.max(parse(more.payload()));
                        }
                        // The store's own commits are known already.
                        read_head = newest > known;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the listening connection failed");
                        drop(notifications);
                        client = None;
                        continue;
                    }
                }
            } else {
                std::thread::sleep(self.poll_interval);
            }
            if read_head {
                match c.query_one("SELECT position FROM es_head", &[]) {
                    Ok(row) => {
                        let head: i64 = row.get(0);
                        self.notifier.notify(u64::try_from(head).unwrap_or(0));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the listener could not read the head");
                        client = None;
                    }
                }
            }
        }
    }

    fn connect(&self) -> Option<Client> {
        let mut client = self
            .connector
            .client()
            .map_err(|e| tracing::debug!(error = %e, "the listener cannot connect"))
            .ok()?;
        if self.listen {
            client
                .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel)))
                .map_err(|e| tracing::debug!(error = %e, "LISTEN failed"))
                .ok()?;
        }
        Some(client)
    }
}

/// A notification's position; 0 for one that is not a number (it then
/// only triggers a read of the head when the store knows nothing yet).
fn parse(payload: &str) -> u64 {
    payload.parse().unwrap_or(0)
}

/// The channel of the store in `schema`: PostgreSQL's channel names, like
/// its identifiers, have at most 63 bytes. Two schemas whose names share
/// their first 60 bytes share a channel, which costs a read of the head,
/// never a wrong answer: the listener reads the head of its own schema.
pub(crate) fn channel(schema: &str) -> String {
    let end = schema
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= 60)
        .last()
        .unwrap_or(0);
    format!("es_{}", &schema[..end])
}
