//! Live updates: `GET /api/events`, server-sent events fed by the ticket
//! list's runner.
//!
//! One task follows the runner: each time the list has taken events, it
//! reads them from `$all` and sends a [`Change`] for each to every client.
//! A client told of a change can query the list at once and find it there
//! (the change is sent after the list committed it), and load the ticket.

use std::convert::Infallible;
use std::sync::{Arc, Weak};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use es_core::RecordedEvent;
use es_core::prelude::*;
use es_core::store::next;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};

use super::Service;
use super::problem::{Problem, Query};

/// A change to a ticket, as the live feed sends it (`event: change`, its
/// `id` the position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The event's global position.
    pub position: u64,
    /// The ticket's id.
    pub ticket: String,
    /// The ticket's version after it (0 for a forgetting, which is
    /// recorded in a stream of its own).
    pub version: u64,
    /// The event's stored name (`message-added`, `es.subject-forgotten`).
    pub name: String,
}

/// The prefix of the stream recording a forgotten ticket's customer.
const FORGOTTEN_TICKET: &str = "es.subject-ticket-";

/// The change `event` makes to a ticket, if it is one.
fn change_of(event: &RecordedEvent) -> Option<Change> {
    let (ticket, version) = if &*event.aggregate_type == <crate::Ticket as Aggregate>::NAME {
        (event.aggregate_id().to_owned(), event.version)
    } else {
        (
            event
                .stream_id
                .as_str()
                .strip_prefix(FORGOTTEN_TICKET)?
                .to_owned(),
            0,
        )
    };
    Some(Change {
        position: event.position,
        ticket,
        version,
        name: event.name.clone(),
    })
}

/// The changes at positions `from..=to`.
async fn changes(service: &Service, from: u64, to: u64) -> es_core::Result<Vec<Change>> {
    let mut read = service.tickets.store().read_all(from);
    let mut found = Vec::new();
    while let Some(event) = next(&mut read).await {
        let event = event?;
        if event.position > to {
            break;
        }
        found.extend(change_of(&event));
    }
    Ok(found)
}

/// Follows the list's runner and sends each change, until the service is
/// dropped or the runner ends.
pub(super) async fn feed(service: Weak<Service>) {
    let start = match service.upgrade() {
        Some(s) => s.tickets.store().last_position().await,
        None => return,
    };
    let mut from = match start {
        Ok(head) => head + 1,
        Err(error) => {
            tracing::error!(%error, "the live feed cannot read the store");
            return;
        }
    };
    loop {
        // Holds no reference while it waits: the service can be dropped.
        let taken = match service.upgrade() {
            Some(s) => s.list.wait_for(from),
            None => return,
        };
        if let Err(error) = taken.await {
            tracing::warn!(%error, "the ticket list stopped; live updates stop");
            return;
        }
        let Some(service) = service.upgrade() else {
            return;
        };
        let to = service.list.progress().position.max(from);
        match changes(&service, from, to).await {
            Ok(found) => {
                for change in found {
                    // No client listening is not an error.
                    let _ = service.live.send(change);
                }
                from = to + 1;
            }
            Err(error) => {
                tracing::warn!(%error, "the live feed could not read; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    }
}

/// `GET /api/events?from=`.
#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    /// Send the changes from this position first (as `Last-Event-ID` + 1
    /// does on a reconnection).
    from: Option<u64>,
}

/// Counts a client for as long as its stream lives.
struct Client(Arc<Service>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.metrics.live_client(-1);
    }
}

fn sse(name: &str, id: Option<u64>, data: &impl Serialize) -> Event {
    let event = Event::default().event(name);
    let event = match id {
        Some(id) => event.id(id.to_string()),
        None => event,
    };
    // A Change or a small map always serializes.
    event
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name))
}

/// The live feed: first `event: ready` (subscribed; `data` has the list's
/// position), then the changes from `from` (or `Last-Event-ID`) if asked,
/// then each `event: change` as it happens. A client too slow to keep up
/// gets `event: resync`: reload everything. The stream ends when the
/// server stops.
pub(super) async fn events(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let receiver = service.live.subscribe();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|last| last + 1);
    let position = service.list.progress().position;
    let backlog = match query.from.or(resume) {
        Some(from) => changes(&service, from, position)
            .await
            .map_err(|e| Problem::new("internal", e.to_string()))?,
        None => Vec::new(),
    };
    service.metrics.live_client(1);
    let client = Client(service.clone());
    let ready = sse("ready", None, &serde_json::json!({ "position": position }));
    let first: Vec<Event> = std::iter::once(ready)
        .chain(backlog.iter().map(|c| sse("change", Some(c.position), c)))
        .collect();
    let state = (receiver, position, client);
    let live = futures::stream::unfold(state, |(mut receiver, sent, client)| async move {
        loop {
            match receiver.recv().await {
                // Sent with the backlog already.
                Ok(change) if change.position <= sent => {}
                Ok(change) => {
                    let event = sse("change", Some(change.position), &change);
                    return Some((Ok(event), (receiver, change.position, client)));
                }
                Err(RecvError::Lagged(missed)) => {
                    let event = sse("resync", None, &serde_json::json!({ "missed": missed }));
                    return Some((Ok(event), (receiver, sent, client)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::iter(first.into_iter().map(Ok)), live);
    let mut stopping = service.stopping.subscribe();
    let stopped = async move {
        // The sender lives as long as the service, which this stream holds.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let stream = futures::StreamExt::take_until(stream, stopped);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The sender side, for the service.
pub(super) type Sender = broadcast::Sender<Change>;
