//! Idempotent commands on SQLite: eight tasks sending one command id at
//! once make exactly one append and all get its outcome (commands queued
//! per aggregate, racing, from separate repositories and from two store
//! handles on one file, as two processes would); a child process killed
//! between the commit of a command and its answer leaves a command whose
//! re-execution is a repeat, with the first outcome and no second append.
//! And `find_event` and `trail_of` through es-sqlite's own queries.

// Test bodies unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{check_integrity, role, spawn_child};
use es_core::audit::{self, command_event_id};
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{Error, Executed, Uuid};
use es_sqlite::SqliteStore;
use ticket::{Ticket, TicketError, TicketEvent};

fn meta(command: &str, id: Uuid) -> Metadata {
    Metadata::new()
        .actor("customer")
        .command(command)
        .command_id(id)
}

fn outcome(done: &Executed<Ticket>) -> (u64, Option<u64>, Vec<TicketEvent>, Ticket) {
    (
        done.version,
        done.position,
        done.events.clone(),
        done.state.clone(),
    )
}

#[test]
fn eight_tasks_one_command_id_one_append_on_sqlite() {
    let modes = [
        "serialized",
        "racing",
        "separate repositories",
        "two store handles",
    ];
    for mode in modes {
        for round in 0..10 {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .build()
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("idempotent.db");
            let stores = [
                SqliteStore::open(&db).unwrap(),
                SqliteStore::open(&db).unwrap(),
            ];
            let shared = Repository::<Ticket, _>::new(stores[0].clone())
                .with_serialized_commands(mode == "serialized");
            let id = Uuid::now_v7();
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let tasks: Vec<_> = (0..8)
                .map(|task| {
                    let repo = match mode {
                        "separate repositories" => {
                            Repository::new(stores[0].clone()).with_serialized_commands(false)
                        }
                        "two store handles" => Repository::new(stores[task % 2].clone())
                            .with_serialized_commands(false),
                        _ => shared.clone(),
                    };
                    let barrier = barrier.clone();
                    runtime.spawn(async move {
                        barrier.wait().await;
                        repo.execute_with("t-1", meta("open", id), |t| {
                            t.open("Printer on fire", "ada@example.com")
                        })
                        .await
                        .unwrap()
                    })
                })
                .collect();
            let outcomes: Vec<Executed<Ticket>> = runtime.block_on(async {
                let mut all = Vec::new();
                for task in tasks {
                    all.push(task.await.unwrap());
                }
                all
            });
            let firsts = outcomes.iter().filter(|o| !o.repeated).count();
            assert_eq!(firsts, 1, "{mode}, round {round}");
            for o in &outcomes {
                assert_eq!(outcome(o), outcome(&outcomes[0]), "{mode}, round {round}");
            }
            assert_eq!((outcomes[0].version, outcomes[0].position), (1, Some(1)));
            assert_eq!(runtime.block_on(stores[1].last_position()).unwrap(), 1);
        }
    }
}

const KILLED: &str = "a_command_killed_after_its_commit_is_a_repeat_when_sent_again";

/// The child: opens the store, makes the writer print `COMMITTED` and kill
/// its own process right after the next commit, then sends the command.
/// `ANSWERED` would mean the command's answer arrived: it must not.
fn killed_child(db: &Path, command_id: Uuid) {
    let store = SqliteStore::open(db).unwrap();
    fail::cfg_callback("es-sqlite::writer::after-commit", || {
        println!("COMMITTED");
        std::io::stdout().flush().unwrap();
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    })
    .unwrap();
    let tickets = Repository::<Ticket, _>::new(store);
    let done = block_on(tickets.execute_with("t-1", meta("reply-twice", command_id), two_messages));
    println!("ANSWERED {done:?}");
}

/// A command of two events.
fn two_messages(t: &Ticket) -> Result<(ticket::MessageAdded, ticket::MessageAdded), TicketError> {
    Ok((
        t.add_message("It smokes.", "customer")?,
        t.add_message("Really!", "customer")?,
    ))
}

#[test]
fn a_command_killed_after_its_commit_is_a_repeat_when_sent_again() {
    if role().as_deref() == Some("after-commit") {
        let db = PathBuf::from(std::env::var(common::DB).unwrap());
        let id = std::env::var("ES_COMMAND_ID").unwrap().parse().unwrap();
        return killed_child(&db, id);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    {
        let tickets = Repository::<Ticket, _>::new(SqliteStore::open(&db).unwrap());
        block_on(tickets.execute("t-1", |t| t.open("Printer on fire", "ada@example.com"))).unwrap();
    }
    let id = Uuid::now_v7();
    let mut child = spawn_child(
        KILLED,
        "after-commit",
        &db,
        &[("ES_COMMAND_ID", id.to_string())],
    );
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the child was killed: {lines:?}");
    assert!(lines.iter().any(|l| l == "COMMITTED"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("ANSWERED")),
        "the answer was lost: {lines:?}"
    );

    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(
        block_on(store.last_position()).unwrap(),
        3,
        "the killed command's events are stored"
    );
    let tickets = Repository::<Ticket, _>::new(store.clone());
    let history = block_on(tickets.history("t-1")).unwrap();
    assert_eq!(history[1].event_id, command_event_id(id, 0));
    assert_eq!(history[2].event_id, command_event_id(id, 1));

    // Sent again: the first outcome, and no second append.
    let again =
        block_on(tickets.execute_with("t-1", meta("reply-twice", id), two_messages)).unwrap();
    assert!(again.repeated);
    assert_eq!((again.version, again.position), (3, Some(3)));
    assert_eq!(again.state.messages, 2);
    assert_eq!(again.events.len(), 2);
    assert_eq!(block_on(store.last_position()).unwrap(), 3);
    let earlier = block_on(tickets.earlier_outcome("t-1", &meta("reply-twice", id)))
        .unwrap()
        .unwrap();
    assert_eq!(outcome(&earlier), outcome(&again));

    // The same id for another command is refused, and appends nothing.
    let other = block_on(tickets.execute_with("t-1", meta("reply", id), |t| {
        t.add_message("Hello?", "customer")
    }));
    assert!(matches!(
        other,
        Err(ExecuteError::Store(Error::CommandIdReused { .. }))
    ));
    assert_eq!(block_on(store.last_position()).unwrap(), 3);
    drop((tickets, store));
    assert_eq!(check_integrity(&db, true), "ok");
}

#[test]
fn find_event_and_trail_of_on_sqlite() {
    let store = SqliteStore::open_temporary().unwrap();
    let tickets = Repository::<Ticket, _>::new(store.clone());
    let request = Uuid::now_v7();
    block_on(tickets.execute_with("t-1", meta("open", request), |t| {
        t.open("Printer on fire", "ada@example.com")
    }))
    .unwrap();
    // Another transaction, and many events of none, before the reaction.
    block_on(tickets.execute("t-2", |t| t.open("Scanner", "bob@example.com"))).unwrap();
    for n in 0..300 {
        block_on(tickets.execute("t-2", |t| t.add_message(&format!("ping {n}"), "customer")))
            .unwrap();
    }
    let opened = block_on(tickets.history("t-1")).unwrap().remove(0);
    block_on(
        tickets
            .command("t-3")
            .metadata(Metadata::new().actor("triage").command("open"))
            .caused_by(&opened)
            .execute(|t| t.open("Follow-up", "ada@example.com")),
    )
    .unwrap();

    let found = block_on(store.find_event(opened.event_id))
        .unwrap()
        .unwrap();
    assert_eq!(found.position, opened.position);
    assert_eq!(found.stream_id.as_str(), "ticket-t-1");
    assert_eq!(found.metadata, opened.metadata);

    let trail = block_on(audit::trail_of(&store, request)).unwrap();
    let lines: Vec<(&str, usize)> = trail
        .iter()
        .map(|e| (e.stream_id.as_str(), e.depth()))
        .collect();
    assert_eq!(lines, [("ticket-t-1", 0), ("ticket-t-3", 1)]);
    assert_eq!(trail.entries()[1].parent_position(), Some(opened.position));
    // A root found by its own id.
    let other = block_on(tickets.history("t-2")).unwrap().remove(0);
    assert_eq!(
        block_on(audit::trail_of(&store, other.event_id))
            .unwrap()
            .len(),
        1
    );
}
