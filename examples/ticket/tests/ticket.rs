//! The Ticket rules, given/when/then, and the ticket through a repository.

use es_core::Error;
use es_core::prelude::*;
use es_core::testing::given;
use ticket::{
    AgentId, EscalationWithdrawn, MessageAdded, Reason, Status, Ticket, TicketClosed, TicketError,
    TicketEscalated, TicketEvent, TicketOpened,
};

fn opened() -> TicketEvent {
    TicketOpened {
        title: "printer".into(),
        customer_email: Personal::known("ada@example.com".into()),
    }
    .into()
}

fn message(by: &str) -> TicketEvent {
    MessageAdded {
        body: "hello".into(),
        by: by.into(),
    }
    .into()
}

fn escalation() -> TicketEscalated {
    TicketEscalated {
        reason: Reason("waited".into()),
        by: AgentId("agent-7".into()),
    }
}

#[test]
fn opening_a_new_ticket() {
    let state = given::<Ticket>(())
        .when(|t| t.open("printer", "ada@example.com"))
        .then([opened()]);
    assert_eq!(state.status, Status::Open);
}

#[test]
fn a_ticket_opens_once() {
    given::<Ticket>([opened()])
        .when(|t| t.open("again", "x@example.com"))
        .then_error(TicketError::AlreadyOpened);
}

#[test]
fn escalating_when_the_customer_waits() {
    given::<Ticket>([opened(), message("customer")])
        .when(|t| t.escalate(Reason("waited".into()), AgentId("agent-7".into())))
        .then(escalation());
}

#[test]
fn escalation_is_refused_when_an_agent_answered_last() {
    given::<Ticket>([opened(), message("customer"), message("agent-7")])
        .when(|t| t.escalate(Reason("waited".into()), AgentId("agent-7".into())))
        .then_error(TicketError::CustomerNotWaiting);
}

#[test]
fn escalation_happens_once() {
    given::<Ticket>((opened(), message("customer"), escalation()))
        .when(|t| t.escalate(Reason("again".into()), AgentId("agent-9".into())))
        .then_error(TicketError::AlreadyEscalated);
}

#[test]
fn escalation_needs_a_reason() {
    given::<Ticket>([opened(), message("customer")])
        .when(|t| t.escalate(Reason("  ".into()), AgentId("agent-7".into())))
        .then_error(TicketError::Empty("reason"));
}

#[test]
fn a_closed_ticket_refuses_everything() {
    let closed: TicketEvent = TicketClosed {
        resolution: "done".into(),
    }
    .into();
    given::<Ticket>([opened(), closed.clone()])
        .when(|t| t.add_message("hi", "customer"))
        .then_error(TicketError::Closed);
    given::<Ticket>([opened(), closed.clone()])
        .when(|t| t.close("again"))
        .then_error(TicketError::Closed);
    given::<Ticket>([opened(), message("customer"), closed])
        .when(|t| t.escalate(Reason("late".into()), AgentId("a".into())))
        .then_error(TicketError::Closed);
    given::<Ticket>(())
        .when(|t| t.close("never opened"))
        .then_error(TicketError::NotOpened);
}

fn withdrawal() -> EscalationWithdrawn {
    EscalationWithdrawn {
        reason: Reason("wrong ticket".into()),
    }
}

#[test]
fn withdrawing_an_escalation_recorded_by_mistake() {
    let state = given::<Ticket>((opened(), message("customer"), escalation()))
        .when(|t| t.withdraw_escalation(Reason("wrong ticket".into())))
        .then(withdrawal());
    assert!(!state.escalated);
    assert!(state.customer_waiting, "nothing else is undone");
}

#[test]
fn only_an_escalation_can_be_withdrawn() {
    given::<Ticket>([opened(), message("customer")])
        .when(|t| t.withdraw_escalation(Reason("wrong ticket".into())))
        .then_error(TicketError::NotEscalated);
    given::<Ticket>((opened(), message("customer"), escalation(), withdrawal()))
        .when(|t| t.withdraw_escalation(Reason("again".into())))
        .then_error(TicketError::NotEscalated);
    given::<Ticket>(())
        .when(|t| t.withdraw_escalation(Reason("wrong ticket".into())))
        .then_error(TicketError::NotOpened);
    given::<Ticket>((opened(), message("customer"), escalation()))
        .when(|t| t.withdraw_escalation(Reason(" ".into())))
        .then_error(TicketError::Empty("reason"));
}

#[test]
fn a_closed_ticket_can_still_have_its_record_corrected() {
    let closed = TicketClosed {
        resolution: "done".into(),
    };
    let state = given::<Ticket>((opened(), message("customer"), escalation(), closed))
        .when(|t| t.withdraw_escalation(Reason("wrong ticket".into())))
        .then(withdrawal());
    assert_eq!((state.status, state.escalated), (Status::Closed, false));
}

#[test]
fn an_escalation_can_follow_a_withdrawal() {
    given::<Ticket>((opened(), message("customer"), escalation(), withdrawal()))
        .when(|t| t.escalate(Reason("waited".into()), AgentId("agent-7".into())))
        .then(escalation());
}

/// The compensating event is stored as `escalation-withdrawn`, version 1.
#[test]
fn the_withdrawal_is_stored_under_a_stable_name() {
    let event = TicketEvent::from(withdrawal());
    assert_eq!((event.name(), event.version()), ("escalation-withdrawn", 1));
    assert_eq!(
        TicketEvent::decode("escalation-withdrawn", 1, r#"{"reason":"wrong ticket"}"#).unwrap(),
        event
    );
}

#[tokio::test]
async fn a_wrong_escalation_is_corrected_and_both_trails_show_it() {
    let tickets = Repository::<Ticket, _>::new(InMemoryStore::new());
    tickets
        .execute("t-1", |t| t.open("printer", "ada@example.com"))
        .await
        .unwrap();
    tickets
        .execute("t-1", |t| t.add_message("help", "customer"))
        .await
        .unwrap();
    tickets
        .execute("t-1", |t| {
            t.escalate(Reason("VIP".into()), AgentId("agent-9".into()))
        })
        .await
        .unwrap();
    let wrong = tickets.history("t-1").await.unwrap()[2].event_id;
    let meta = Metadata::new()
        .actor("supervisor")
        .command("correct-escalation");
    let done = tickets
        .command("t-1")
        .metadata(meta)
        .compensating(wrong)
        .execute(|t| t.withdraw_escalation(Reason("wrong ticket".into())))
        .await
        .unwrap();
    assert_eq!(done.version, 4);
    // The state is the fold of every event: the withdrawal undid it.
    let now = tickets.load("t-1").await.unwrap();
    assert!(!now.escalated);
    assert!(now.customer_waiting);
    assert!(tickets.load_at("t-1", 3).await.unwrap().escalated);

    let trail = tickets.trail("t-1").await.unwrap();
    let raw: Vec<_> = trail
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.corrected_by().to_vec(),
                e.compensated_version(),
            )
        })
        .collect();
    assert_eq!(
        raw,
        [
            ("ticket-opened", vec![], None),
            ("message-added", vec![], None),
            ("ticket-escalated", vec![4], None),
            ("escalation-withdrawn", vec![], Some(3)),
        ]
    );
    assert_eq!(trail.raw()[3].metadata.compensates, Some(wrong));
    assert_eq!(trail.raw()[3].metadata.actor.as_deref(), Some("supervisor"));
    let effective: Vec<_> = trail.effective().map(|e| e.name.as_str()).collect();
    assert_eq!(effective, ["ticket-opened", "message-added"]);

    // Another ticket's escalation cannot be withdrawn here.
    let refused = tickets
        .execute_compensating("t-2", wrong, |t| {
            t.withdraw_escalation(Reason("wrong ticket".into()))
        })
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Store(
            Error::CompensationTargetNotFound { .. }
        ))
    ));
}

#[test]
fn a_version_1_escalation_upcasts() {
    let stored = TicketEvent::decode(
        "ticket-escalated",
        1,
        r#"{"reason":"response time exceeded"}"#,
    )
    .unwrap();
    assert_eq!(
        stored,
        TicketEvent::TicketEscalated(TicketEscalated {
            reason: Reason("response time exceeded".into()),
            by: AgentId("system".into())
        })
    );
}

#[tokio::test]
async fn ticket_life_through_the_repository() {
    let tickets = Repository::<Ticket, _>::new(InMemoryStore::new());
    let meta = Metadata::new().actor("customer").command("open");
    tickets
        .execute_with("t-1", meta, |t| t.open("printer", "ada@example.com"))
        .await
        .unwrap();
    tickets
        .execute("t-1", |t| t.add_message("help", "customer"))
        .await
        .unwrap();
    let done = tickets
        .execute_with(
            "t-1",
            Metadata::new().actor("agent-7").reason("waited"),
            |t| t.escalate(Reason("waited".into()), AgentId("agent-7".into())),
        )
        .await
        .unwrap();
    assert_eq!(done.version, 3);
    assert!(done.state.escalated);

    let refused = tickets
        .execute("t-1", |t| {
            t.escalate(Reason("again".into()), AgentId("b".into()))
        })
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Rejected(TicketError::AlreadyEscalated))
    ));

    let history = tickets.history("t-1").await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].stream_id.as_str(), "ticket-t-1");
    assert_eq!(history[0].metadata.actor.as_deref(), Some("customer"));
    assert_eq!(history[2].metadata.reason.as_deref(), Some("waited"));
    assert_eq!(history[2].name, "ticket-escalated");
    assert_eq!(history[2].schema_version, 2);

    let then = tickets.load_at("t-1", 1).await.unwrap();
    assert_eq!((then.version, then.messages, then.escalated), (1, 0, false));
    let as_of = tickets
        .load_as_of("t-1", history[1].recorded_at)
        .await
        .unwrap();
    assert_eq!(as_of.version, 2);
}

/// RELIABILITY T3 through the repository: 16 tasks add messages to one
/// ticket concurrently; every command lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_concurrent_commands_on_one_ticket_lose_nothing() {
    let tickets = Repository::<Ticket, _>::new(InMemoryStore::new()).with_retries(1_000);
    tickets
        .execute("busy", |t| t.open("busy", "a@example.com"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let tickets = tickets.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let body = format!("task {n} message {i}");
                    tickets
                        .execute("busy", |t| t.add_message(&body, "customer"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let now = tickets.load("busy").await.unwrap();
    assert_eq!((now.version, now.messages), (1 + 16 * 25, 16 * 25));
}

/// The ticket survives closing and reopening its SQLite file.
#[tokio::test]
async fn ticket_state_survives_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.db");
    {
        let store = es_sqlite::SqliteStore::open(&path).unwrap();
        let tickets = Repository::<Ticket, _>::new(store);
        tickets
            .execute("t-9", |t| t.open("printer", "ada@example.com"))
            .await
            .unwrap();
        tickets
            .execute("t-9", |t| t.add_message("still broken", "customer"))
            .await
            .unwrap();
    }
    let store = es_sqlite::SqliteStore::open(&path).unwrap();
    let tickets = Repository::<Ticket, _>::new(store);
    let now = tickets.load("t-9").await.unwrap();
    assert_eq!(
        (now.version, now.messages, now.status),
        (2, 1, Status::Open)
    );
    assert!(now.customer_waiting);
}

/// The command line keeps tickets across runs (one process per command).
#[test]
fn the_command_line_keeps_tickets_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let run = |args: &[&str]| cli(&db, args);
    let (ok, _, err) = run(&[
        "open",
        "t-1",
        "--title",
        "Printer on fire",
        "--email",
        "ada@example.com",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["message", "t-1", "It smokes"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["escalate", "t-1", "--reason", "smoke", "--by", "agent-7"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["escalate", "t-1", "--reason", "again", "--by", "agent-9"]);
    assert!(!ok, "a second escalation is refused");
    assert!(
        err.contains("refused: the ticket is already escalated"),
        "{err}"
    );
    let (ok, out, err) = run(&["show", "t-1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("at version 3") && out.contains("escalated: true"),
        "{out}"
    );
    let (ok, out, _) = run(&["show", "t-1", "--at-version", "1"]);
    assert!(ok && out.contains("escalated: false"), "{out}");
    let (ok, out, _) = run(&["history", "t-1"]);
    assert!(
        ok && out.contains("ticket-escalated@v2") && out.contains("agent-7"),
        "{out}"
    );
    let (ok, out, _) = run(&[]);
    assert!(
        ok && out.contains("second escalation refused"),
        "the demo runs: {out}"
    );
    assert!(
        out.contains("withdrawn at v4") && out.contains("[corrected by v4]"),
        "the demo corrects an escalation: {out}"
    );
    assert!(
        out.contains("sent again with its command id: already done, nothing appended (v1)"),
        "the demo repeats a command: {out}"
    );
}

/// `correct-escalation` withdraws the last escalation with a compensating
/// event; `history` shows it marked, then what still stands.
#[test]
fn the_command_line_corrects_an_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let run = |args: &[&str]| cli(&db, args);
    let correct = ["correct-escalation", "t-1", "--reason", "wrong ticket"];
    let correct = [&correct[..], &["--by", "supervisor"]].concat();
    let (ok, _, err) = run(&["open", "t-1", "--title", "Printer", "--email", "a@b.c"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["message", "t-1", "It smokes"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&correct);
    assert!(!ok && err.contains("no escalation to correct"), "{err}");
    let (ok, _, err) = run(&["escalate", "t-1", "--reason", "VIP", "--by", "agent-9"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&correct);
    assert!(ok, "{err}");
    assert!(
        out.contains("at version 4") && out.contains("escalated: false"),
        "{out}"
    );
    let (ok, _, err) = run(&correct);
    assert!(!ok && err.contains("no escalation to correct"), "{err}");

    let (ok, out, err) = run(&["history", "t-1"]);
    assert!(ok, "{err}");
    let (raw, effective) = out
        .split_once("what still stands")
        .expect("two trails are printed");
    let line = |text: &str, version: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{version} ")))
            .map(str::to_owned)
    };
    let escalated = line(raw, "3").expect("v3 in the raw trail");
    assert!(
        escalated.contains("ticket-escalated@v2") && escalated.contains("[corrected by v4]"),
        "{out}"
    );
    let withdrawn = line(raw, "4").expect("v4 in the raw trail");
    assert!(
        withdrawn.contains("escalation-withdrawn@v1")
            && withdrawn.contains("supervisor")
            && withdrawn.contains("[corrects v3]"),
        "{out}"
    );
    assert!(
        line(effective, "1").is_some() && line(effective, "2").is_some(),
        "{out}"
    );
    assert!(
        line(effective, "3").is_none() && line(effective, "4").is_none(),
        "{out}"
    );

    // The ticket can be escalated again, and that escalation corrected.
    let (ok, _, err) = run(&["escalate", "t-1", "--reason", "waited", "--by", "agent-7"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&correct);
    assert!(ok && out.contains("escalated: false"), "{err}");
    let (_, out, _) = run(&["history", "t-1"]);
    let raw = out.split_once("what still stands").unwrap().0;
    assert!(
        line(raw, "5").unwrap().contains("[corrected by v6]"),
        "{out}"
    );
    assert!(line(raw, "6").unwrap().contains("[corrects v5]"), "{out}");
}

/// `--command-id` makes a command idempotent: sent again with the same id,
/// it reports it was already done and changes nothing; `history` shows
/// each event's correlation and cause.
#[test]
fn the_command_line_runs_a_command_once_per_command_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let run = |args: &[&str]| cli(&db, args);
    let id = "0190c5f2-7b3a-7cc1-9d2e-4f5a6b7c8d9e";
    let open = [
        "open",
        "t-1",
        "--title",
        "Printer on fire",
        "--email",
        "ada@example.com",
        "--command-id",
        id,
    ];
    let (ok, out, err) = run(&open);
    assert!(ok && out.contains("ok: ticket at version 1"), "{out}{err}");
    let (ok, out, err) = run(&open);
    assert!(
        ok && out.contains("ok: already done, nothing changed: ticket at version 1"),
        "{out}{err}"
    );
    // Without the id (or with another), it is a new command, refused.
    let (ok, _, err) = run(&open[..6]);
    assert!(
        !ok && err.contains("refused: the ticket is already open"),
        "{err}"
    );
    // The same id for another command is refused as such.
    let (ok, _, err) = run(&["message", "t-1", "Hello", "--command-id", id]);
    assert!(
        !ok && err.contains("already used by command `open`"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "open",
        "t-1",
        "--title",
        "x",
        "--email",
        "y",
        "--command-id",
        "nope",
    ]);
    assert!(!ok && err.contains("--command-id"), "{err}");

    // A compensating command too: the second run finds the first.
    let (ok, _, err) = run(&["message", "t-1", "It smokes"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["escalate", "t-1", "--reason", "VIP", "--by", "agent-9"]);
    assert!(ok, "{err}");
    let correct = [
        "correct-escalation",
        "t-1",
        "--reason",
        "wrong ticket",
        "--by",
        "supervisor",
        "--command-id",
        "0190c5f2-7b3a-7cc1-9d2e-000000000002",
    ];
    let (ok, out, err) = run(&correct);
    assert!(ok && out.contains("ok: ticket at version 4"), "{out}{err}");
    let (ok, out, err) = run(&correct);
    assert!(
        ok && out.contains("already done, nothing changed: ticket at version 4"),
        "{out}{err}"
    );

    let (ok, out, err) = run(&["history", "t-1"]);
    assert!(ok, "{err}");
    assert!(out.contains(" corr ") && out.contains(" cause "), "{out}");
    let first = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect("v1 in the history");
    // The opening's correlation is its command id (short form: the last 8
    // hex digits); no event caused it.
    assert!(first.contains("customer   open"), "{first}");
    assert!(first.contains(" 6b7c8d9e -"), "{first}");
}

/// `move-message` moves a message between two tickets in one append;
/// `show --diff A..B` prints what changed and the events between.
#[test]
fn the_command_line_moves_a_message_and_diffs_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let run = |args: &[&str]| cli(&db, args);
    for args in [
        &["open", "t-1", "--title", "Printer", "--email", "a@b.c"][..],
        &["message", "t-1", "It smokes"],
        &["message", "t-1", "Meant for the scanner", "--by", "agent-7"],
        &["open", "t-2", "--title", "Scanner", "--email", "a@b.c"],
    ] {
        let (ok, _, err) = run(args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, out, err) = run(&["move-message", "t-1", "t-2", "--by", "agent-7"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("message 2 moved; ticket t-1 at version 4, ticket t-2 at version 2"),
        "{out}"
    );
    let (ok, _, err) = run(&["move-message", "t-1", "t-2", "--message", "2"]);
    assert!(
        !ok && err.contains("refused: the ticket holds no message 2"),
        "{err}"
    );
    let (ok, _, err) = run(&["move-message", "t-1", "t-1"]);
    assert!(!ok && err.contains("names this one twice"), "{err}");

    let (ok, out, _) = run(&["history", "t-2"]);
    assert!(
        ok && out.contains("message-moved-in@v1")
            && out.contains("agent-7: \"Meant for the scanner\" (message 2 of ticket t-1)"),
        "{out}"
    );
    let (ok, out, err) = run(&["show", "t-1", "--diff", "2..4"]);
    assert!(ok, "{err}");
    assert!(out.contains("ticket t-1, v2 -> v4:"), "{out}");
    assert!(out.contains("  /customer_waiting: true -> false"), "{out}");
    assert!(out.contains("  /moved_out: nothing -> [2]"), "{out}");
    assert!(
        !out.contains("/messages:"),
        "one message added, one moved out: {out}"
    );
    let (_, events) = out.split_once("the events between").expect("the events");
    let versions: Vec<&str> = events
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| v.parse::<u64>().is_ok())
        .collect();
    assert_eq!(versions, ["3", "4"], "{out}");
    let (ok, out, _) = run(&["show", "t-1", "--diff", "4..4"]);
    assert!(ok && out.contains("v4 -> v4: no change"), "{out}");
    let (ok, _, err) = run(&["show", "t-1", "--diff", "4"]);
    assert!(!ok && err.contains("not a range of versions"), "{err}");
}

/// `race`: two messages at once go in without deciding again; a close
/// racing an escalation is decided again.
#[test]
fn the_command_line_races() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticket"))
        .args(["--memory", "race"])
        .output()
        .expect("the ticket binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("won the race").count(), 2, "{text}");
    assert!(
        text.contains("the domain saw no conflict: appended after the winner at v4 without deciding again (2 attempts, 1 rerun avoided)"),
        "{text}"
    );
    assert!(
        text.contains("the domain saw a conflict: decided again on the fresh state"),
        "{text}"
    );
    assert!(text.contains("status:    Closed"), "{text}");
}

/// Runs the ticket program on `db`: whether it succeeded, its output and
/// its errors.
#[allow(clippy::expect_used)] // a test helper: a binary that does not run fails the test
fn cli(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticket"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("the ticket binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `forget` forgets a ticket's customer: the e-mail is gone from every
/// file and reads as forgotten; the ticket, its history and its audit
/// chain stay intact.
#[test]
fn the_command_line_forgets_a_customer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let email = "canary-ada-3f9c@example.com";
    for args in [
        &["open", "t-1", "--title", "Printer", "--email", email][..],
        &["message", "t-1", "It smokes"],
        &[
            "open",
            "t-2",
            "--title",
            "Fax",
            "--email",
            "bob-3f9c@example.com",
        ],
    ] {
        let (ok, _, err) = cli(&db, args);
        assert!(ok, "{args:?}: {err}");
    }
    assert!(
        dir.path().join("cli.db.kek").exists(),
        "a key file for the first run"
    );
    let in_files = |needle: &str| {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|f| std::fs::read(f.unwrap().path()).unwrap())
            .filter(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .count()
    };
    assert_eq!(in_files(email), 0, "the e-mail is stored encrypted");
    let (ok, out, _) = cli(&db, &["history", "t-1"]);
    assert!(
        ok && out.contains(&format!("\"Printer\" for {email}")),
        "{out}"
    );

    let (ok, out, err) = cli(
        &db,
        &[
            "forget",
            "t-1",
            "--reason",
            "asked to be forgotten",
            "--by",
            "dpo",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("the customer of ticket t-1 is forgotten (1 key(s) destroyed)"),
        "{out}"
    );
    assert!(out.contains("\"Printer\" for (forgotten)"), "{out}");
    let (ok, out, _) = cli(&db, &["history", "t-2"]);
    assert!(
        ok && out.contains("for bob-3f9c@example.com"),
        "the other customer: {out}"
    );
    let (ok, out, _) = cli(&db, &["show", "t-1"]);
    assert!(
        ok && out.contains("messages:  1"),
        "the ticket stays: {out}"
    );
    let (ok, out, err) = cli(&db, &["verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("audit chain: 4 events verified"), "{out}");
    let (ok, _, err) = cli(&db, &["forget", "t-9", "--reason", "x", "--by", "dpo"]);
    assert!(!ok && err.contains("there is no ticket t-9"), "{err}");
}

/// `trail ID VERSION` prints the business transaction of an event: a
/// message moved between two tickets is one transaction over both.
#[test]
fn the_command_line_follows_a_transaction_across_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    for args in [
        &["open", "t-1", "--title", "Printer", "--email", "a@b.c"][..],
        &["message", "t-1", "Meant for the scanner"],
        &["open", "t-2", "--title", "Scanner", "--email", "a@b.c"],
        &["move-message", "t-1", "t-2", "--by", "agent-7"],
    ] {
        let (ok, _, err) = cli(&db, args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, out, err) = cli(&db, &["trail", "t-2", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains(": 2 event(s)"), "{out}");
    assert!(out.contains("ticket-t-1 v3 message-moved-out"), "{out}");
    assert!(out.contains("ticket-t-2 v2 message-moved-in"), "{out}");
    let (ok, out, _) = cli(&db, &["trail", "t-1", "1"]);
    assert!(
        ok && out.contains(": 1 event(s)"),
        "the opening alone: {out}"
    );
    let (ok, _, err) = cli(&db, &["trail", "t-1", "9"]);
    assert!(!ok && err.contains("has no version 9"), "{err}");
}
