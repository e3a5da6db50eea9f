//! `es serve`: the inspector as a read-only web page and JSON API, on one
//! axum server.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /` | the page (`page/index.html`, with `page.js` and `page.css`) |
//! | `GET /api/store` | `{"file", "head"}`: the events file and its last position |
//! | `GET /api/streams` | every stream, as `es streams --json` prints them |
//! | `GET /api/streams/{stream}/events?from=&to=` | a stream's events (versions `from..=to`), as `es events --json` prints them |
//! | `GET /api/all?from=&limit=` | a page of `$all`: `{"events", "from", "next", "head"}` |
//! | `GET /api/projections` | every projection's checkpoint and lag, as `es projections --json` prints them |
//! | `GET /api/types` | the stored types with counts, as `es types --json` prints them |
//! | `GET /api/tail?from=` | server-sent events: each event of `$all` (id: its position, data: its JSON line) as it is committed, from `from` or the end; `Last-Event-ID` resumes after it |
//!
//! Failures are problem documents (RFC 9457, `application/problem+json`):
//! 404 for an unknown stream or path, 400 for a bad query parameter, 500
//! (503 when busy) when the store cannot be read. The store is opened
//! read-only: the server writes nothing.
//!
//! Bound to a loopback address (the default), it answers only requests
//! whose `Host` is a loopback name, so that a web page elsewhere cannot
//! reach it through a DNS name it rebinds to 127.0.0.1.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use es_core::store::next;
use es_core::{EventStore, ReadRange, RecordedEvent, StreamId};
use es_sqlite::SqliteStore;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::follow::Follow;
use crate::view::{self, ProjectionRow, StreamRow, TypeRow};
use crate::{Failure, chain};
use es_core::export::ExportedEvent;

/// The address `es serve` listens on unless told otherwise.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:8081";

/// The most events `GET /api/all` gives in one page, and how many unless
/// asked.
const MAX_PAGE: u64 = 1_000;
const DEFAULT_PAGE: u64 = 100;

/// What every handler shares.
#[derive(Clone)]
struct App {
    store: SqliteStore,
    file: PathBuf,
    /// Turns true when the server is to stop: live tails end then.
    stopping: watch::Receiver<bool>,
    /// Whether requests must name a loopback host.
    loopback: bool,
}

/// Serves the page for `store` (opened read-only from `file`) on `addr`
/// until interrupted: prints `listening on http://ADDR` (the bound address)
/// on standard output first.
///
/// # Errors
///
/// [`Failure::Input`] when `addr` cannot be listened on.
pub(crate) fn serve(store: SqliteStore, file: PathBuf, addr: &str) -> Result<(), Failure> {
    // Warnings of the store (and of the server) to standard error;
    // standard output holds the one line of the address.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Store(format!("cannot start the server's runtime: {e}")))?;
    let served = runtime.block_on(run(store, file, addr));
    // Live tails read on blocking threads, which notice within a poll
    // that their client is gone.
    runtime.shutdown_timeout(Duration::from_secs(2));
    served
}

async fn run(store: SqliteStore, file: PathBuf, addr: &str) -> Result<(), Failure> {
    let cannot = |e: std::io::Error| Failure::Input(format!("cannot listen on {addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(cannot)?;
    let bound = listener.local_addr().map_err(cannot)?;
    let (stop, stopping) = watch::channel(false);
    let app = App {
        store,
        file,
        stopping,
        loopback: bound.ip().is_loopback(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", announce(bound))
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Input(format!("cannot write the output: {e}")))?;
    drop(out);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            interrupted().await;
            let _ = stop.send(true);
        })
        .await
        .map_err(|e| Failure::Input(format!("the server on {bound} failed: {e}")))
}

/// Waits for Ctrl-C (or, on Unix, SIGTERM).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/page.js", get(script))
        .route("/page.css", get(style))
        .route("/api/store", get(store_info))
        .route("/api/streams", get(streams))
        .route("/api/streams/{stream}/events", get(stream_events))
        .route("/api/all", get(all))
        .route("/api/projections", get(projections))
        .route("/api/types", get(types))
        .route("/api/tail", get(tail))
        .fallback(unknown_path)
        .method_not_allowed_fallback(not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Refuses requests to a loopback server that name another host, and
/// marks every answer not to be cached or sniffed.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    if app.loopback && !names_loopback(request.headers()) {
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers requests to a loopback address (localhost, 127.0.0.1, [::1]) only",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Whether the request's `Host` is a loopback name (or absent, as in
/// HTTP/1.0).
fn names_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    // Without the port: `localhost:8081`, `[::1]:8081`.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A problem document (RFC 9457). The type is `about:blank`: what went
/// wrong is the status's meaning, told in `detail`; an unknown stream
/// names it in the extension member `stream`, a bad query parameter in
/// `parameter`.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    detail: String,
    stream: Option<String>,
    parameter: Option<&'static str>,
}

/// A problem document as sent, its members in the RFC's order.
#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'static str>,
}

impl Problem {
    fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            stream: None,
            parameter: None,
        }
    }

    /// A query parameter that is not what it should be.
    fn parameter(name: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            parameter: Some(name),
            ..Problem::new(StatusCode::BAD_REQUEST, detail)
        }
    }

    /// A query string that does not parse (an unknown parameter, most of
    /// all).
    fn query(rejection: &QueryRejection) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }

    fn unknown_stream(stream: &str, detail: impl Into<String>) -> Problem {
        Problem {
            stream: Some(stream.to_owned()),
            ..Problem::new(StatusCode::NOT_FOUND, detail)
        }
    }

    /// The store failed.
    fn store(error: &es_core::Error) -> Problem {
        let status = match error {
            es_core::Error::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(
            status,
            format!("the store cannot be read: {}", chain(error)),
        )
    }

    fn payload(event: &RecordedEvent, error: &serde_json::Error) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the payload at position {} is not JSON: {error}",
                event.position
            ),
        )
    }

    /// The document, as JSON text.
    fn body(&self) -> String {
        let body = ProblemBody {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            stream: self.stream.as_deref(),
            parameter: self.parameter,
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body();
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response()
    }
}

/// An optional whole-number query parameter: absent or empty is `None`.
fn number(name: &'static str, value: Option<&str>) -> Result<Option<u64>, Problem> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            Problem::parameter(
                name,
                format!("`{name}` must be a whole number, not `{text}`"),
            )
        }),
    }
}

async fn index() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )],
        Html(include_str!("page/index.html")),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/page.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("page/page.css"),
    )
}

async fn unknown_path() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such page or endpoint")
}

async fn not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "the inspector is read-only: only GET",
    )
}

/// What `GET /api/store` answers.
#[derive(Serialize)]
struct StoreInfo {
    /// The events file, as given.
    file: String,
    /// Its last position.
    head: u64,
}

async fn store_info(State(app): State<App>) -> Result<Json<StoreInfo>, Problem> {
    let head = app
        .store
        .last_position()
        .await
        .map_err(|e| Problem::store(&e))?;
    Ok(Json(StoreInfo {
        file: app.file.display().to_string(),
        head,
    }))
}

async fn streams(State(app): State<App>) -> Result<Json<Vec<StreamRow>>, Problem> {
    view::streams(&app.store)
        .await
        .map(Json)
        .map_err(|e| Problem::store(&e))
}

async fn types(State(app): State<App>) -> Result<Json<Vec<TypeRow>>, Problem> {
    let types = app
        .store
        .event_types()
        .await
        .map_err(|e| Problem::store(&e))?;
    Ok(Json(types.into_iter().map(TypeRow::from).collect()))
}

async fn projections(State(app): State<App>) -> Result<Json<Vec<ProjectionRow>>, Problem> {
    // It opens the read-model files: off the server's threads.
    let store = app.store.clone();
    let listed = tokio::task::spawn_blocking(move || store.projections())
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the projections cannot be read: {}", chain(&e)),
            )
        })?;
    Ok(Json(listed.iter().map(ProjectionRow::of).collect()))
}

/// The query of a stream's events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn stream_events(
    State(app): State<App>,
    stream: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Vec<ExportedEvent>>, Problem> {
    let Path(stream) = stream.map_err(|e| Problem::new(StatusCode::NOT_FOUND, e.body_text()))?;
    let Query(query) = query.map_err(|e| Problem::query(&e))?;
    let id = StreamId::new(&stream).map_err(|e| {
        Problem::unknown_stream(&stream, format!("`{stream}` is not a stream id: {e}"))
    })?;
    let from = number("from", query.from.as_deref())?;
    let to = number("to", query.to.as_deref())?;
    let range = ReadRange {
        start: from.unwrap_or(1),
        end: to,
    };
    if to.is_some_and(|to| to < range.first()) {
        return Err(Problem::parameter("to", "`to` is before `from`"));
    }
    let version = app
        .store
        .stream_version(&id)
        .await
        .map_err(|e| Problem::store(&e))?;
    if version == 0 {
        return Err(Problem::unknown_stream(
            &stream,
            format!("the store holds no stream `{stream}`"),
        ));
    }
    let mut events = app.store.read_stream(&id, range);
    let mut lines = Vec::new();
    while let Some(event) = next(&mut events).await {
        let event = event.map_err(|e| Problem::store(&e))?;
        lines.push(ExportedEvent::of(&event).map_err(|e| Problem::payload(&event, &e))?);
    }
    Ok(Json(lines))
}

/// The query of a page of `$all`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    from: Option<String>,
    limit: Option<String>,
}

async fn all(
    State(app): State<App>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page>, Problem> {
    let Query(query) = query.map_err(|e| Problem::query(&e))?;
    let from = number("from", query.from.as_deref())?.unwrap_or(1).max(1);
    let limit = number("limit", query.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::parameter(
            "limit",
            format!("`limit` must be from 1 to {MAX_PAGE}, not {limit}"),
        ));
    }
    let head = app
        .store
        .last_position()
        .await
        .map_err(|e| Problem::store(&e))?;
    let mut events = app.store.read_all(from);
    let mut lines = Vec::new();
    let mut after = from;
    while (lines.len() as u64) < limit {
        let Some(event) = next(&mut events).await else {
            break;
        };
        let event = event.map_err(|e| Problem::store(&e))?;
        after = event.position + 1;
        lines.push(ExportedEvent::of(&event).map_err(|e| Problem::payload(&event, &e))?);
    }
    Ok(Json(Page {
        events: lines,
        from,
        next: after,
        head: head.max(after - 1),
    }))
}

/// A page of `$all`, as `GET /api/all` answers.
#[derive(Serialize)]
struct Page {
    /// The events from `from`, at most `limit` of them.
    events: Vec<ExportedEvent>,
    /// The first position asked for.
    from: u64,
    /// The position to ask for the next page from.
    next: u64,
    /// The store's last position (when the page was read).
    head: u64,
}

/// The query of the live tail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TailQuery {
    from: Option<String>,
}

async fn tail(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let Query(query) = query.map_err(|e| Problem::query(&e))?;
    let mut from = number("from", query.from.as_deref())?;
    // A reconnecting `EventSource` resumes after the last event it had.
    if let Some(last) = headers.get("last-event-id") {
        let last = last
            .to_str()
            .ok()
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "`Last-Event-ID` must be the position of an event",
                )
            })?;
        from = Some(last + 1);
    }
    let store = app.store.clone();
    let follow = tokio::task::spawn_blocking(move || Follow::new(store, from))
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| Problem::store(&e))?;
    let (events, received) = mpsc::channel(256);
    tokio::task::spawn_blocking(move || follow_into(follow, &events));
    let mut stopping = app.stopping.clone();
    let stream = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok(event), received))
    })
    .take_until(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Why a live tail's follower stopped.
enum Ended {
    /// The client went away.
    Gone,
    /// The store failed, or holds a payload that is not JSON.
    Failed(Problem),
}

impl From<es_core::Error> for Ended {
    fn from(e: es_core::Error) -> Self {
        Ended::Failed(Problem::store(&e))
    }
}

/// Sends each event `follow` finds to `events` until the client goes away;
/// a failure is sent as a `problem` event, and ends the tail.
fn follow_into(mut follow: Follow, events: &mpsc::Sender<Event>) {
    loop {
        let read = follow.read(|event| {
            let line = ExportedEvent::of(&event)
                .map_err(|e| Ended::Failed(Problem::payload(&event, &e)))?;
            let sent = Event::default()
                .id(event.position.to_string())
                .json_data(&line)
                .map_err(|e| {
                    Ended::Failed(Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        e.to_string(),
                    ))
                })?;
            events.blocking_send(sent).map_err(|_| Ended::Gone)
        });
        match read {
            Ok(()) => {}
            Err(Ended::Gone) => return,
            Err(Ended::Failed(problem)) => {
                let event = Event::default().event("problem").data(problem.body());
                let _ = events.blocking_send(event);
                return;
            }
        }
        if events.is_closed() {
            return;
        }
        follow.wait();
    }
}

/// The bound address as the one line `es serve` prints.
fn announce(bound: SocketAddr) -> String {
    format!("listening on http://{bound}")
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{announce, names_loopback, number};

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("x")),
        );
        headers
    }

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "localhost:8081",
            "127.0.0.1:8081",
            "[::1]:8081",
            "LOCALHOST",
            "127.1.2.3",
        ] {
            assert!(names_loopback(&host(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8081",
            "10.0.0.1:8081",
            "localhost.evil.example",
            "[::2]:80",
        ] {
            assert!(!names_loopback(&host(refused)), "{refused}");
        }
        assert!(names_loopback(&HeaderMap::new()));
    }

    #[test]
    fn numbers_are_whole_or_absent() {
        assert_eq!(number("from", None).ok(), Some(None));
        assert_eq!(number("from", Some("")).ok(), Some(None));
        assert_eq!(number("from", Some("12")).ok(), Some(Some(12)));
        assert!(number("from", Some("-1")).is_err());
        assert!(number("from", Some("two")).is_err());
    }

    #[test]
    fn the_address_line_has_brackets_for_ipv6() {
        let v6: std::net::SocketAddr = "[::1]:8081".parse().unwrap_or_else(|_| ([0; 8], 0).into());
        assert_eq!(announce(v6), "listening on http://[::1]:8081");
    }
}
