//! Errors as RFC 9457 problem documents (`application/problem+json`), and
//! the extractors that turn bad input into one.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A problem document: what went wrong, for a program (`type`, `status`)
/// and for a person (`title`, `detail`), with extension members.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI reference naming the kind of problem: `/problems/<kind>`,
    /// which this service also answers with a description.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind in a sentence, the same for every occurrence.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// This occurrence in a sentence.
    pub detail: String,
    /// Members particular to the kind (`current_version`, `missed`, ...).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
    /// The ticket's current version, sent as its `ETag` as well.
    #[serde(skip)]
    pub etag: Option<u64>,
}

/// The kinds of problem the service reports: `(kind, status, title)`.
/// `GET /problems/<kind>` describes each.
pub const KINDS: &[(&str, StatusCode, &str, &str)] = &[
    (
        "bad-request",
        StatusCode::BAD_REQUEST,
        "The request is malformed",
        "A body that is not the JSON the endpoint takes, a missing or empty field, a query \
         parameter or header that does not parse, or an id that is not a valid ticket id.",
    ),
    (
        "not-found",
        StatusCode::NOT_FOUND,
        "No such resource",
        "No ticket has this id (it was never opened), or no such path.",
    ),
    (
        "method-not-allowed",
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "The path exists, but not with this method.",
    ),
    (
        "misdirected",
        StatusCode::MISDIRECTED_REQUEST,
        "Not this host",
        "The service listens on a loopback address and answers requests to localhost, \
         127.0.0.1 or [::1] only: a request naming another host came through another name \
         (a DNS name rebound to 127.0.0.1, say).",
    ),
    (
        "conflict",
        StatusCode::CONFLICT,
        "The ticket changed meanwhile",
        "Other writers changed the ticket while this command was decided, every retry \
         included. `current_version` is where it is now; decide again on it.",
    ),
    (
        "precondition-failed",
        StatusCode::PRECONDITION_FAILED,
        "The ticket is not at the version you saw",
        "`If-Match` named a version that is no longer (or not yet) the ticket's: nothing was \
         decided. `current_version` (and the `ETag` header) is where it is now, `missed` the \
         events appended since the version named; reload, and decide again.",
    ),
    (
        "too-large",
        StatusCode::PAYLOAD_TOO_LARGE,
        "The request is too large",
        "The body is over the service's limit, or a field over the store's limits.",
    ),
    (
        "unsupported-media-type",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Send JSON",
        "Command bodies are JSON: send `Content-Type: application/json`.",
    ),
    (
        "refused",
        StatusCode::UNPROCESSABLE_ENTITY,
        "The ticket's rules refuse the command",
        "The request was understood, and the domain refused it (a closed ticket takes no \
         message, an escalation needs a customer waiting, ...). `detail` says which rule.",
    ),
    (
        "idempotency-key-reused",
        StatusCode::UNPROCESSABLE_ENTITY,
        "The idempotency key was used for another request",
        "An `Idempotency-Key` names one command: sent again with another command, on another \
         ticket, it is refused. Use a new key for a new command.",
    ),
    (
        "internal",
        StatusCode::INTERNAL_SERVER_ERROR,
        "The service failed",
        "The store failed to load or append; the log has the cause. Nothing half-done is \
         left: an append is all or nothing.",
    ),
];

impl Problem {
    /// A problem of kind `kind` (one of [`KINDS`]) with its detail.
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Problem {
        let (status, title) = KINDS.iter().find(|(k, ..)| *k == kind).map_or(
            (StatusCode::INTERNAL_SERVER_ERROR, "The service failed"),
            |k| (k.1, k.2),
        );
        Problem {
            kind: format!("/problems/{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            extensions: Map::new(),
            etag: None,
        }
    }

    /// Adds the extension member `name`.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Problem {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// Sends `version` as the `ETag`, and as `current_version`.
    #[must_use]
    pub fn current_version(mut self, version: u64) -> Problem {
        self.etag = Some(version);
        self.with("current_version", version)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A problem from a status axum chose (a rejection), with its text.
    fn from_status(status: StatusCode, detail: String) -> Problem {
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            s if s.is_server_error() => "internal",
            _ => "bad-request",
        };
        Problem::new(kind, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let etag = self.etag;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(version) = etag {
            headers.insert(header::ETAG, super::etag(version));
        }
        response
    }
}

/// A JSON body, or a problem document saying what is wrong with it (400
/// for bad JSON, 413 over the size limit, 415 for another content type).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(body)) => Ok(Body(body)),
            Err(rejection) => Err(Problem::from_status(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}

/// Query parameters, or a 400 problem document saying which is wrong.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(query)) => Ok(Query(query)),
            Err(rejection) => Err(Problem::new("bad-request", rejection.body_text())),
        }
    }
}

/// Path parameters, or a 400 problem document saying which is wrong (a
/// segment that is not UTF-8 once percent-decoded, say).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(path)) => Ok(Path(path)),
            Err(rejection) => Err(Problem::from_status(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}

/// `GET /problems/{kind}`: what a kind of problem means, as plain text;
/// a 404 problem for an unknown kind.
pub(super) async fn describe(Path(kind): Path<String>) -> Result<String, Problem> {
    KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .map(|(k, status, title, text)| format!("{k} ({status}): {title}.\n\n{text}\n"))
        .ok_or_else(|| Problem::new("not-found", format!("no problem kind `{kind}`")))
}
