//! The Ticket service's page in a real browser (headless Chromium, through
//! es-browser): the timeline of a ticket opened through the API, the slider
//! back through its versions, an event appended elsewhere arriving without
//! a reload, and a command sent from the page itself. The screenshot is
//! left in `target/browser/ticket-page.png`.

// Test bodies unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use es_browser::Browser;
use serde_json::{Value, json};

/// `ticket serve` on a fresh file, killed on drop.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticket"))
        .arg("--db")
        .arg(dir.path().join("tickets.db"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("TICKETS_KEK", "11".repeat(32))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not the address line: {line:?}"))
        .to_owned();
    Server {
        child,
        base,
        _dir: dir,
    }
}

fn post(base: &str, path: &str, body: &Value) -> Value {
    let mut response = ureq::post(&format!("{base}{path}"))
        .send_json(body)
        .unwrap();
    response.body_mut().read_json().unwrap()
}

/// `document.querySelectorAll(selector).length == n`.
fn count_is(selector: &str, n: usize) -> String {
    format!("document.querySelectorAll({selector:?}).length === {n}")
}

/// A ticket with a correction, and another ticket.
fn seed(base: &str) {
    post(
        base,
        "/api/tickets",
        &json!({"id": "t-1", "title": "Printer on fire", "email": "ada@example.com"}),
    );
    post(
        base,
        "/api/tickets/t-1/messages",
        &json!({"body": "It started smoking."}),
    );
    post(
        base,
        "/api/tickets/t-1/escalate",
        &json!({"reason": "VIP customer", "by": "agent-9"}),
    );
    post(
        base,
        "/api/tickets/t-1/corrections",
        &json!({"reason": "agent-9 escalated the wrong ticket", "by": "supervisor"}),
    );
    post(
        base,
        "/api/tickets/t-1/messages",
        &json!({"body": "Please unplug it.", "by": "agent-7"}),
    );
    post(
        base,
        "/api/tickets",
        &json!({"id": "t-2", "title": "Cannot log in", "email": "bob@example.com"}),
    );
}

/// The slider back to versions 3 and 1.
fn travel_back(page: &es_browser::Page) {
    // Back to version 3: the escalation is in force, one message.
    page.set_value("#version-slider", "3").unwrap();
    page.wait_until(
        "document.querySelector('#state').dataset.version === '3'",
        "the state at version 3",
    )
    .unwrap();
    assert_eq!(page.text("#state [data-field=escalated]").unwrap(), "yes");
    assert_eq!(page.text("#state [data-field=messages]").unwrap(), "1");
    assert_eq!(page.count("#timeline li.future").unwrap(), 2);
    // Version 1: just opened.
    page.set_value("#version-slider", "1").unwrap();
    page.wait_until(
        "document.querySelector('#state').dataset.version === '1'",
        "the state at version 1",
    )
    .unwrap();
    assert_eq!(page.text("#state [data-field=messages]").unwrap(), "0");
}

/// An event appended through the API reaches the page.
fn follow_live(page: &es_browser::Page, base: &str, loaded_at: &str) {
    // An event appended elsewhere (another client of the API) arrives
    // without a reload: the timeline grows, the slider's range with it,
    // the version shown stays where the reader put it.
    post(
        base,
        "/api/tickets/t-1/messages",
        &json!({"body": "Still smoking!", "by": "customer"}),
    );
    page.wait_until(
        &count_is("#timeline li[data-version]", 6),
        "the new event, live",
    )
    .unwrap();
    page.wait_until(
        "document.querySelector('#tickets tr[data-id=\"t-1\"]').dataset.version === '6'",
        "the list row at version 6",
    )
    .unwrap();
    assert_eq!(
        page.eval::<String>("document.querySelector('#version-slider').max")
            .unwrap(),
        "6"
    );
    assert_eq!(page.text("#state [data-field=messages]").unwrap(), "0");
    assert_eq!(
        page.eval::<String>("document.body.dataset.loadedAt")
            .unwrap(),
        loaded_at
    );
}

#[test]
fn the_page_shows_a_ticket_travels_back_in_time_and_follows_live() {
    let server = serve();
    let base = server.base.as_str();
    seed(base);

    let browser = Browser::launch().unwrap();
    let page = browser.open(&format!("{base}/#/tickets/t-1")).unwrap();
    page.wait_until(
        &count_is("#timeline li[data-version]", 5),
        "the timeline of 5 events",
    )
    .unwrap();
    page.wait_until(
        &count_is("#tickets tr[data-id]", 2),
        "both tickets in the list",
    )
    .unwrap();
    page.wait_until(
        "document.querySelector('#live').dataset.state === 'live'",
        "the live feed",
    )
    .unwrap();
    assert_eq!(page.text("#ticket-title").unwrap(), "Printer on fire");
    assert_eq!(page.text("#state [data-field=messages]").unwrap(), "2");
    assert_eq!(page.text("#state [data-field=escalated]").unwrap(), "no");
    // The correction and the escalation it corrects are marked.
    assert_eq!(page.count("#timeline li.correction").unwrap(), 1);
    assert_eq!(page.count("#timeline li.corrected").unwrap(), 1);
    let names: Vec<String> = page
        .eval("[...document.querySelectorAll('#timeline li')].map(li => li.dataset.name)")
        .unwrap();
    assert_eq!(
        names,
        [
            "ticket-opened",
            "message-added",
            "ticket-escalated",
            "escalation-withdrawn",
            "message-added"
        ]
    );
    let loaded_at: String = page.eval("document.body.dataset.loadedAt").unwrap();

    travel_back(&page);

    follow_live(&page, base, &loaded_at);

    // Back to now, then a command from the page itself (sent with If-Match
    // on the version shown, and an idempotency key).
    page.click("#to-now").unwrap();
    page.wait_until(
        "document.querySelector('#state').dataset.version === '6'",
        "the current state",
    )
    .unwrap();
    assert_eq!(page.text("#state [data-field=messages]").unwrap(), "3");
    page.set_value("#message-form input[name=body]", "We sent a new printer.")
        .unwrap();
    page.set_value("#message-form input[name=by]", "agent-7")
        .unwrap();
    page.click("#message-form button").unwrap();
    page.wait_until(
        &count_is("#timeline li[data-version]", 7),
        "the page's own message",
    )
    .unwrap();
    page.wait_until(
        "document.querySelector('#state').dataset.version === '7'",
        "the state after the page's command",
    )
    .unwrap();
    assert!(
        page.text("#timeline li[data-version='7']")
            .unwrap()
            .contains("We sent a new printer.")
    );
    assert!(
        page.eval::<bool>("document.querySelector('#error').hidden")
            .unwrap()
    );
    assert_eq!(
        page.eval::<String>("document.body.dataset.loadedAt")
            .unwrap(),
        loaded_at
    );

    let shot = page.screenshot("ticket-page").unwrap();
    assert!(
        page.errors().is_empty(),
        "{:?} (see {})",
        page.errors(),
        shot.display()
    );
}
