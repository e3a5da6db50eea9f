//! Concurrency the Ticket domain judges, with real threads: two agents
//! adding messages at the same moment do not conflict (the loser's message
//! goes in after the winner's without deciding again); a close racing an
//! escalation does (the loser decides again on the fresh state). And
//! moving a message between two tickets in one atomic append.
//!
//! The races are not timed: both decisions wait for each other (a barrier,
//! see `ticket::race`), so both run on the same version and exactly one
//! append meets a conflict, every run.

// Helpers unwrap as `#[test]` functions do: a failure there is the test
// failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::blocking::Repository;
use es_core::prelude::*;
use es_sqlite::SqliteStore;
use ticket::race::{Side, race};
use ticket::{
    AgentId, MessageAdded, MessageMovedIn, MessageMovedOut, Reason, Status, Ticket, TicketClosed,
    TicketError, TicketEscalated, TicketEvent,
};

fn message(by: &str) -> TicketEvent {
    MessageAdded {
        body: "hello".into(),
        by: by.into(),
    }
    .into()
}

fn escalated() -> TicketEvent {
    TicketEscalated {
        reason: Reason("waited".into()),
        by: AgentId("agent-9".into()),
    }
    .into()
}

fn closed() -> TicketEvent {
    TicketClosed {
        resolution: "done".into(),
    }
    .into()
}

#[test]
fn messages_conflict_only_with_a_close() {
    let moved_in: TicketEvent = MessageMovedIn {
        from: "t-2".into(),
        message: 1,
        body: "x".into(),
        by: "customer".into(),
    }
    .into();
    let moved_out: TicketEvent = MessageMovedOut {
        message: 1,
        to: "t-2".into(),
    }
    .into();
    let ours = [message("agent-7")];
    for theirs in [
        vec![message("agent-9")],
        vec![message("customer"), escalated()],
        vec![moved_in, moved_out],
    ] {
        assert!(!Ticket::conflicts_with(&ours, &theirs), "{theirs:?}");
    }
    assert!(Ticket::conflicts_with(&ours, &[message("x"), closed()]));
    // Any other decision conflicts with anything.
    assert!(Ticket::conflicts_with(&[closed()], &[escalated()]));
    assert!(Ticket::conflicts_with(
        &[escalated()],
        &[message("agent-7")]
    ));
    assert!(Ticket::conflicts_with(
        &[message("a"), closed()],
        &[message("b")]
    ));
}

/// Two servers over `store`, each judging conflicts with the domain.
fn servers<S: EventStore + SnapshotStore + Clone>(
    store: &S,
) -> (Repository<Ticket, S>, Repository<Ticket, S>) {
    let server = || {
        Repository::<Ticket, _>::new(store.clone())
            .with_conflict_policy(ConflictPolicy::CheckConflicts)
    };
    (server(), server())
}

fn opened_and_waiting<S: EventStore + SnapshotStore>(tickets: &Repository<Ticket, S>, id: &str) {
    tickets
        .execute(id, |t| t.open("printer", "ada@example.com"))
        .unwrap();
    tickets
        .execute(id, |t| t.add_message("it smokes", "customer"))
        .unwrap();
}

/// Which side lost, the winner and the loser.
fn split(one: Side, two: Side) -> (Side, Side) {
    assert_ne!(
        one.lost(),
        two.lost(),
        "exactly one side meets the conflict"
    );
    if one.lost() { (two, one) } else { (one, two) }
}

fn messages_race<S: EventStore + SnapshotStore + Clone>(store: &S, id: &str) {
    let (a, b) = servers(store);
    opened_and_waiting(&a, id);
    let (seven, nine) = race(
        &a,
        &b,
        id,
        |t| t.add_message("on it", "agent-7"),
        |t| t.add_message("unplug it", "agent-9"),
    );
    let (winner, loser) = split(seven, nine);
    let (winner_done, loser_done) = (winner.outcome.unwrap(), loser.outcome.unwrap());
    assert_eq!((winner.decisions, loser.decisions), (1, 1), "no rerun");
    assert_eq!((winner_done.attempts, winner_done.version), (1, 3));
    assert_eq!(
        (
            loser_done.attempts,
            loser_done.reruns,
            loser_done.reruns_avoided()
        ),
        (2, 0, 1)
    );
    assert_eq!(loser_done.version, 4);
    let now = a.load(id).unwrap();
    assert_eq!((now.version, now.messages), (4, 3));
    let bodies: Vec<String> = a
        .history_between(id, 3..=4)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event.into_event()? {
            TicketEvent::MessageAdded(m) => Some(m.by),
            _ => None,
        })
        .collect();
    let mut sorted = bodies.clone();
    sorted.sort();
    assert_eq!(sorted, ["agent-7", "agent-9"], "both messages, once each");
}

fn close_escalate_race<S: EventStore + SnapshotStore + Clone>(store: &S, id: &str) {
    let (a, b) = servers(store);
    opened_and_waiting(&a, id);
    let (close, escalate) = race(
        &a,
        &b,
        id,
        |t| t.close("fixed"),
        |t| t.escalate(Reason("smoke".into()), AgentId("agent-9".into())),
    );
    let close_lost = close.lost();
    let (winner, loser) = split(close, escalate);
    assert_eq!(winner.decisions, 1);
    assert_eq!(loser.decisions, 2, "the loser decided again");
    assert_eq!(winner.outcome.unwrap().version, 3);
    let now = a.load(id).unwrap();
    if close_lost {
        // The escalation went first; closing an escalated ticket is fine.
        let done = loser.outcome.unwrap();
        assert_eq!((done.attempts, done.reruns, done.version), (2, 1, 4));
        assert_eq!(
            (now.status, now.escalated, now.version),
            (Status::Closed, true, 4)
        );
    } else {
        // The close went first: on the fresh state the escalation is refused.
        assert!(matches!(
            loser.outcome,
            Err(ExecuteError::Rejected(TicketError::Closed))
        ));
        assert_eq!(
            (now.status, now.escalated, now.version),
            (Status::Closed, false, 3)
        );
    }
}

#[test]
fn two_agents_adding_messages_at_once_do_not_conflict_in_memory() {
    let store = InMemoryStore::new();
    for round in 0..10 {
        messages_race(&store, &format!("m-{round}"));
    }
}

#[test]
fn two_agents_adding_messages_at_once_do_not_conflict_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tickets.db")).unwrap();
    for round in 0..5 {
        messages_race(&store, &format!("m-{round}"));
    }
}

#[test]
fn a_close_racing_an_escalation_conflicts_in_memory() {
    let store = InMemoryStore::new();
    for round in 0..10 {
        close_escalate_race(&store, &format!("c-{round}"));
    }
}

#[test]
fn a_close_racing_an_escalation_conflicts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tickets.db")).unwrap();
    for round in 0..5 {
        close_escalate_race(&store, &format!("c-{round}"));
    }
}

/// Without the domain's judgement (the default policy), the losing message
/// is decided again: same result, one decision more.
#[test]
fn the_default_policy_decides_the_losing_message_again() {
    let store = InMemoryStore::new();
    let (a, b) = (
        Repository::<Ticket, _>::new(store.clone()),
        Repository::<Ticket, _>::new(store),
    );
    opened_and_waiting(&a, "d");
    let (seven, nine) = race(
        &a,
        &b,
        "d",
        |t| t.add_message("on it", "agent-7"),
        |t| t.add_message("unplug it", "agent-9"),
    );
    let (_, loser) = split(seven, nine);
    assert_eq!(loser.decisions, 2);
    let done = loser.outcome.unwrap();
    assert_eq!(
        (done.reruns, done.reruns_avoided(), done.version),
        (1, 0, 4)
    );
}

// ---------------------------------------------------------------------------
// Moving a message: a decision over two tickets, one atomic append.
// ---------------------------------------------------------------------------

fn fold(events: &[TicketEvent]) -> Ticket {
    let mut ticket = Ticket::default();
    for e in events {
        ticket.apply(e);
    }
    ticket
}

fn opened() -> TicketEvent {
    ticket::TicketOpened {
        title: "printer".into(),
        customer_email: Personal::known("ada@example.com".into()),
    }
    .into()
}

#[test]
fn move_message_rules() {
    let from = fold(&[opened(), message("customer"), message("agent-7")]);
    let to = fold(&[opened()]);
    let moved = MessageAdded {
        body: "hello".into(),
        by: "agent-7".into(),
    };
    let events = Ticket::move_message([&from, &to], ["t-1", "t-2"], 2, &moved).unwrap();
    assert_eq!(
        events,
        [
            TicketEvent::from(MessageMovedOut {
                message: 2,
                to: "t-2".into()
            }),
            MessageMovedIn {
                from: "t-1".into(),
                message: 2,
                body: "hello".into(),
                by: "agent-7".into()
            }
            .into(),
        ]
    );
    let mut after = from.clone();
    after.apply(&events[0]);
    assert_eq!((after.messages, after.moved_out.clone()), (1, vec![2]));
    assert!(after.holds_message(1) && !after.holds_message(2));
    let mut into = to.clone();
    into.apply(&events[1]);
    assert!(into.holds_message(1));

    let refuse = |from: &Ticket, to: &Ticket, ids: [&str; 2], n: u32| {
        Ticket::move_message([from, to], ids, n, &moved).unwrap_err()
    };
    assert_eq!(
        refuse(&after, &to, ["t-1", "t-2"], 2),
        TicketError::NoSuchMessage(2)
    );
    assert_eq!(
        refuse(&from, &to, ["t-1", "t-2"], 3),
        TicketError::NoSuchMessage(3)
    );
    assert_eq!(
        refuse(&from, &to, ["t-1", "t-2"], 0),
        TicketError::NoSuchMessage(0)
    );
    assert_eq!(
        refuse(&from, &from, ["t-1", "t-1"], 1),
        TicketError::SameTicket
    );
    let shut = fold(&[opened(), closed()]);
    assert_eq!(refuse(&from, &shut, ["t-1", "t-3"], 1), TicketError::Closed);
    assert_eq!(
        refuse(&Ticket::default(), &to, ["t-0", "t-2"], 1),
        TicketError::NotOpened
    );
}

fn moves<S: EventStore + SnapshotStore>(tickets: &Repository<Ticket, S>) {
    opened_and_waiting(tickets, "t-1");
    tickets
        .execute("t-1", |t| t.add_message("wrong ticket, sorry", "agent-7"))
        .unwrap();
    tickets
        .execute("t-2", |t| t.open("scanner", "bob@example.com"))
        .unwrap();
    let moved = ticket::message(&tickets.history("t-1").unwrap(), 2).unwrap();
    assert_eq!(moved.body, "wrong ticket, sorry");
    let [out, into] = tickets
        .execute_many_with(
            ["t-1", "t-2"],
            Metadata::new().actor("agent-7").command("move-message"),
            |states| Ticket::move_message(states, ["t-1", "t-2"], 2, &moved),
        )
        .unwrap();
    assert_eq!((out.version, into.version), (4, 2));
    assert_eq!(out.position.map(|p| p + 1), into.position, "one commit");
    assert_eq!(tickets.load("t-1").unwrap().messages, 1);
    let t2 = tickets.load("t-2").unwrap();
    assert_eq!(t2.messages, 1);
    assert_eq!(
        ticket::message(&tickets.history("t-2").unwrap(), 1),
        Some(moved.clone())
    );

    // The destination closed: nothing moves, on either ticket.
    tickets
        .execute("t-3", |t| t.open("fax", "c@example.com"))
        .unwrap();
    tickets.execute("t-3", |t| t.close("obsolete")).unwrap();
    let refused = tickets.execute_many(["t-1", "t-3"], |states| {
        Ticket::move_message(states, ["t-1", "t-3"], 1, &moved)
    });
    assert!(matches!(
        refused,
        Err(ExecuteError::Rejected(TicketError::Closed))
    ));
    assert_eq!(tickets.load("t-1").unwrap().version, 4);
    assert_eq!(tickets.load("t-3").unwrap().version, 2);
}

#[test]
fn a_message_moves_between_tickets_in_memory() {
    moves(&Repository::<Ticket, _>::new(InMemoryStore::new()));
}

#[test]
fn a_message_moves_between_tickets_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tickets.db")).unwrap();
    moves(&Repository::<Ticket, _>::new(store));
}

/// A snapshot written before messages could move (no `moved_out` key)
/// reads as it did, and a ticket that never moved a message writes none.
#[test]
fn snapshots_without_moves_keep_their_shape() {
    let ticket = fold(&[opened(), message("customer")]);
    let json = serde_json::to_value(&ticket).unwrap();
    assert!(json.get("moved_out").is_none(), "{json}");
    let old = r#"{"status":"Open","title":"printer","escalated":false,"messages":1,"customer_waiting":true}"#;
    let read: Ticket = serde_json::from_str(old).unwrap();
    assert_eq!(read, ticket);
}
