//! The Ticket service: an HTTP/JSON API and a web page over one es-sqlite
//! file (`ticket serve`).
//!
//! | Method and path                     | What                                                     |
//! |-------------------------------------|----------------------------------------------------------|
//! | `GET /`                             | the web page: the list, a ticket's timeline, live        |
//! | `GET /api/tickets?status=open`      | the list, from the `ticket-list` read model              |
//! | `POST /api/tickets`                 | open a ticket: `{"title", "email", "id"?}` → 201         |
//! | `GET /api/tickets/{id}`             | its state now (`ETag: "<version>"`)                      |
//! | `GET /api/tickets/{id}?version=3`   | its state at version 3                                   |
//! | `GET /api/tickets/{id}?at=TIME`     | its state at a time (RFC 3339)                           |
//! | `GET /api/tickets/{id}/history`     | every event: who, when, what, why, corrections marked    |
//! | `POST /api/tickets/{id}/messages`   | `{"body", "by"}`                                         |
//! | `POST /api/tickets/{id}/escalate`   | `{"reason", "by"}`                                       |
//! | `POST /api/tickets/{id}/close`      | `{"resolution", "by"}`                                   |
//! | `POST /api/tickets/{id}/corrections`| withdraw an escalation: `{"reason", "by", "version"?}`   |
//! | `POST /api/tickets/{id}/forget`     | forget the customer: `{"reason", "by"}`                  |
//! | `GET /api/events`                   | server-sent events: each change, once the list has it    |
//! | `GET /metrics`                      | Prometheus text                                          |
//! | `GET /problems/{kind}`              | what a problem document's `type` means                   |
//!
//! **Concurrency.** Every ticket response carries its version as a strong
//! `ETag` (`"3"`). A command sent with `If-Match: "3"` is decided on
//! version 3 or not at all ([`Command::expect_version`]): when the ticket
//! has moved on, the answer is `412 Precondition Failed` (RFC 9110: a
//! failed `If-Match` is 412) with the current version and the events
//! missed, and nothing is appended; of writers racing with one `If-Match`,
//! exactly one wins. Without `If-Match`, the repository settles races
//! itself (retries, and the domain's judgement of what conflicts); `409
//! Conflict` is the rare race it could not settle.
//!
//! **Idempotency.** `Idempotency-Key` (a UUID, or any string of up to 255
//! visible characters) becomes the command's id: sent again, the command
//! is not run again, and the first outcome comes back with
//! `Idempotent-Replayed: true`. A key used for another command is 422.
//!
//! **Errors** are RFC 9457 problem documents (`application/problem+json`):
//! 400 bad input, 404 no such ticket, 409 / 412 as above, 413 too large,
//! 415 not JSON, 422 refused by the ticket's rules, 500 the store failed.
//!
//! **Loopback only.** Bound to a loopback address (the default), the
//! service answers only requests naming a loopback host (421 otherwise),
//! so a web page elsewhere cannot reach it through a DNS name rebound to
//! 127.0.0.1. It has no authentication: bind another address only on a
//! network you trust.
//!
//! **Observability.** Every request runs in a `request` span (method,
//! route, status, duration) and every command in a `command` span (command,
//! ticket, version, outcome, duration); `RUST_LOG` chooses what is
//! printed. `/metrics` has command counts and latencies, events per append,
//! requests by route and status, and the read model's lag.
//!
//! [`Command::expect_version`]: es_core::Command::expect_version

mod api;
pub mod list;
mod live;
mod metrics;
mod page;
pub mod problem;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use es_core::Repository;
use es_sqlite::{ReadModelError, ReadModels, Runner, SqliteStore};
use tokio::sync::broadcast;
use tracing::Instrument;

pub use live::Change;
pub use metrics::Metrics;
pub use problem::Problem;

use crate::Ticket;
use list::TicketList;

/// The largest request body taken: 64 KiB (a message is text).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The service: the repository of tickets, the list read model and its
/// runner, the live feed, the metrics. Shared by every request.
pub struct Service {
    tickets: Repository<Ticket, SqliteStore>,
    models: ReadModels,
    list: Runner<TicketList>,
    live: live::Sender,
    metrics: Metrics,
    feed: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set once [`serve`] is told to stop: the live streams end.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.tickets.store().path())
            .field("list", &self.list.progress())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts the service over `store`: the ticket list read model (in
    /// `<db>.read-models/`, caught up in the background) and the live
    /// feed. Call it on a tokio runtime.
    ///
    /// # Errors
    ///
    /// When the read models' directory or the list's file cannot be opened.
    pub fn start(store: SqliteStore) -> Result<Arc<Service>, ReadModelError> {
        let models = ReadModels::open(&store)?;
        let list = models.start(TicketList)?;
        let (live, _) = broadcast::channel(1024);
        let tickets = Repository::<Ticket, _>::new(store)
            .with_conflict_policy(es_core::ConflictPolicy::CheckConflicts);
        let service = Arc::new(Service {
            tickets,
            models,
            list,
            live,
            metrics: Metrics::default(),
            feed: std::sync::Mutex::new(None),
            stopping: tokio::sync::watch::Sender::new(false),
        });
        let feed = tokio::spawn(live::feed(Arc::downgrade(&service)));
        if let Ok(mut slot) = service.feed.lock() {
            *slot = Some(feed);
        }
        Ok(service)
    }

    /// The repository of tickets.
    pub fn tickets(&self) -> &Repository<Ticket, SqliteStore> {
        &self.tickets
    }

    /// The ticket list's runner: its progress, and `wait_for` a position.
    pub fn list(&self) -> &Runner<TicketList> {
        &self.list
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.feed.lock()
            && let Some(feed) = slot.take()
        {
            feed.abort();
        }
    }
}

/// The routes of the service.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/api/tickets", get(api::list).post(api::open))
        .route("/api/tickets/{id}", get(api::show))
        .route("/api/tickets/{id}/history", get(api::history))
        .route("/api/tickets/{id}/messages", post(api::message))
        .route("/api/tickets/{id}/escalate", post(api::escalate))
        .route("/api/tickets/{id}/close", post(api::close))
        .route("/api/tickets/{id}/corrections", post(api::correct))
        .route("/api/tickets/{id}/forget", post(api::forget))
        .route("/api/events", get(live::events))
        .route("/metrics", get(api::metrics))
        .route("/problems/{kind}", get(problem::describe))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::no_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(service.clone(), trace))
        .with_state(service)
}

/// Serves `service` on `listener` until `shutdown` completes, then lets
/// the requests in flight finish (server-sent event streams end).
///
/// # Errors
///
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let loopback = listener.local_addr()?.ip().is_loopback();
    let app = router(service.clone()).layer(middleware::from_fn(move |request, next| {
        loopback_only(loopback, request, next)
    }));
    // A server-sent event stream never finishes by itself: it is ended
    // here, or the graceful shutdown would wait for it forever.
    let shutdown = async move {
        shutdown.await;
        service.stopping.send_replace(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// On a loopback address, refuses (421) requests that name another host:
/// a web page elsewhere must not reach the service through a DNS name
/// rebound to 127.0.0.1 (it would read and write tickets with the
/// browser's help). Bound to another address, every host passes: there
/// is no authentication, so bind one only on a network you trust.
async fn loopback_only(loopback: bool, request: Request, next: Next) -> Response {
    if loopback && !names_loopback(request.headers()) {
        return Problem::new(
            "misdirected",
            "this service answers requests to localhost, 127.0.0.1 or [::1] only",
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether `Host` names a loopback host (`localhost`, `127.0.0.1:8080`,
/// `[::1]`), or is absent (HTTP/1.0).
fn names_loopback(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers.get(axum::http::header::HOST) else {
        return true;
    };
    let Some(authority) = host
        .to_str()
        .ok()
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
    else {
        return false;
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A version as a strong entity tag: `"3"`.
pub(crate) fn etag(version: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Each request in a `request` span, logged and counted when it ends.
async fn trace(
    State(service): State<Arc<Service>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = matched.map_or_else(|| "(none)".to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        %method,
        route,
        path = %request.uri().path(),
        status = tracing::field::Empty,
        ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let took = started.elapsed();
    span.record("status", status);
    span.record(
        "ms",
        tracing::field::display(format_args!("{:.2}", took.as_secs_f64() * 1000.0)),
    );
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::warn!("request failed");
        } else {
            tracing::info!("request");
        }
    });
    service.metrics.request(method.as_str(), &route, status);
    response
}
