//! The Ticket service end to end: real HTTP on loopback, against the
//! service started in-process over a SQLite file (and, once, the `ticket
//! serve` binary). Every answer is checked for its status, headers and
//! body as `service/mod.rs` documents them: problem documents, `ETag` and
//! `If-Match`, idempotency keys, the list read model, time travel, the
//! history, forgetting, metrics and the live feed.
//!
//! Nothing is timed. Races start together at a barrier and are judged by
//! their outcomes (exactly one winner per version); the live feed is read
//! until the change it must carry. The only durations are generous upper
//! bounds on a request, which turn a hang into a failure.

// The fixture and the tests unwrap as `#[test]` functions do: a failure
// there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::sync::Barrier;
use std::time::Duration;

use es_core::Timestamp;
use es_core::privacy::KeyEncryptionKey;
use es_sqlite::SqliteStore;
use serde_json::{Value, json};
use ureq::http::HeaderMap;

// ---------------------------------------------------------------------
// The fixture: the service on a background runtime, and an HTTP client.
// ---------------------------------------------------------------------

/// The upper bound on any one request (a live stream included): a hang
/// fails the test instead of blocking it.
const HANG: Duration = Duration::from_mins(1);

/// The service, listening on a port of 127.0.0.1, over a fresh file; it
/// stops when dropped.
struct Server {
    base: String,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::options()
            .personal_data(KeyEncryptionKey::generate())
            .open(dir.path().join("tickets.db"))
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let service = ticket::service::Service::start(store).unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                bound.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async {
                    // A dropped sender stops the server as well.
                    let _ = stopped.await;
                };
                ticket::service::serve(listener, service, shutdown)
                    .await
                    .unwrap();
            });
        });
        let address = address.recv().expect("the server thread failed to start");
        Server {
            base: format!("http://{address}"),
            agent: agent(),
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::of(request.call())
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, &[], body)
    }

    fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        let mut request = self.agent.post(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::of(request.send_json(body))
    }

    /// A body sent as it is, with this content type (none when `None`).
    fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> Reply {
        let mut request = self.agent.post(self.url(path));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Reply::of(request.send(body))
    }

    /// Opens ticket `id` for ada@example.com; the answer must be a 201.
    fn open(&self, id: &str, title: &str) -> Reply {
        let reply = self.post(
            "/api/tickets",
            &json!({"id": id, "title": title, "email": "ada@example.com"}),
        );
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply
    }

    /// Posts a message to ticket `id`; the answer must be a 200.
    fn message(&self, id: &str, by: &str, body: &str) -> Reply {
        let reply = self.post(
            &format!("/api/tickets/{id}/messages"),
            &json!({"body": body, "by": by}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply
    }

    /// Closes ticket `id`; the answer must be a 200.
    fn close(&self, id: &str) -> Reply {
        let reply = self.post(
            &format!("/api/tickets/{id}/close"),
            &json!({"resolution": "fixed", "by": "agent-7"}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply
    }

    /// The ticket's version now, from `GET /api/tickets/{id}`.
    fn version(&self, id: &str) -> u64 {
        let reply = self.get(&format!("/api/tickets/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["version"].as_u64().unwrap()
    }

    /// The ticket's history events.
    fn history(&self, id: &str) -> Vec<Value> {
        let reply = self.get(&format!("/api/tickets/{id}/history"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["events"].as_array().unwrap().clone()
    }

    /// The list's rows (of `query`, say `?status=open`).
    fn list(&self, query: &str) -> Vec<Value> {
        let reply = self.get(&format!("/api/tickets{query}"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["tickets"].as_array().unwrap().clone()
    }

    /// Follows the live feed (`GET /api/events{query}`).
    fn live(&self, query: &str) -> Live {
        self.live_with(query, &[])
    }

    fn live_with(&self, query: &str, headers: &[(&str, &str)]) -> Live {
        let mut request = self.agent.get(self.url(&format!("/api/events{query}")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.call().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(response.headers(), "content-type"),
            Some("text/event-stream")
        );
        Live {
            lines: BufReader::new(response.into_body().into_reader()).lines(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let stopped = thread.join();
            // A panic of the server fails the test, unless it is failing already.
            if !std::thread::panicking() {
                stopped.expect("the server panicked");
            }
        }
    }
}

/// A client that takes 4xx and 5xx as answers, not errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HANG))
        .build()
        .new_agent()
}

/// `f(0)`, ..., `f(n - 1)` on `n` threads released together (a barrier):
/// requests as close to simultaneous as threads get.
fn at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// An answer: its status, headers and body text.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn of(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = result.unwrap();
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.body_mut().read_to_string().unwrap(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The problem document this answer must be: its status, content
    /// type, members, and `type` `/problems/{kind}`.
    fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(problem["type"], format!("/problems/{kind}"), "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        problem
    }
}

/// The live feed, read as server-sent events.
struct Live {
    lines: std::io::Lines<BufReader<ureq::BodyReader<'static>>>,
}

/// One server-sent event.
#[derive(Debug, Default)]
struct Sent {
    event: String,
    id: Option<String>,
    data: String,
}

impl Sent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

impl Live {
    /// The next event (keep-alive comments skipped).
    fn next(&mut self) -> Sent {
        let mut sent = Sent::default();
        loop {
            let line = self.lines.next().expect("the live feed ended").unwrap();
            if line.is_empty() {
                if sent.event.is_empty() && sent.data.is_empty() {
                    continue;
                }
                return sent;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => value.clone_into(&mut sent.event),
                "id" => sent.id = Some(value.to_owned()),
                "data" => {
                    if !sent.data.is_empty() {
                        sent.data.push('\n');
                    }
                    sent.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    /// The events up to the first that `wanted` takes, that one last.
    fn until(&mut self, wanted: impl Fn(&Sent) -> bool) -> Vec<Sent> {
        let mut seen = Vec::new();
        loop {
            let sent = self.next();
            let done = wanted(&sent);
            seen.push(sent);
            if done {
                return seen;
            }
        }
    }
}

/// The first `change` named `name` of ticket `id`, read from `live`.
fn change_of(live: &mut Live, id: &str, name: &str) -> Sent {
    live.until(|s| s.event == "change" && s.json()["ticket"] == id && s.json()["name"] == name)
        .pop()
        .unwrap()
}

// ---------------------------------------------------------------------
// Opening, the list, showing a ticket.
// ---------------------------------------------------------------------

#[test]
fn opening_answers_201_with_location_etag_and_the_ticket() {
    let server = Server::start();
    let reply = server.open("printer-1", "Printer on fire");
    assert_eq!(reply.header("location"), Some("/api/tickets/printer-1"));
    assert_eq!(reply.header("etag"), Some("\"1\""));
    assert_eq!(reply.header("idempotent-replayed"), None);
    let body = reply.json();
    assert_eq!(
        body["ticket"],
        json!({
            "id": "printer-1", "version": 1, "status": "open", "title": "Printer on fire",
            "escalated": false, "messages": 0, "customer_waiting": false,
        })
    );
    assert_eq!(body["events"], json!(["ticket-opened"]));
    assert_eq!(body["repeated"], false);
    assert!(body["position"].as_u64().is_some_and(|p| p >= 1), "{body}");

    // Without an id, the service names the ticket, and says where it is.
    let reply = server.post(
        "/api/tickets",
        &json!({"title": "Fax is silent", "email": "bob@example.com"}),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.header("etag"), Some("\"1\""));
    let id = reply.json()["ticket"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("t-"), "{id}");
    assert_ne!(id, "printer-1");
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/tickets/{id}").as_str())
    );
    let shown = server.get(reply.header("location").unwrap());
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["title"], "Fax is silent");

    // Opening it again is the domain's refusal.
    let again = server.post(
        "/api/tickets",
        &json!({"id": "printer-1", "title": "again", "email": "ada@example.com"}),
    );
    let problem = again.problem(422, "refused");
    says(&problem, "already open");
}

/// Asserts that the problem's `detail` says `words`.
fn says(problem: &Value, words: &str) {
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(words), "{words:?} not in {problem}");
}

/// The row of ticket `id` in `rows`.
fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row `{id}` in {rows:?}"))
}

#[test]
fn the_list_has_each_command_as_soon_as_it_is_answered() {
    let server = Server::start();
    // No waiting, no polling: each command's answer comes once the list
    // has taken its events.
    server.open("a", "Printer on fire");
    let rows = server.list("");
    assert_eq!(row(&rows, "a")["version"], 1);
    assert_eq!(row(&rows, "a")["status"], "open");
    assert_eq!(row(&rows, "a")["title"], "Printer on fire");

    server.message("a", "customer", "Still burning");
    let rows = server.list("");
    assert_eq!(row(&rows, "a")["version"], 2);
    assert_eq!(row(&rows, "a")["messages"], 1);

    let escalated = server.post(
        "/api/tickets/a/escalate",
        &json!({"reason": "fire", "by": "agent-7"}),
    );
    assert_eq!(escalated.status, 200, "{}", escalated.text);
    let rows = server.list("");
    assert_eq!(row(&rows, "a")["escalated"], true);
    assert_eq!(row(&rows, "a")["version"], 3);

    server.open("b", "Fax is silent");
    let closed = server.post(
        "/api/tickets/a/close",
        &json!({"resolution": "extinguished", "by": "agent-7"}),
    );
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert_eq!(closed.json()["ticket"]["status"], "closed");
    let rows = server.list("");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(row(&rows, "a")["status"], "closed");
    assert_eq!(row(&rows, "a")["version"], 4);
    assert_eq!(row(&rows, "b")["status"], "open");
    let listed = server.get("/api/tickets").json();
    assert_eq!(listed["position"], 5, "{listed}");
}

#[test]
fn the_list_filters_by_status_and_refuses_another() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.open("b", "Fax is silent");
    server.open("c", "Scanner jammed");
    let closed = server.post("/api/tickets/b/close", &json!({"resolution": "fixed"}));
    assert_eq!(closed.status, 200, "{}", closed.text);

    let ids = |rows: Vec<Value>| -> BTreeSet<String> {
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(server.list("?status=open")),
        BTreeSet::from(["a".into(), "c".into()])
    );
    assert_eq!(
        ids(server.list("?status=closed")),
        BTreeSet::from(["b".into()])
    );
    assert_eq!(ids(server.list("")).len(), 3);

    let problem = server
        .get("/api/tickets?status=pending")
        .problem(400, "bad-request");
    says(&problem, "status=pending");
}

#[test]
fn a_ticket_now_at_a_version_and_at_a_time() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.message("a", "customer", "Still burning");
    server.message("a", "agent-7", "On it");

    let now = server.get("/api/tickets/a");
    assert_eq!(now.status, 200);
    assert_eq!(now.header("etag"), Some("\"3\""));
    assert_eq!(
        now.json(),
        json!({
            "id": "a", "version": 3, "status": "open", "title": "Printer on fire",
            "escalated": false, "messages": 2, "customer_waiting": false,
        })
    );

    // At a version: the state then. Not the current state, so no ETag.
    let then = server.get("/api/tickets/a?version=2");
    assert_eq!(then.status, 200, "{}", then.text);
    assert_eq!(then.header("etag"), None);
    let then = then.json();
    assert_eq!(then["version"], 2);
    assert_eq!(then["messages"], 1);
    assert_eq!(then["customer_waiting"], true);
    // Before the opening there is no ticket.
    let problem = server
        .get("/api/tickets/a?version=0")
        .problem(404, "not-found");
    says(&problem, "at version 0");

    // At a time between the first two events: the state after the first.
    let history = server.history("a");
    let recorded =
        |i: usize| -> Timestamp { history[i]["recorded_at"].as_str().unwrap().parse().unwrap() };
    let (first, second) = (recorded(0).as_unix_micros(), recorded(1).as_unix_micros());
    assert!(first < second, "{history:?}");
    let between = Timestamp::from_unix_micros(first + (second - first) / 2);
    let at = server.get(&format!("/api/tickets/a?at={between}"));
    assert_eq!(at.status, 200, "{}", at.text);
    assert_eq!(at.header("etag"), None);
    let at = at.json();
    assert_eq!(at["version"], 1, "{at}");
    assert_eq!(at["messages"], 0, "{at}");
    let at_second = server.get(&format!("/api/tickets/a?at={}", recorded(1)));
    assert_eq!(at_second.json()["version"], 2, "{}", at_second.text);
    let before = Timestamp::from_unix_micros(first - 1);
    server
        .get(&format!("/api/tickets/a?at={before}"))
        .problem(404, "not-found");

    // Both, a bad time, a bad version: the request is malformed.
    server
        .get(&format!("/api/tickets/a?version=1&at={between}"))
        .problem(400, "bad-request");
    let problem = server
        .get("/api/tickets/a?at=yesterday")
        .problem(400, "bad-request");
    says(&problem, "at=yesterday");
    server
        .get("/api/tickets/a?version=two")
        .problem(400, "bad-request");

    let problem = server.get("/api/tickets/nobody").problem(404, "not-found");
    says(&problem, "`nobody`");
    server
        .get("/api/tickets/nobody/history")
        .problem(404, "not-found");
}

#[test]
fn if_none_match_with_the_current_etag_is_304() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    let unchanged = server.get_with("/api/tickets/a", &[("if-none-match", "\"1\"")]);
    assert_eq!(unchanged.status, 304);
    assert_eq!(unchanged.header("etag"), Some("\"1\""));
    assert_eq!(unchanged.text, "");

    server.message("a", "customer", "Still burning");
    let changed = server.get_with("/api/tickets/a", &[("if-none-match", "\"1\"")]);
    assert_eq!(changed.status, 200);
    assert_eq!(changed.header("etag"), Some("\"2\""));
    assert_eq!(changed.json()["messages"], 1);
}

// ---------------------------------------------------------------------
// History, commands, corrections, forgetting.
// ---------------------------------------------------------------------

#[test]
fn history_names_who_what_and_why_and_marks_corrections() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.message("a", "customer", "Still burning");
    let escalated = server.post(
        "/api/tickets/a/escalate",
        &json!({"reason": "smoke", "by": "agent-7"}),
    );
    assert_eq!(escalated.status, 200, "{}", escalated.text);
    assert_eq!(escalated.header("etag"), Some("\"3\""));
    assert_eq!(escalated.json()["ticket"]["escalated"], true);

    let corrected = server.post(
        "/api/tickets/a/corrections",
        &json!({"reason": "wrong ticket", "by": "agent-9"}),
    );
    assert_eq!(corrected.status, 200, "{}", corrected.text);
    assert_eq!(corrected.header("etag"), Some("\"4\""));
    let corrected = corrected.json();
    assert_eq!(corrected["ticket"]["escalated"], false);
    assert_eq!(corrected["events"], json!(["escalation-withdrawn"]));

    let reply = server.get("/api/tickets/a/history");
    assert_eq!(reply.status, 200);
    let history = reply.json();
    assert_eq!(history["id"], "a");
    assert_eq!(history["version"], 4);
    let events = history["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ticket-opened",
            "message-added",
            "ticket-escalated",
            "escalation-withdrawn"
        ]
    );
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);

    let opened = &events[0];
    assert_eq!(opened["actor"], "customer");
    assert_eq!(opened["command"], "open");
    assert_eq!(opened["summary"], "\"Printer on fire\" for ada@example.com");
    assert_eq!(opened["stands"], true);
    assert_eq!(opened["corrects"], Value::Null);
    assert_eq!(opened["corrected_by"], json!([]));

    let message = &events[1];
    assert_eq!(message["actor"], "customer");
    assert_eq!(message["command"], "add-message");
    assert_eq!(message["summary"], "customer: \"Still burning\"");

    let escalation = &events[2];
    assert_eq!(escalation["actor"], "agent-7");
    assert_eq!(escalation["command"], "escalate");
    assert_eq!(escalation["reason"], "smoke");
    assert_eq!(escalation["summary"], "by agent-7: smoke");
    assert_eq!(escalation["corrected_by"], json!([4]));
    assert_eq!(escalation["corrects"], Value::Null);
    assert_eq!(escalation["stands"], false);

    let withdrawal = &events[3];
    assert_eq!(withdrawal["actor"], "agent-9");
    assert_eq!(withdrawal["command"], "correct-escalation");
    assert_eq!(withdrawal["reason"], "wrong ticket");
    assert_eq!(withdrawal["summary"], "wrong ticket");
    assert_eq!(withdrawal["corrects"], 3);
    assert_eq!(withdrawal["corrected_by"], json!([]));
    // A correction is not part of the effective history either.
    assert_eq!(withdrawal["stands"], false);

    // Nothing left to correct: the rules refuse.
    server
        .post(
            "/api/tickets/a/corrections",
            &json!({"reason": "again", "by": "agent-9"}),
        )
        .problem(422, "refused");
    server
        .post(
            "/api/tickets/a/corrections",
            &json!({"reason": "again", "by": "agent-9", "version": 2}),
        )
        .problem(422, "refused");
}

#[test]
fn the_rules_refuse_with_422_and_an_unknown_ticket_is_404() {
    let server = Server::start();
    server.open("a", "Printer on fire");

    // No customer waits for an answer yet: no escalation.
    let problem = server
        .post(
            "/api/tickets/a/escalate",
            &json!({"reason": "smoke", "by": "agent-7"}),
        )
        .problem(422, "refused");
    says(&problem, "waits for an answer");
    server
        .post("/api/tickets/a/messages", &json!({"body": "   "}))
        .problem(422, "refused");

    let closed = server.post(
        "/api/tickets/a/close",
        &json!({"resolution": "fixed", "by": "agent-7"}),
    );
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert_eq!(closed.header("etag"), Some("\"2\""));
    let problem = server
        .post("/api/tickets/a/messages", &json!({"body": "hello?"}))
        .problem(422, "refused");
    says(&problem, "closed");
    // Refusals append nothing.
    assert_eq!(server.version("a"), 2);

    for (path, body) in [
        ("messages", json!({"body": "hello"})),
        ("escalate", json!({"reason": "r", "by": "agent-7"})),
        ("close", json!({"resolution": "r"})),
        ("corrections", json!({"reason": "r", "by": "agent-7"})),
        ("forget", json!({"reason": "r", "by": "dpo"})),
    ] {
        let reply = server.post(&format!("/api/tickets/nobody/{path}"), &body);
        let problem = reply.problem(404, "not-found");
        says(&problem, "`nobody`");
    }
    // And nothing was opened by them.
    server.get("/api/tickets/nobody").problem(404, "not-found");
}

#[test]
fn forgetting_the_customer_leaves_the_history_with_the_email_forgotten() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.message("a", "customer", "Still burning");
    assert_eq!(
        server.history("a")[0]["summary"],
        "\"Printer on fire\" for ada@example.com"
    );

    let forgotten = server.post(
        "/api/tickets/a/forget",
        &json!({"reason": "erasure request", "by": "dpo"}),
    );
    assert_eq!(forgotten.status, 200, "{}", forgotten.text);
    let forgotten = forgotten.json();
    assert_eq!(forgotten["keys_destroyed"], 1, "{forgotten}");
    assert!(forgotten["subject"].as_str().is_some(), "{forgotten}");

    let history = server.history("a");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["summary"], "\"Printer on fire\" for (forgotten)");
    assert_eq!(history[1]["summary"], "customer: \"Still burning\"");
    // The ticket itself is still there.
    let shown = server.get("/api/tickets/a");
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["title"], "Printer on fire");
}

// ---------------------------------------------------------------------
// Metrics, problem kinds, routes.
// ---------------------------------------------------------------------

/// The value of the sample `series` (name and labels as printed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

#[test]
fn metrics_count_the_commands_by_outcome_and_show_the_lag() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.open("b", "Fax is silent");
    server.message("a", "customer", "Still burning");
    server
        .post(
            "/api/tickets/b/escalate",
            &json!({"reason": "r", "by": "agent-7"}),
        )
        .problem(422, "refused");
    server
        .post("/api/tickets/nobody/messages", &json!({"body": "hello"}))
        .problem(404, "not-found");
    let key = [("idempotency-key", "metrics-1")];
    let first = server.post_with("/api/tickets/a/messages", &key, &json!({"body": "again"}));
    let again = server.post_with("/api/tickets/a/messages", &key, &json!({"body": "again"}));
    assert_eq!((first.status, again.status), (200, 200));

    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        reply.headers
    );
    let metrics = reply.text;
    let count = |command: &str, outcome: &str| {
        sample(
            &metrics,
            &format!("ticket_commands_total{{command=\"{command}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("open", "ok"), Some(2.0), "{metrics}");
    assert_eq!(count("add-message", "ok"), Some(2.0), "{metrics}");
    assert_eq!(count("add-message", "repeated"), Some(1.0), "{metrics}");
    assert_eq!(count("add-message", "not-found"), Some(1.0), "{metrics}");
    assert_eq!(count("escalate", "refused"), Some(1.0), "{metrics}");
    assert_eq!(count("close", "ok"), None, "{metrics}");
    // Every command waited for the list: it is not behind.
    assert_eq!(
        sample(&metrics, "ticket_list_lag_events"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "ticket_list_position"),
        Some(4.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("ticket_command_duration_seconds_count{command=\"open\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "ticket_http_requests_total{method=\"POST\",route=\"/api/tickets\",status=\"201\"} 2"
        ),
        "{metrics}"
    );
}

#[test]
fn problem_kinds_are_described() {
    let server = Server::start();
    for (kind, status) in [
        ("bad-request", "400 Bad Request"),
        ("not-found", "404 Not Found"),
        ("method-not-allowed", "405 Method Not Allowed"),
        ("conflict", "409 Conflict"),
        ("precondition-failed", "412 Precondition Failed"),
        ("too-large", "413 Payload Too Large"),
        ("unsupported-media-type", "415 Unsupported Media Type"),
        ("refused", "422 Unprocessable Entity"),
        ("idempotency-key-reused", "422 Unprocessable Entity"),
        ("internal", "500 Internal Server Error"),
    ] {
        let reply = server.get(&format!("/problems/{kind}"));
        assert_eq!(reply.status, 200, "{kind}: {}", reply.text);
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/plain"),
            "{kind}"
        );
        assert!(
            reply.text.starts_with(&format!("{kind} ({status}): ")),
            "{kind}: {}",
            reply.text
        );
    }
    let text = server.get("/problems/precondition-failed").text;
    assert!(text.contains("`missed`"), "{text}");
    server
        .get("/problems/no-such-kind")
        .problem(404, "not-found");
}

#[test]
fn an_unknown_route_and_a_wrong_method_are_problem_documents() {
    let server = Server::start();
    let problem = server.get("/api/nothing/here").problem(404, "not-found");
    says(&problem, "/api/nothing/here");
    let wrong = Reply::of(server.agent.delete(server.url("/api/tickets")).call());
    let problem = wrong.problem(405, "method-not-allowed");
    says(&problem, "DELETE /api/tickets");
    // RFC 9110: a 405 names the methods the resource takes.
    assert_eq!(wrong.header("allow"), Some("GET,HEAD,POST"));
    let wrong = server.post("/api/tickets/a/history", &json!({}));
    wrong.problem(405, "method-not-allowed");
}

#[test]
fn on_loopback_only_loopback_hosts_are_answered() {
    let server = Server::start();
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let reply = server.get_with("/api/tickets", &[("host", &host)]);
        // Answered: the list, or 503 while the new server's list is still
        // being built (a loaded machine), never 421.
        assert!(
            matches!(reply.status, 200 | 503),
            "{host}: {}",
            reply.status
        );
    }
    for host in [
        format!("evil.example:{port}"),
        "10.0.0.1".to_owned(),
        "local host".to_owned(),
    ] {
        let problem = server
            .get_with("/api/tickets", &[("host", &host)])
            .problem(421, "misdirected");
        says(&problem, "localhost, 127.0.0.1 or [::1] only");
        // Nor can such a page write.
        let refused = server.post_with(
            "/api/tickets",
            &[("host", &host)],
            &json!({"title": "x", "email": "e@x"}),
        );
        refused.problem(421, "misdirected");
    }
    assert!(
        server.get("/api/tickets").json()["tickets"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------
// Bad requests.
// ---------------------------------------------------------------------

#[test]
fn malformed_requests_are_problem_documents() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    let messages = "/api/tickets/a/messages";

    server
        .post_raw(messages, Some("application/json"), "{\"body\": ")
        .problem(400, "bad-request");
    let problem = server
        .post(messages, &json!({"by": "customer"}))
        .problem(400, "bad-request");
    says(&problem, "missing field `body`");
    let problem = server
        .post(messages, &json!({"body": "hi", "urgent": true}))
        .problem(400, "bad-request");
    says(&problem, "unknown field `urgent`");
    server
        .post(messages, &json!({"body": 7}))
        .problem(400, "bad-request");

    for tag in ["3", "W/\"1\"", "\"one\"", "\"-1\""] {
        let problem = server
            .post_with(messages, &[("if-match", tag)], &json!({"body": "hi"}))
            .problem(400, "bad-request");
        says(&problem, "If-Match");
    }
    let long_key = "k".repeat(256);
    server
        .post_with(
            messages,
            &[("idempotency-key", &long_key)],
            &json!({"body": "hi"}),
        )
        .problem(400, "bad-request");

    // A path whose id is not UTF-8 once decoded.
    for path in [
        "/api/tickets/%FF",
        "/api/tickets/%FF/history",
        "/problems/%FF",
    ] {
        server.get(path).problem(400, "bad-request");
    }
    server
        .post("/api/tickets/%FF/messages", &json!({"body": "hi"}))
        .problem(400, "bad-request");

    // A stream id holds no control character: not a ticket id, in the
    // path or in the body.
    let problem = server
        .post("/api/tickets/a%01b/messages", &json!({"body": "hi"}))
        .problem(400, "bad-request");
    says(&problem, "not a ticket id");
    server.get("/api/tickets/a%0Ab").problem(400, "bad-request");
    server
        .get("/api/tickets/a%0Ab/history")
        .problem(400, "bad-request");
    server
        .post(
            "/api/tickets",
            &json!({"id": "a\u{7}b", "title": "Bell", "email": "ada@example.com"}),
        )
        .problem(400, "bad-request");
    server
        .post(
            "/api/tickets",
            &json!({"id": "x".repeat(300), "title": "Long", "email": "ada@example.com"}),
        )
        .problem(400, "bad-request");

    let big = json!({ "body": "x".repeat(ticket::service::BODY_LIMIT + 1) });
    server.post(messages, &big).problem(413, "too-large");
    server
        .post_raw(messages, None, "{\"body\": \"hi\"}")
        .problem(415, "unsupported-media-type");
    server
        .post_raw(messages, Some("text/plain"), "{\"body\": \"hi\"}")
        .problem(415, "unsupported-media-type");

    // None of it reached the ticket.
    assert_eq!(server.version("a"), 1);
    assert_eq!(server.history("a").len(), 1);
}

// ---------------------------------------------------------------------
// If-Match.
// ---------------------------------------------------------------------

#[test]
fn of_writers_racing_with_one_if_match_exactly_one_wins_per_version() {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 5;
    let server = Server::start();
    server.open("a", "Printer on fire");
    for round in 0..ROUNDS {
        let seen = server.version("a");
        assert_eq!(seen, 1 + round);
        let tag = format!("\"{seen}\"");
        let replies = at_once(WRITERS, |w| {
            server.post_with(
                "/api/tickets/a/messages",
                &[("if-match", &tag)],
                &json!({"body": format!("writer {w}"), "by": format!("agent-{w}")}),
            )
        });
        let next = format!("\"{}\"", seen + 1);
        let (won, lost): (Vec<&Reply>, Vec<&Reply>) = replies.iter().partition(|r| r.status == 200);
        assert_eq!(won.len(), 1, "round {round}: {replies:?}");
        assert_eq!(won[0].header("etag"), Some(next.as_str()));
        let winner = won[0].json()["ticket"]["version"].as_u64().unwrap();
        assert_eq!(winner, seen + 1);
        // The losers missed the winner's message, and only that.
        let actor = history_actor(&server, "a", seen + 1);
        for reply in lost {
            let problem = reply.problem(412, "precondition-failed");
            assert_eq!(problem["current_version"], seen + 1, "{problem}");
            assert_eq!(reply.header("etag"), Some(next.as_str()));
            assert_eq!(
                problem["missed"],
                json!([{"version": seen + 1, "name": "message-added", "actor": actor}]),
                "{problem}"
            );
        }
        assert_eq!(server.version("a"), seen + 1);
    }
    assert_eq!(
        server.history("a").len(),
        1 + usize::try_from(ROUNDS).unwrap()
    );
}

/// The actor of version `version` of ticket `id`, from its history.
fn history_actor(server: &Server, id: &str, version: u64) -> Value {
    server
        .history(id)
        .into_iter()
        .find(|e| e["version"] == version)
        .map(|e| e["actor"].clone())
        .expect("no such version in the history")
}

#[test]
fn a_stale_if_match_is_412_with_the_events_missed() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    let seen = server.get("/api/tickets/a");
    let tag = seen.header("etag").unwrap().to_owned();
    assert_eq!(tag, "\"1\"");

    // The current tag is taken.
    let fresh = server.post_with(
        "/api/tickets/a/messages",
        &[("if-match", &tag)],
        &json!({"body": "Still burning"}),
    );
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.header("etag"), Some("\"2\""));

    // Another writer meanwhile, then the stale tag again.
    server.message("a", "agent-7", "On it");
    let stale = server.post_with(
        "/api/tickets/a/close",
        &[("if-match", &tag)],
        &json!({"resolution": "fixed", "by": "agent-9"}),
    );
    let problem = stale.problem(412, "precondition-failed");
    assert_eq!(stale.header("etag"), Some("\"3\""));
    assert_eq!(problem["current_version"], 3);
    assert_eq!(
        problem["missed"],
        json!([
            {"version": 2, "name": "message-added", "actor": "customer"},
            {"version": 3, "name": "message-added", "actor": "agent-7"},
        ])
    );
    // A tag from the future is as stale; `*` matches any version.
    server
        .post_with(
            "/api/tickets/a/close",
            &[("if-match", "\"9\"")],
            &json!({"resolution": "fixed"}),
        )
        .problem(412, "precondition-failed");
    assert_eq!(server.get("/api/tickets/a").json()["status"], "open");
    let any = server.post_with(
        "/api/tickets/a/close",
        &[("if-match", "*")],
        &json!({"resolution": "fixed"}),
    );
    assert_eq!(any.status, 200, "{}", any.text);
    assert_eq!(any.header("etag"), Some("\"4\""));
}

// ---------------------------------------------------------------------
// Idempotency-Key.
// ---------------------------------------------------------------------

/// The answer without `repeated`, the one member a replay changes.
fn outcome(reply: &Reply) -> Value {
    let mut body = reply.json();
    body.as_object_mut().unwrap().remove("repeated");
    body
}

#[test]
fn a_repeated_idempotency_key_replays_the_first_answer_and_appends_once() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    for (n, key) in ["0190f3c2-8b1a-7c3e-9d4f-5a6b7c8d9e0f", "retry-me-42"]
        .into_iter()
        .enumerate()
    {
        let before = server.version("a");
        let send = || {
            server.post_with(
                "/api/tickets/a/messages",
                &[("idempotency-key", key)],
                &json!({"body": format!("only once {n}")}),
            )
        };
        let first = send();
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.header("idempotent-replayed"), None);
        assert_eq!(first.json()["repeated"], false);
        let again = send();
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.header("etag"), first.header("etag"));
        assert_eq!(again.json()["repeated"], true);
        assert_eq!(outcome(&again), outcome(&first));
        // Even after another command, the key answers what it first did.
        server.message("a", "agent-7", "in between");
        let later = send();
        assert_eq!(later.header("idempotent-replayed"), Some("true"));
        assert_eq!(outcome(&later), outcome(&first));

        assert_eq!(server.version("a"), before + 2);
        let history = server.history("a");
        let appended: Vec<&Value> = history
            .iter()
            .filter(|e| e["summary"] == format!("customer: \"only once {n}\""))
            .collect();
        assert_eq!(appended.len(), 1, "{history:?}");
        assert!(appended[0]["command_id"].as_str().is_some());
    }
    // The UUID key is the command id itself.
    let history = server.history("a");
    assert_eq!(
        history[1]["command_id"],
        "0190f3c2-8b1a-7c3e-9d4f-5a6b7c8d9e0f"
    );
}

#[test]
fn an_opening_without_id_replayed_with_its_key_names_the_same_ticket() {
    let server = Server::start();
    let key = [("idempotency-key", "open-once")];
    let body = json!({"title": "Fax is silent", "email": "bob@example.com"});
    let first = server.post_with("/api/tickets", &key, &body);
    assert_eq!(first.status, 201, "{}", first.text);
    let again = server.post_with("/api/tickets", &key, &body);
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(outcome(&again), outcome(&first));
    let id = first.json()["ticket"]["id"].as_str().unwrap().to_owned();
    assert_eq!(server.list("").len(), 1);
    assert_eq!(server.version(&id), 1);

    // Without a key, each opening is a new ticket.
    let other = server.post("/api/tickets", &body);
    assert_eq!(other.status, 201);
    assert_ne!(other.json()["ticket"]["id"], id.as_str());
    assert_eq!(server.list("").len(), 2);
}

#[test]
fn a_key_used_for_another_command_is_422() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.open("b", "Fax is silent");
    let key = [("idempotency-key", "one-command")];
    let first = server.post_with("/api/tickets/a/messages", &key, &json!({"body": "hi"}));
    assert_eq!(first.status, 200, "{}", first.text);

    // Another ticket.
    server
        .post_with("/api/tickets/b/messages", &key, &json!({"body": "hi"}))
        .problem(422, "idempotency-key-reused");
    // Another command on the same ticket.
    server
        .post_with(
            "/api/tickets/a/close",
            &key,
            &json!({"resolution": "fixed"}),
        )
        .problem(422, "idempotency-key-reused");
    // Another ticket, opened with it.
    server
        .post_with(
            "/api/tickets",
            &key,
            &json!({"id": "c", "title": "Scanner", "email": "c@example.com"}),
        )
        .problem(422, "idempotency-key-reused");
    assert_eq!(server.version("a"), 2);
    assert_eq!(server.version("b"), 1);
    server.get("/api/tickets/c").problem(404, "not-found");
}

#[test]
fn a_correction_replayed_with_its_key_withdraws_once() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.message("a", "customer", "Still burning");
    let escalated = server.post(
        "/api/tickets/a/escalate",
        &json!({"reason": "smoke", "by": "agent-7"}),
    );
    assert_eq!(escalated.status, 200, "{}", escalated.text);
    let key = [("idempotency-key", "withdraw-once")];
    let body = json!({"reason": "wrong ticket", "by": "agent-9"});
    let first = server.post_with("/api/tickets/a/corrections", &key, &body);
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("etag"), Some("\"4\""));
    // Without the key, there is nothing left to correct; with it, the
    // first answer.
    server
        .post("/api/tickets/a/corrections", &body)
        .problem(422, "refused");
    let again = server.post_with("/api/tickets/a/corrections", &key, &body);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(outcome(&again), outcome(&first));
    let history = server.history("a");
    assert_eq!(history.len(), 4, "{history:?}");
    assert_eq!(history[2]["corrected_by"], json!([4]));
}

#[test]
fn concurrent_repeats_of_one_key_append_once() {
    const SENDERS: usize = 6;
    let server = Server::start();
    server.open("a", "Printer on fire");
    for round in 0..3 {
        let key = format!("together-{round}");
        let replies = at_once(SENDERS, |_| {
            server.post_with(
                "/api/tickets/a/messages",
                &[("idempotency-key", &key)],
                &json!({"body": format!("round {round}")}),
            )
        });
        let version = 2 + round;
        for reply in &replies {
            assert_eq!(reply.status, 200, "{replies:?}");
            assert_eq!(
                reply.header("etag"),
                Some(format!("\"{version}\"").as_str())
            );
            assert_eq!(outcome(reply), outcome(&replies[0]));
        }
        let fresh = replies
            .iter()
            .filter(|r| r.header("idempotent-replayed").is_none())
            .count();
        assert_eq!(fresh, 1, "{replies:?}");
        assert_eq!(server.version("a"), version);
    }
    assert_eq!(server.history("a").len(), 4);
}

// ---------------------------------------------------------------------
// The live feed.
// ---------------------------------------------------------------------

#[test]
fn the_live_feed_sends_each_change_once_the_list_has_it() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    let mut live = server.live("");
    let ready = live.next();
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.id, None);
    assert_eq!(ready.json()["position"], 1);

    let posted = std::thread::scope(|s| {
        let poster = s.spawn(|| server.message("a", "customer", "Still burning"));
        let change = change_of(&mut live, "a", "message-added");
        (poster.join().unwrap(), change)
    });
    let (reply, change) = posted;
    let position = reply.json()["position"].as_u64().unwrap();
    assert_eq!(
        change.json(),
        json!({"position": position, "ticket": "a", "version": 2, "name": "message-added"})
    );
    assert_eq!(change.id, Some(position.to_string()));
    // The list has it, as promised.
    assert_eq!(row(&server.list(""), "a")["version"], 2);

    // A ticket opened now comes next, nothing in between.
    server.open("b", "Fax is silent");
    let next = live.next();
    assert_eq!(next.event, "change");
    assert_eq!(next.json()["ticket"], "b");
    assert_eq!(next.json()["version"], 1);
    assert_eq!(next.json()["name"], "ticket-opened");
    assert_eq!(next.id, Some((position + 1).to_string()));
}

#[test]
fn the_live_feed_from_a_position_replays_the_earlier_changes_first() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    server.message("a", "customer", "Still burning");
    server.open("b", "Fax is silent");

    let mut live = server.live("?from=1");
    let ready = live.next();
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.json()["position"], 3);
    let replayed: Vec<(Option<String>, Value)> = (0..3)
        .map(|_| {
            let sent = live.next();
            assert_eq!(sent.event, "change");
            (sent.id.clone(), sent.json())
        })
        .collect();
    assert_eq!(
        replayed,
        [
            (
                Some("1".into()),
                json!({"position": 1, "ticket": "a", "version": 1, "name": "ticket-opened"})
            ),
            (
                Some("2".into()),
                json!({"position": 2, "ticket": "a", "version": 2, "name": "message-added"})
            ),
            (
                Some("3".into()),
                json!({"position": 3, "ticket": "b", "version": 1, "name": "ticket-opened"})
            ),
        ]
    );
    // Then what happens next, once.
    server.message("b", "customer", "Hello?");
    let next = live.next();
    assert_eq!(next.id, Some("4".into()));
    assert_eq!(next.json()["ticket"], "b");

    // From the middle, only the later changes.
    let mut live = server.live("?from=3");
    assert_eq!(live.next().event, "ready");
    assert_eq!(live.next().id, Some("3".into()));
    assert_eq!(live.next().id, Some("4".into()));

    // A client reconnecting says the last id it saw: the changes after it.
    server.close("b");
    let mut live = server.live_with("", &[("last-event-id", "3")]);
    assert_eq!(live.next().event, "ready");
    assert_eq!(live.next().id, Some("4".into()));
    let closed = live.next();
    assert_eq!(closed.id, Some("5".into()));
    assert_eq!(closed.json()["name"], "ticket-closed");
}

#[test]
fn a_forgetting_is_a_live_change_of_the_ticket() {
    let server = Server::start();
    server.open("a", "Printer on fire");
    let mut live = server.live("");
    assert_eq!(live.next().event, "ready");
    let forgotten = server.post(
        "/api/tickets/a/forget",
        &json!({"reason": "erasure request", "by": "dpo"}),
    );
    assert_eq!(forgotten.status, 200, "{}", forgotten.text);
    let change = change_of(&mut live, "a", "es.subject-forgotten");
    let change_json = change.json();
    assert_eq!(change_json["version"], 0, "{change_json}");
    assert_eq!(change.id, Some(change_json["position"].to_string()));
    assert!(change_json["position"].as_u64().unwrap() >= 2);
}

#[test]
fn stopping_the_server_ends_the_live_streams() {
    let server = Server::start();
    let mut live = server.live("");
    assert_eq!(live.next().event, "ready");
    // A live stream does not end by itself: stopping must end it, or the
    // graceful shutdown waits for it for as long as the client stays.
    let (stopped, done) = std::sync::mpsc::channel();
    let stopping = std::thread::spawn(move || {
        drop(server);
        stopped.send(()).unwrap();
    });
    done.recv_timeout(HANG)
        .expect("the server did not stop while a client followed the live feed");
    stopping.join().unwrap();
    // The stream ended; all that may be left of it is keep-alive comments.
    for rest in live.lines {
        let rest = rest.unwrap();
        assert!(rest.is_empty() || rest.starts_with(':'), "{rest:?}");
    }
}

// ---------------------------------------------------------------------
// The binary.
// ---------------------------------------------------------------------

/// A child process, killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ticket_serve_answers_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_ticket"))
            .arg("--db")
            .arg(dir.path().join("tickets.db"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("TICKETS_KEK", "0123456789abcdef".repeat(4))
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not the line expected: {line:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let agent = agent();
    let opened = Reply::of(
        agent
            .post(format!("{base}/api/tickets"))
            .send_json(json!({"id": "a", "title": "Printer on fire", "email": "ada@example.com"})),
    );
    assert_eq!(opened.status, 201, "{}", opened.text);
    assert_eq!(opened.header("etag"), Some("\"1\""));
    let listed = Reply::of(agent.get(format!("{base}/api/tickets")).call());
    assert_eq!(listed.status, 200);
    let rows = listed.json()["tickets"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(row(&rows, "a")["title"], "Printer on fire");
    drop(child);
}
