//! `es serve` end to end: the binary serving a store of the Ticket
//! example's domain, driven over HTTP; the page's endpoints against what
//! the store holds, their problem documents, the live tail following
//! appends of another process, Ctrl-C, and not a byte written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use es_core::CheckpointStore;
use es_core::blocking::{Repository, block_on};
use es_sqlite::SqliteStore;
use serde_json::Value;
use ticket::Ticket;

mod common;
use common::all;

/// The inspector's store of tickets (8 events), with a mailer's
/// checkpoint at 5.
fn tickets(dir: &Path) -> PathBuf {
    let path = common::tickets(dir);
    let store = SqliteStore::open(&path).unwrap();
    block_on(store.save_checkpoint("mailer", 5)).unwrap();
    path
}

use es_sqlite::testing::file_digests as files;

/// Every file of `before` is unchanged in `after`, and `after` has no
/// other but SQLite's companions of a WAL database, which a reader makes
/// when they are missing (an empty log and its index, no data).
fn assert_unchanged(
    before: &BTreeMap<PathBuf, (usize, u32)>,
    after: &BTreeMap<PathBuf, (usize, u32)>,
) {
    for (path, file) in before {
        assert_eq!(after.get(path), Some(file), "{} changed", path.display());
    }
    for (path, (len, _)) in after {
        if !before.contains_key(path) {
            let name = path.to_string_lossy();
            assert!(
                (name.ends_with("-wal") && *len == 0) || name.ends_with("-shm"),
                "{name} was created"
            );
        }
    }
}

/// `es serve` running; killed when dropped.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    base: String,
    /// The rest of its standard output, line by line.
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(db: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_es"))
            .args(["serve"])
            .arg(db)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("es serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let base = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the address line: {first:?}"))
            .to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        assert_ne!(base, "http://127.0.0.1:0", "the bound port, not 0");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, base, lines }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path`: its status, content type and body.
    fn get(&self, path: &str) -> (u16, String, String) {
        let mut response = agent().get(&self.url(path)).call().unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), content_type, body)
    }

    /// GETs `path`, which must answer 200 with JSON.
    fn json(&self, path: &str) -> Value {
        let (status, content_type, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(content_type, "application/json", "{path}");
        serde_json::from_str(&body).unwrap()
    }

    /// GETs `path`, which must answer a problem document of `status`.
    fn problem(&self, path: &str, status: u16) -> Value {
        let (got, content_type, body) = self.get(path);
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["type"], "about:blank", "{path}: {problem}");
        assert_eq!(problem["status"], status, "{path}: {problem}");
        assert!(problem["title"].is_string(), "{path}: {problem}");
        assert!(problem["detail"].is_string(), "{path}: {problem}");
        problem
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns 4xx and 5xx answers instead of failing.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// `es --json ARGS... FILE`, parsed line by line.
fn es_json(args: &[&str], db: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .arg("--json")
        .args(args)
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_endpoints_answer_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let stored = all(&db);
    let before = files(dir.path());
    let server = Server::start(&db);

    let streams = server.json("/api/streams");
    assert_eq!(streams, Value::Array(es_json(&["streams"], &db)));
    let streams = streams.as_array().unwrap();
    assert_eq!(streams.len(), 3);
    assert_eq!(streams[1]["stream"], "ticket-t-2");
    assert_eq!(streams[1]["events"], 3);

    let events = server.json("/api/streams/ticket-t-2/events");
    assert_eq!(
        events,
        Value::Array(es_json(&["events", "ticket-t-2"], &db))
    );
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3);
    let escalated = stored
        .iter()
        .find(|e| e.name == "ticket-escalated")
        .unwrap();
    assert_eq!(events[2]["event_id"], escalated.event_id.to_string());
    assert_eq!(events[2]["position"], escalated.position);
    assert_eq!(events[2]["metadata"]["actor"], "agent-7");
    let payload: Value = serde_json::from_str(escalated.payload().as_str()).unwrap();
    assert_eq!(events[2]["payload"], payload);
    let ranged = server.json("/api/streams/ticket-t-2/events?from=2&to=2");
    assert_eq!(ranged.as_array().unwrap().len(), 1);
    assert_eq!(ranged[0]["version"], 2);
    assert_eq!(
        server.json("/api/streams/ticket-t-2/events?from=&to="),
        Value::Array(events.clone()),
        "empty parameters are absent ones"
    );

    let page = server.json("/api/all?from=3&limit=4");
    let positions: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [3, 4, 5, 6]);
    assert_eq!(
        (&page["from"], &page["next"], &page["head"]),
        (&3.into(), &7.into(), &8.into())
    );
    assert_eq!(
        page["events"][0]["event_id"],
        stored[2].event_id.to_string()
    );
    let rest = server.json("/api/all?from=7");
    assert_eq!(rest["events"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next"], 9);
    let past = server.json("/api/all?from=100");
    assert_eq!(
        (past["events"].as_array().unwrap().len(), &past["next"]),
        (0, &100.into())
    );
    assert_eq!(
        server.json("/api/all")["events"].as_array().unwrap().len(),
        8
    );

    let projections = server.json("/api/projections");
    assert_eq!(projections, Value::Array(es_json(&["projections"], &db)));
    assert_eq!(projections[0]["name"], "mailer");
    assert_eq!(projections[0]["kind"], "checkpoint");
    assert_eq!(
        (&projections[0]["position"], &projections[0]["lag_events"]),
        (&5.into(), &3.into())
    );

    let types = server.json("/api/types");
    assert_eq!(types, Value::Array(es_json(&["types"], &db)));
    let opened = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ticket-opened")
        .unwrap();
    assert_eq!(opened["count"], 3);

    let store = server.json("/api/store");
    assert_eq!(store["head"], 8);
    assert_eq!(store["file"], db.to_str().unwrap());

    drop(server);
    assert_unchanged(&before, &files(dir.path()));
}

#[test]
fn the_page_and_its_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let server = Server::start(&db);
    // The page, with the elements its contract names, and its files.
    let response = agent().get(&server.url("/")).call().unwrap();
    let policy = response.headers().get("content-security-policy").unwrap();
    assert!(policy.to_str().unwrap().contains("default-src 'self'"));
    let (status, content_type, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    for id in [
        "streams",
        "events",
        "tail",
        "tail-state",
        "projections",
        "store",
        "problem",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    assert!(page.contains("src=\"/page.js\"") && page.contains("href=\"/page.css\""));
    let (status, content_type, script) = server.get("/page.js");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
    assert!(script.contains("/api/tail") && script.contains("dataset.stream"));
    let (status, content_type, _) = server.get("/page.css");
    assert_eq!((status, content_type.starts_with("text/css")), (200, true));
}

#[test]
fn failures_are_problem_documents() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let before = files(dir.path());
    let server = Server::start(&db);

    let unknown = server.problem("/api/streams/ticket-t-9/events", 404);
    assert_eq!(unknown["title"], "Not Found");
    assert_eq!(unknown["stream"], "ticket-t-9");
    assert!(unknown["detail"].as_str().unwrap().contains("ticket-t-9"));
    // Not even a stream id: no such stream either.
    let long = "x".repeat(10_000);
    server.problem(&format!("/api/streams/{long}/events"), 404);

    for (path, parameter) in [
        ("/api/streams/ticket-t-1/events?from=one", Some("from")),
        ("/api/streams/ticket-t-1/events?to=-2", Some("to")),
        ("/api/streams/ticket-t-1/events?from=3&to=2", Some("to")),
        ("/api/all?limit=0", Some("limit")),
        ("/api/all?limit=5000", Some("limit")),
        ("/api/all?from=x", Some("from")),
        ("/api/tail?from=later", Some("from")),
        ("/api/all?form=1", None),
        ("/api/streams/ticket-t-1/events?version=1", None),
    ] {
        let problem = server.problem(path, 400);
        assert_eq!(problem["title"], "Bad Request", "{path}");
        match parameter {
            Some(name) => assert_eq!(problem["parameter"], name, "{path}: {problem}"),
            None => assert!(problem.get("parameter").is_none(), "{path}: {problem}"),
        }
    }
    server.problem("/api/nothing-here", 404);
    server.problem("/favicon.ico", 404);

    // Read-only: nothing but GET.
    let mut refused = agent().post(&server.url("/api/streams")).send("").unwrap();
    assert_eq!(refused.status().as_u16(), 405);
    let body: Value = serde_json::from_str(&refused.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["status"], 405);

    // Only loopback names reach a loopback server (no DNS rebinding).
    let mut misdirected = agent()
        .get(&server.url("/api/streams"))
        .header("Host", "attacker.example")
        .call()
        .unwrap();
    assert_eq!(misdirected.status().as_u16(), 421);
    let body = misdirected.body_mut().read_to_string().unwrap();
    assert!(!body.contains("ticket-t-1"), "{body}");

    drop(server);
    assert_unchanged(&before, &files(dir.path()));
}

/// Reads the server-sent events of `response` on a thread: each event's
/// `id` and `data`.
fn sse(response: ureq::http::Response<ureq::Body>) -> mpsc::Receiver<(u64, Value)> {
    let (send, events) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(response.into_body().into_reader());
        let mut id = None;
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(value) = line.strip_prefix("id: ") {
                id = value.parse().ok();
            } else if let Some(data) = line.strip_prefix("data: ") {
                let data: Value = serde_json::from_str(data).unwrap();
                if send.send((id.take().unwrap(), data)).is_err() {
                    break;
                }
            }
        }
    });
    events
}

/// A tail connection that never times out on its own (the test's
/// `recv_timeout` bounds each wait instead).
fn tail(server: &Server, path: &str, last_event_id: Option<u64>) -> mpsc::Receiver<(u64, Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(&server.url(path));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    sse(response)
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_tail_follows_appends_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let before = all(&db);
    let server = Server::start(&db);

    // From the end: connected (the server knows where it starts) before
    // this process appends.
    let live = tail(&server, "/api/tail", None);
    let replay = tail(&server, "/api/tail?from=7", None);
    let resumed = tail(&server, "/api/tail", Some(5));
    for expected in [7, 8] {
        let (id, event) = replay.recv_timeout(WAIT).unwrap();
        assert_eq!((id, &event["position"]), (expected, &expected.into()));
    }
    for expected in 6..=8 {
        assert_eq!(
            resumed.recv_timeout(WAIT).unwrap().0,
            expected,
            "after Last-Event-ID 5"
        );
    }
    assert!(
        live.recv_timeout(Duration::from_millis(600)).is_err(),
        "nothing new yet"
    );

    let store = SqliteStore::open(&db).unwrap();
    let tickets = Repository::<Ticket, _>::new(store.clone());
    let done = tickets
        .execute("t-4", |t| t.open("scanner", "grace@example.com"))
        .unwrap();
    let position = done.position.unwrap();
    assert_eq!(position, 9);
    for events in [&live, &replay, &resumed] {
        let (id, event) = events.recv_timeout(WAIT).unwrap();
        assert_eq!(id, position);
        assert_eq!(event["stream"], "ticket-t-4");
        assert_eq!(event["name"], "ticket-opened");
        assert_eq!(event["version"], 1);
    }
    let second = tickets
        .execute("t-4", |t| t.add_message("and it jams", "customer"))
        .unwrap();
    let (id, event) = live.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (id, &event["name"]),
        (second.position.unwrap(), &"message-added".into())
    );
    drop(tickets);
    drop(store);

    // The server wrote nothing: the events are the ones stored, and the
    // two appended here.
    drop(server);
    let after = all(&db);
    assert_eq!(after.len(), before.len() + 2);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (a.position, a.event_id, a.payload(), &a.metadata),
            (b.position, b.event_id, b.payload(), &b.metadata)
        );
    }
}

#[cfg(unix)]
#[test]
fn it_prints_one_line_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let mut server = Server::start(&db);
    // A live tail open: Ctrl-C ends it too, and the server exits.
    let live = tail(&server, "/api/tail?from=1", None);
    assert_eq!(live.recv_timeout(WAIT).unwrap().0, 1);
    let pid = rustix::process::Pid::from_child(&server.child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "es serve stops on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    // Nothing was printed after the address line.
    assert_eq!(
        server.lines.recv_timeout(WAIT),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
}

#[test]
fn a_missing_store_or_a_bad_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .args(["serve"])
        .arg(&missing)
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(!missing.exists());
    let db = tickets(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_es"))
        .args(["serve"])
        .arg(&db)
        .args(["--addr", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on not-an-address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The page in a real browser (headless Chromium, through es-browser):
/// the streams, a stream's events on a click, the projections with their
/// lag, and the tail growing live with an append of another process, no
/// reload. The screenshot is left in `target/browser/es-serve.png`.
#[test]
fn the_page_in_a_real_browser_lists_shows_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let server = Server::start(&db);
    let browser = es_browser::Browser::launch().unwrap();
    let page = browser.open(&server.url("/")).unwrap();
    page.wait_until(
        "document.body.dataset.ready === 'true'",
        "the page's first load",
    )
    .unwrap();
    assert_eq!(page.count("#streams tr[data-stream]").unwrap(), 3);
    assert_eq!(
        page.eval::<String>(
            "document.querySelector('#streams tr[data-stream=\"ticket-t-2\"]').dataset.events"
        )
        .unwrap(),
        "3"
    );
    // The mailer's checkpoint, 3 events behind the head of 8.
    assert_eq!(
        page.eval::<String>(
            "document.querySelector('#projections tr[data-name=\"mailer\"]').dataset.lag"
        )
        .unwrap(),
        "3"
    );
    page.wait_until(
        "document.querySelectorAll('#tail li[data-position]').length === 8",
        "the tail",
    )
    .unwrap();

    page.click("#streams tr[data-stream=\"ticket-t-2\"]")
        .unwrap();
    page.wait_until(
        "document.querySelector('#events').dataset.stream === 'ticket-t-2' \
         && document.querySelectorAll('#events tr[data-version]').length === 3",
        "the events of ticket-t-2",
    )
    .unwrap();
    let names: Vec<String> = page
        .eval("[...document.querySelectorAll('#events tr[data-version]')].map(r => r.dataset.name)")
        .unwrap();
    assert_eq!(
        names,
        ["ticket-opened", "message-added", "ticket-escalated"]
    );

    // Another process (this test) appends: the tail and the stream grow
    // without a reload.
    let store = SqliteStore::open(&db).unwrap();
    Repository::<Ticket, _>::new(store)
        .execute("t-2", |t| t.add_message("any news?", "customer"))
        .unwrap();
    page.wait_until(
        "document.querySelector('#tail li[data-position=\"9\"]')?.dataset.stream === 'ticket-t-2'",
        "the appended event in the tail",
    )
    .unwrap();
    page.wait_until(
        "document.querySelectorAll('#events tr[data-version]').length === 4",
        "the appended event in the stream shown",
    )
    .unwrap();
    let shot = page.screenshot("es-serve").unwrap();
    assert!(
        page.errors().is_empty(),
        "{:?} (see {})",
        page.errors(),
        shot.display()
    );
}
