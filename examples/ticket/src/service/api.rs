//! The handlers of `/api`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use es_core::prelude::*;
use es_core::{Error, Executed, Uuid};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;

use super::problem::{Body, Path, Problem, Query};
use super::{Service, etag, list};
use crate::{AgentId, Reason, Status, Ticket, TicketError, TicketEvent};

type Shared = State<Arc<Service>>;

/// The namespace of the command ids made from idempotency keys that are
/// not UUIDs (UUID v5 of the key).
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6573_7469_636b_6574_8a1d_0b7e_5c3f_9e21);

/// Why a command of the API did not run: the domain refused it, or there
/// is no such ticket.
#[derive(Debug)]
enum Refused {
    NoTicket,
    Rule(TicketError),
}

/// The ticket, when it has been opened.
fn opened(t: &Ticket) -> Result<&Ticket, Refused> {
    if t.status == Status::New {
        Err(Refused::NoTicket)
    } else {
        Ok(t)
    }
}

/// What a command's headers ask: `If-Match` and `Idempotency-Key`.
#[derive(Debug, Default)]
pub(super) struct Preconditions {
    /// The version `If-Match` names (`None`: absent, or `*`).
    version: Option<u64>,
    /// The command id `Idempotency-Key` names.
    command_id: Option<Uuid>,
}

impl<S: Send + Sync> FromRequestParts<S> for Preconditions {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        preconditions(&parts.headers)
    }
}

fn preconditions(headers: &HeaderMap) -> Result<Preconditions, Problem> {
    let text = |name: &header::HeaderName| -> Result<Option<&str>, Problem> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map(str::trim).map_err(|_| {
                    Problem::new("bad-request", format!("`{name}` is not visible ASCII"))
                })
            })
            .transpose()
    };
    let version = match text(&header::IF_MATCH)? {
        None | Some("*") => None,
        Some(tag) => {
            let version = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    Problem::new(
                        "bad-request",
                        format!(
                            "`If-Match: {tag}` is not one of this service's entity tags: send \
                             the `ETag` of a ticket response, a version in quotes such as \"3\""
                        ),
                    )
                })?;
            Some(version)
        }
    };
    let key = header::HeaderName::from_static("idempotency-key");
    let command_id = match text(&key)? {
        None => None,
        Some(k) if k.is_empty() || k.len() > 255 => {
            return Err(Problem::new(
                "bad-request",
                "`Idempotency-Key` must be 1 to 255 visible characters (a UUID is best)",
            ));
        }
        Some(k) => {
            let k = k.trim_matches('"');
            Some(Uuid::parse_str(k).unwrap_or_else(|_| Uuid::new_v5(&KEY_NAMESPACE, k.as_bytes())))
        }
    };
    Ok(Preconditions {
        version,
        command_id,
    })
}

/// A ticket's state, as the API sends it.
#[derive(Debug, Serialize)]
struct TicketView<'a> {
    id: &'a str,
    version: u64,
    status: &'static str,
    title: &'a str,
    escalated: bool,
    messages: u32,
    customer_waiting: bool,
}

fn view<'a>(id: &'a str, version: u64, t: &'a Ticket) -> TicketView<'a> {
    TicketView {
        id,
        version,
        status: match t.status {
            Status::New => "new",
            Status::Open => "open",
            Status::Closed => "closed",
        },
        title: &t.title,
        escalated: t.escalated,
        messages: t.messages,
        customer_waiting: t.customer_waiting,
    }
}

/// A store failure as a problem: a bad id is the caller's, a reused key
/// too; anything else is ours, logged.
fn store_problem(error: &Error) -> Problem {
    match error {
        Error::InvalidStreamId(e) => Problem::new("bad-request", format!("not a ticket id: {e}")),
        Error::Limit(e) => Problem::new("too-large", e.to_string()),
        Error::CommandIdReused { .. } => Problem::new(
            "idempotency-key-reused",
            format!("this Idempotency-Key named another command: {error}"),
        ),
        _ => {
            tracing::error!(error = %error, "the store failed");
            Problem::new(
                "internal",
                "the store failed; the service's log has the cause",
            )
        }
    }
}

fn no_ticket(id: &str) -> Problem {
    Problem::new("not-found", format!("there is no ticket `{id}`"))
}

/// Runs a command on ticket `id` and answers it: the new state with its
/// `ETag`, or the problem.
async fn command<F>(
    service: &Service,
    name: &'static str,
    id: &str,
    pre: &Preconditions,
    setup: impl FnOnce(
        es_core::Command<'_, Ticket, es_sqlite::SqliteStore>,
    ) -> es_core::Command<'_, Ticket, es_sqlite::SqliteStore>,
    decide: F,
) -> Response
where
    F: FnMut(&Ticket) -> Result<TicketEvent, Refused>,
{
    let span = tracing::info_span!(
        "command",
        command = name,
        ticket = id,
        version = tracing::field::Empty,
        outcome = tracing::field::Empty,
        ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut command = service
        .tickets
        .command(id)
        .metadata(Metadata::new().command(name));
    if let Some(version) = pre.version {
        command = command.expect_version(version);
    }
    if let Some(command_id) = pre.command_id {
        command = command.command_id(command_id);
    }
    let outcome = setup(command)
        .execute(decide)
        .instrument(span.clone())
        .await;
    let took = started.elapsed();
    let (label, response) = match outcome {
        Ok(done) => {
            span.record("version", done.version);
            let label = if done.repeated { "repeated" } else { "ok" };
            let status = if name == "open" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            service.metrics.command(
                name,
                label,
                took,
                if done.repeated { 0 } else { done.events.len() },
            );
            span.record("outcome", label);
            span.record(
                "ms",
                tracing::field::display(format_args!("{:.2}", took.as_secs_f64() * 1000.0)),
            );
            span.in_scope(|| tracing::info!("command done"));
            read_your_write(service, &done).await;
            return executed(id, status, &done);
        }
        Err(ExecuteError::Rejected(Refused::NoTicket)) => ("not-found", no_ticket(id)),
        Err(ExecuteError::Rejected(Refused::Rule(why))) => {
            ("refused", Problem::new("refused", why.to_string()))
        }
        Err(ExecuteError::Conflict(conflict)) => {
            let missed: Vec<Value> = conflict
                .concurrent
                .iter()
                .map(|e| json!({"version": e.version, "name": e.name, "actor": e.metadata.actor}))
                .collect();
            let actual = conflict.conflict.actual;
            let problem = match pre.version {
                Some(seen) => Problem::new(
                    "precondition-failed",
                    format!(
                        "ticket `{id}` is at version {actual}, not {seen}: nothing was decided; \
                         reload it and decide again"
                    ),
                ),
                None => Problem::new(
                    "conflict",
                    format!(
                        "ticket `{id}` kept changing while this command was decided \
                         ({} attempts); it is at version {actual}",
                        conflict.attempts
                    ),
                ),
            };
            (
                "conflict",
                problem.current_version(actual).with("missed", missed),
            )
        }
        Err(ExecuteError::Store(error)) => ("error", store_problem(&error)),
    };
    service.metrics.command(name, label, took, 0);
    span.record("outcome", label);
    span.record(
        "ms",
        tracing::field::display(format_args!("{:.2}", took.as_secs_f64() * 1000.0)),
    );
    span.in_scope(|| tracing::info!(status = response.status, "command not done"));
    response.into_response()
}

/// Waits (a moment at most) until the list has taken the command's
/// events: a client that lists the tickets after a command sees it.
async fn read_your_write(service: &Service, done: &Executed<Ticket>) {
    let Some(position) = done.position else {
        return;
    };
    let taken = tokio::time::timeout(LIST_WAIT, service.list.wait_for(position)).await;
    if !matches!(taken, Ok(Ok(()))) {
        tracing::warn!(position, "the ticket list is behind; answering without it");
    }
}

/// How long a command's answer waits for the ticket list to take it.
const LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The answer to a command that went through.
fn executed(id: &str, status: StatusCode, done: &Executed<Ticket>) -> Response {
    let body = json!({
        "ticket": view(id, done.version, &done.state),
        "position": done.position,
        "repeated": done.repeated,
        "events": done.events.iter().map(es_core::EventSet::name).collect::<Vec<_>>(),
    });
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(done.version));
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/api/tickets/{id}"))
    {
        headers.insert(header::LOCATION, location);
    }
    if done.repeated {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `GET /api/tickets?status=`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
}

pub(super) async fn list(
    State(service): Shared,
    Query(query): Query<ListQuery>,
) -> Result<Response, Problem> {
    if let Some(status) = query.status.as_deref()
        && !matches!(status, "open" | "closed")
    {
        return Err(Problem::new(
            "bad-request",
            format!("`status={status}`: the statuses are `open` and `closed`"),
        ));
    }
    let models = service.models.clone();
    let rows = tokio::task::spawn_blocking(move || list::rows(&models, query.status.as_deref()))
        .await
        .map_err(|e| Problem::new("internal", e.to_string()))?;
    match rows {
        Ok(tickets) => Ok(axum::Json(json!({
            "tickets": tickets,
            "position": service.list.progress().position,
        }))
        .into_response()),
        // The list has not caught up since it was created: say so, do not
        // serve an empty list that is not the truth.
        Err(es_sqlite::ReadModelError::NotServing { .. }) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Problem::new("internal", "the ticket list is still being built"),
        )
            .into_response()),
        Err(e) => {
            tracing::error!(error = %e, "the ticket list failed");
            Err(Problem::new("internal", "the ticket list failed"))
        }
    }
}

/// `POST /api/tickets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Open {
    /// The ticket's id; made up when absent.
    id: Option<String>,
    title: String,
    email: String,
}

pub(super) async fn open(
    State(service): Shared,
    pre: Preconditions,
    Body(open): Body<Open>,
) -> Response {
    // A retried opening without an id must name the same ticket: with a
    // key, the id is made from it.
    let id = open.id.clone().unwrap_or_else(|| {
        let seed = pre.command_id.unwrap_or_else(Uuid::now_v7);
        let hex = seed.simple().to_string();
        format!("t-{}", &hex[hex.len() - 10..])
    });
    let meta = Metadata::new().actor("customer").command("open");
    command(
        &service,
        "open",
        &id,
        &pre,
        |c| c.metadata(meta),
        |t| {
            t.open(&open.title, &open.email)
                .map(Into::into)
                .map_err(Refused::Rule)
        },
    )
    .await
}

/// `GET /api/tickets/{id}?version=&at=`.
#[derive(Debug, Deserialize)]
pub(super) struct ShowQuery {
    version: Option<u64>,
    at: Option<String>,
}

pub(super) async fn show(
    State(service): Shared,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let tickets = &service.tickets;
    let (loaded, when) = match (query.version, query.at.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                "bad-request",
                "ask for a `version` or a time (`at`), not both",
            ));
        }
        (Some(v), None) => (tickets.load_at(&id, v).await, format!(" at version {v}")),
        (None, Some(at)) => {
            let time: Timestamp = at.parse().map_err(|e| {
                Problem::new(
                    "bad-request",
                    format!("`at={at}` is not an RFC 3339 time (2026-11-23T18:00:00Z): {e}"),
                )
            })?;
            (tickets.load_as_of(&id, time).await, format!(" at {at}"))
        }
        (None, None) => (tickets.load(&id).await, String::new()),
    };
    let loaded = loaded.map_err(|e| store_problem(&e))?;
    if !loaded.exists() || loaded.state.status == Status::New {
        return Err(Problem::new(
            "not-found",
            format!("there is no ticket `{id}`{when}"),
        ));
    }
    let current = query.version.is_none() && query.at.is_none();
    let tag = etag(loaded.version);
    if current && headers.get(header::IF_NONE_MATCH) == Some(&tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let mut response = axum::Json(view(&id, loaded.version, &loaded.state)).into_response();
    if current {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

/// `GET /api/tickets/{id}/history`.
pub(super) async fn history(
    State(service): Shared,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let trail = service
        .tickets
        .trail(&id)
        .await
        .map_err(|e| store_problem(&e))?;
    if trail.is_empty() {
        return Err(no_ticket(&id));
    }
    let version = trail.iter().last().map_or(0, |e| e.version);
    let events: Vec<Value> = trail
        .iter()
        .map(|e| {
            let m = &e.metadata;
            json!({
                "version": e.version,
                "position": e.position,
                "event_id": e.event_id,
                "name": e.name,
                "schema_version": e.schema_version,
                "recorded_at": e.recorded_at,
                "occurred_at": e.occurred_at,
                "actor": m.actor,
                "command": m.command,
                "reason": m.reason,
                "correlation_id": e.correlation(),
                "causation_id": m.causation_id,
                "command_id": m.command_id,
                "summary": crate::describe(&e.event),
                "corrects": e.compensated_version(),
                "corrected_by": e.corrected_by(),
                "stands": e.stands(),
            })
        })
        .collect();
    Ok(axum::Json(json!({"id": id, "version": version, "events": events})).into_response())
}

/// The body of a command by someone, with a text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Message {
    body: String,
    #[serde(default = "customer")]
    by: String,
}

fn customer() -> String {
    "customer".to_owned()
}

pub(super) async fn message(
    State(service): Shared,
    Path(id): Path<String>,
    pre: Preconditions,
    Body(m): Body<Message>,
) -> Response {
    let meta = Metadata::new().actor(m.by.clone()).command("add-message");
    command(
        &service,
        "add-message",
        &id,
        &pre,
        |c| c.metadata(meta),
        |t| {
            opened(t)?
                .add_message(&m.body, &m.by)
                .map(Into::into)
                .map_err(Refused::Rule)
        },
    )
    .await
}

/// `POST .../escalate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Escalate {
    reason: String,
    by: String,
}

pub(super) async fn escalate(
    State(service): Shared,
    Path(id): Path<String>,
    pre: Preconditions,
    Body(x): Body<Escalate>,
) -> Response {
    let meta = Metadata::new()
        .actor(x.by.clone())
        .command("escalate")
        .reason(x.reason.clone());
    command(
        &service,
        "escalate",
        &id,
        &pre,
        |c| c.metadata(meta),
        |t| {
            opened(t)?
                .escalate(Reason(x.reason.clone()), AgentId(x.by.clone()))
                .map(Into::into)
                .map_err(Refused::Rule)
        },
    )
    .await
}

/// `POST .../close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Close {
    resolution: String,
    #[serde(default = "customer")]
    by: String,
}

pub(super) async fn close(
    State(service): Shared,
    Path(id): Path<String>,
    pre: Preconditions,
    Body(c): Body<Close>,
) -> Response {
    let meta = Metadata::new()
        .actor(c.by.clone())
        .command("close")
        .reason(c.resolution.clone());
    command(
        &service,
        "close",
        &id,
        &pre,
        |cmd| cmd.metadata(meta),
        |t| {
            opened(t)?
                .close(&c.resolution)
                .map(Into::into)
                .map_err(Refused::Rule)
        },
    )
    .await
}

/// `POST .../corrections`: withdraws an escalation recorded by mistake.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Correct {
    reason: String,
    by: String,
    /// The escalation's version; default: the last one in force.
    version: Option<u64>,
}

pub(super) async fn correct(
    State(service): Shared,
    Path(id): Path<String>,
    pre: Preconditions,
    Body(c): Body<Correct>,
) -> Response {
    let meta = Metadata::new()
        .actor(c.by.clone())
        .command("correct-escalation")
        .reason(c.reason.clone());
    let tickets = &service.tickets;
    // The escalation to correct is found in the trail: a repeat must be
    // known first, since the first run changed the trail.
    let target = async {
        let probe = match pre.command_id {
            Some(key) => meta.clone().command_id(key),
            None => meta.clone(),
        };
        if tickets.earlier_outcome(&id, &probe).await?.is_some() {
            return Ok(Some(None));
        }
        let trail = tickets.trail(&id).await?;
        if trail.is_empty() {
            return Ok(None);
        }
        let found = match c.version {
            Some(v) => trail.entry(v).filter(|e| {
                !e.is_corrected()
                    && matches!(e.event, Decoded::Event(TicketEvent::TicketEscalated(_)))
            }),
            None => crate::last_escalation(&trail),
        };
        Ok::<_, Error>(Some(Some(found.map(|e| e.event_id))))
    };
    let target = match target.await {
        Err(e) => return store_problem(&e).into_response(),
        Ok(None) => return no_ticket(&id).into_response(),
        Ok(Some(target)) => target,
    };
    let refused = |what: String| Problem::new("refused", what).into_response();
    let target = match (target, c.version) {
        // A repeat: the command below returns the first outcome.
        (None, _) => None,
        (Some(Some(target)), _) => Some(target),
        (Some(None), Some(v)) => {
            return refused(format!(
                "version {v} of ticket `{id}` is not an escalation in force"
            ));
        }
        (Some(None), None) => {
            return refused(format!("ticket `{id}` has no escalation to correct"));
        }
    };
    command(
        &service,
        "correct-escalation",
        &id,
        &pre,
        |cmd| {
            let cmd = cmd.metadata(meta);
            match target {
                Some(target) => cmd.compensating(target),
                None => cmd,
            }
        },
        |t| {
            opened(t)?
                .withdraw_escalation(Reason(c.reason.clone()))
                .map(Into::into)
                .map_err(Refused::Rule)
        },
    )
    .await
}

/// `POST .../forget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForgetCustomer {
    reason: String,
    by: String,
}

pub(super) async fn forget(
    State(service): Shared,
    Path(id): Path<String>,
    Body(f): Body<ForgetCustomer>,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let tickets = &service.tickets;
    let stream = tickets.stream_id(&id).map_err(|e| store_problem(&e))?;
    let loaded = tickets.load(&id).await.map_err(|e| store_problem(&e))?;
    if !loaded.exists() {
        service
            .metrics
            .command("forget", "not-found", started.elapsed(), 0);
        return Err(no_ticket(&id));
    }
    let meta = Metadata::new()
        .actor(f.by)
        .command("forget")
        .reason(f.reason);
    let forgotten = tickets
        .forget_with(stream.as_str(), meta)
        .await
        .map_err(|e| store_problem(&e))?;
    service
        .metrics
        .command("forget", "ok", started.elapsed(), 1);
    tracing::info!(
        ticket = id,
        keys = forgotten.keys_destroyed,
        "customer forgotten"
    );
    Ok(axum::Json(json!({
        "subject": forgotten.subject,
        "keys_destroyed": forgotten.keys_destroyed,
        "snapshots_deleted": forgotten.snapshots_deleted,
    }))
    .into_response())
}

/// `GET /metrics`.
pub(super) async fn metrics(State(service): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics.render(
            service.list.progress(),
            service.tickets.store().write_stats(),
        ),
    )
        .into_response()
}

/// No route has this path.
pub(super) async fn no_route(uri: axum::http::Uri) -> Problem {
    Problem::new("not-found", format!("no resource at `{}`", uri.path()))
}

/// The path exists, not with this method.
pub(super) async fn no_method(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        "method-not-allowed",
        format!("`{method} {}` is not served", uri.path()),
    )
}
