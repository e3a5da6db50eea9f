//! Compensating events on `SqliteStore`, with the Ticket domain: what a
//! compensating command refuses and records, the trail's raw and effective
//! views (a correction of a correction included) read back after a
//! restart, and a compensation that races another writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::prelude::*;
use es_core::{Error, Executed, TrailEntry, Uuid};
use es_sqlite::SqliteStore;
use ticket::{AgentId, Reason, Ticket, TicketError, TicketEvent};

type Tickets = Repository<Ticket, SqliteStore>;

async fn opened_and_waiting(tickets: &Tickets, id: &str) {
    tickets
        .execute(id, |t| t.open("printer", "ada@example.com"))
        .await
        .unwrap();
    tickets
        .execute(id, |t| t.add_message("it smokes", "customer"))
        .await
        .unwrap();
}

async fn escalate(tickets: &Tickets, id: &str) -> Executed<Ticket> {
    tickets
        .execute(id, |t| {
            t.escalate(Reason("waited".into()), AgentId("agent-7".into()))
        })
        .await
        .unwrap()
}

async fn event_id(tickets: &Tickets, id: &str, version: u64) -> Uuid {
    let history = tickets.history(id).await.unwrap();
    history[usize::try_from(version - 1).unwrap()].event_id
}

fn withdraw(t: &Ticket) -> Result<ticket::EscalationWithdrawn, TicketError> {
    t.withdraw_escalation(Reason("wrong ticket".into()))
}

fn versions<'t, T: 't>(entries: impl IntoIterator<Item = &'t TrailEntry<T>>) -> Vec<u64> {
    entries.into_iter().map(|e| e.version).collect()
}

#[tokio::test]
async fn a_missing_target_or_one_of_another_stream_appends_nothing() {
    let store = SqliteStore::open_temporary().unwrap();
    let tickets = Repository::<Ticket, _>::new(store.clone());
    opened_and_waiting(&tickets, "1").await;
    escalate(&tickets, "1").await;
    opened_and_waiting(&tickets, "2").await;
    escalate(&tickets, "2").await;
    let before = store.last_position().await.unwrap();

    for target in [Uuid::now_v7(), event_id(&tickets, "1", 3).await] {
        let refused = tickets.execute_compensating("2", target, withdraw).await;
        let Err(ExecuteError::Store(Error::CompensationTargetNotFound { stream, target: t })) =
            refused
        else {
            panic!("refused: {refused:?}");
        };
        assert_eq!((stream.as_str(), t), ("ticket-2", target));
    }
    assert_eq!(store.last_position().await.unwrap(), before);
    let two = tickets.load("2").await.unwrap();
    assert_eq!((two.version, two.escalated), (3, true));
}

#[tokio::test]
async fn every_event_of_the_command_carries_its_target_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.db");
    let target = {
        let tickets = Repository::<Ticket, _>::new(SqliteStore::open(&path).unwrap());
        opened_and_waiting(&tickets, "1").await;
        escalate(&tickets, "1").await;
        let target = event_id(&tickets, "1", 3).await;
        let done = tickets
            .command("1")
            .compensating(target)
            .metadata(Metadata::new().actor("supervisor"))
            .execute(|t| {
                Ok::<_, TicketError>((
                    withdraw(t)?,
                    t.add_message("sorry, wrong ticket", "supervisor")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(done.version, 5);
        target
    };
    let tickets = Repository::<Ticket, _>::new(SqliteStore::open(&path).unwrap());
    let history = tickets.history("1").await.unwrap();
    // The command's first event roots its transaction; the second records
    // the first's id as its correlation.
    let meta = Metadata::new().actor("supervisor").compensates(target);
    assert_eq!(history[3].metadata, meta);
    assert_eq!(
        history[4].metadata,
        meta.correlation_id(history[3].event_id)
    );
    assert!(
        history[..3]
            .iter()
            .all(|e| e.metadata.compensates.is_none())
    );
    let trail = tickets.trail("1").await.unwrap();
    assert_eq!(trail.raw()[2].corrected_by(), [4, 5]);
    assert_eq!(versions(trail.effective()), [1, 2]);
    assert!(!tickets.load("1").await.unwrap().escalated);
}

/// The withdrawal was itself the mistake: a compensating escalation names
/// it, and the first escalation stands again. Then the escalation in force
/// is withdrawn after all.
#[tokio::test]
async fn a_correction_of_a_correction_reads_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.db");
    {
        let tickets = Repository::<Ticket, _>::new(SqliteStore::open(&path).unwrap());
        opened_and_waiting(&tickets, "1").await;
        escalate(&tickets, "1").await; // v3
        let escalation = event_id(&tickets, "1", 3).await;
        tickets
            .execute_compensating("1", escalation, withdraw)
            .await
            .unwrap(); // v4
        let withdrawal = event_id(&tickets, "1", 4).await;
        let done = tickets
            .execute_compensating("1", withdrawal, |t| {
                t.escalate(Reason("it was right".into()), AgentId("supervisor".into()))
            })
            .await
            .unwrap(); // v5
        assert!(done.state.escalated);
    }
    let tickets = Repository::<Ticket, _>::new(SqliteStore::open(&path).unwrap());
    let trail = tickets.trail("1").await.unwrap();
    let marks: Vec<_> = trail
        .iter()
        .map(|e| {
            (
                e.corrected_by().to_vec(),
                e.compensated_version(),
                e.is_corrected(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [
            (vec![], None, false),
            (vec![], None, false),
            (vec![4], None, false),
            (vec![5], Some(3), true),
            (vec![], Some(4), false),
        ]
    );
    assert_eq!(versions(trail.effective()), [1, 2, 3]);
    assert!(tickets.load("1").await.unwrap().escalated);

    // The escalation in force now is v5's: withdrawing it puts v4 back in
    // force, so v3 is corrected again.
    let restored = event_id(&tickets, "1", 5).await;
    tickets
        .execute_compensating("1", restored, withdraw)
        .await
        .unwrap(); // v6
    let trail = tickets.trail("1").await.unwrap();
    assert!(trail.entry(3).unwrap().is_corrected());
    assert!(!trail.entry(4).unwrap().is_corrected());
    assert_eq!(versions(trail.effective()), [1, 2]);
    assert!(!tickets.load("1").await.unwrap().escalated);
    let effective: Vec<_> = trail
        .effective()
        .filter_map(|e| e.event.event().cloned())
        .collect();
    assert!(matches!(
        effective[..],
        [TicketEvent::TicketOpened(_), TicketEvent::MessageAdded(_)]
    ));
}

/// Two repositories over one file (their commands are not queued one
/// behind the other): one adds messages while the other withdraws the
/// escalation. The withdrawal meets a conflict (at least the one its first
/// decision causes), decides again on the fresh state, and lands once,
/// marked: the target, a stored event, is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_racing_another_writer_lands_once_marked() {
    let store = SqliteStore::open_temporary().unwrap();
    let writer = Repository::<Ticket, _>::new(store.clone()).with_retries(1_000);
    let corrector = Repository::<Ticket, _>::new(store.clone()).with_retries(1_000);
    opened_and_waiting(&writer, "1").await;
    escalate(&writer, "1").await;
    let target = event_id(&writer, "1", 3).await;

    let interloper = writer.clone();
    let messages = tokio::spawn(async move {
        for i in 0..100 {
            let body = format!("message {i}");
            writer
                .execute("1", |t| t.add_message(&body, "customer"))
                .await
                .unwrap();
        }
    });
    let mut runs = 0;
    let done = corrector
        .execute_compensating("1", target, |t| {
            runs += 1;
            if runs == 1 {
                // However the race goes, one message lands between this
                // decision's load and its append.
                es_core::blocking::block_on(
                    interloper.execute("1", |t| t.add_message("meanwhile", "customer")),
                )
                .unwrap();
            }
            withdraw(t)
        })
        .await
        .unwrap();
    messages.await.unwrap();
    assert!(done.attempts >= 2, "the compensation met a conflict");
    assert_eq!(done.events.len(), 1);

    let trail = corrector.trail("1").await.unwrap();
    assert_eq!(trail.len(), 105);
    let compensations: Vec<_> = trail.iter().filter(|e| e.is_compensation()).collect();
    assert_eq!(compensations.len(), 1);
    assert_eq!(compensations[0].version, done.version);
    assert_eq!(compensations[0].metadata.compensates, Some(target));
    assert_eq!(trail.entry(3).unwrap().corrected_by(), [done.version]);
    assert_eq!(trail.effective().count(), 103);
    let now = corrector.load("1").await.unwrap();
    assert_eq!((now.escalated, now.messages), (false, 102));
}
