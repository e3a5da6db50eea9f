//! What es-postgres promises beyond the conformance suite: positions never
//! filled in late under concurrent writers of several stores (processes),
//! group commit, watches woken by other processes through `LISTEN/NOTIFY`
//! or by polling, and forgettable payloads with the key store in
//! PostgreSQL (RELIABILITY S3).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use es_core::blocking::block_on;
use es_core::privacy::{Forget, KeyEncryptionKey, PrivacyError};
use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use es_postgres::{OpenError, PostgresStore};

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("a valid stream id")
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("counter", "counted", 1, format!(r#"{{"n":{n}}}"#))
}

/// T3's ordering promise on PostgreSQL: four stores on one schema (four
/// writers with connections of their own, as four processes would have),
/// two threads each, append while a reader follows `$all`; the reader
/// never finds a position below one it has seen, nor a gap (which a later
/// commit would fill), and ends with every acknowledged event.
#[test]
fn t3_concurrent_writers_never_fill_a_position_in_late() {
    let schema = common::fresh_schema();
    let open = || {
        PostgresStore::options()
            .schema(schema.clone())
            .connect(&common::url())
            .expect("opens")
    };
    let stores: Vec<PostgresStore> = (0..4).map(|_| open()).collect();
    let reader = open();
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut next_position = 1;
            let mut reads = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                for e in common::read_all(&reader, next_position) {
                    assert_eq!(
                        e.position,
                        next_position,
                        "after position {} the reader found {}",
                        next_position - 1,
                        e.position
                    );
                    next_position += 1;
                }
                reads += 1;
                if finished {
                    return (next_position - 1, reads);
                }
            }
        })
    };
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .flat_map(|(s, store)| {
            (0..2).map(move |t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let id = stream(&format!("counter-{s}-{t}"));
                    for n in 0..150 {
                        let events = (0..=(n % 3)).map(event).collect();
                        block_on(store.append(&id, ExpectedVersion::Any, events)).expect("appends");
                    }
                })
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer");
    }
    done.store(true, Ordering::SeqCst);
    let (seen, reads) = follower.join().expect("the reader");
    // 8 writers x 150 appends of 1, 2 or 3 events.
    let expected = 8 * (50 * (1 + 2 + 3));
    assert_eq!(seen, expected);
    assert_eq!(block_on(stores[0].last_position()).unwrap(), expected);
    assert!(reads > 1, "the reader followed the writers");
}

/// Concurrent appends share commits: 16 threads of 40 appends each make
/// fewer transactions than appends.
#[test]
fn group_commit_shares_transactions_between_concurrent_appends() {
    let store = common::store();
    let before = store.write_stats();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..40 {
                    let id = stream(&format!("counter-{t}"));
                    block_on(store.append(&id, ExpectedVersion::Exact(n), vec![event(n)]))
                        .expect("appends");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a writer");
    }
    let stats = store.write_stats();
    let (commits, requests) = (
        stats.commits - before.commits,
        stats.requests - before.requests,
    );
    assert_eq!(requests, 640);
    assert!(
        commits < requests,
        "{requests} appends took {commits} commits: none was shared"
    );
    assert_eq!(block_on(store.last_position()).unwrap(), 640);
}

/// Waits until `watch` sees a position of at least `position`, appending
/// with `append` every 100 ms meanwhile (a notification sent before the
/// listener listens is not delivered); false after 10 s.
fn wakes(watch: &mut es_core::store::Watch, mut append: impl FnMut()) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        append();
        if watch.wait_timeout(Duration::from_millis(100)).is_some() {
            return true;
        }
    }
    false
}

/// A watch of one store wakes on another store's commit through
/// `LISTEN/NOTIFY`: its poll interval (a minute) is far longer than the test.
#[test]
fn a_watch_wakes_on_another_process_commit_through_notify() {
    let schema = common::fresh_schema();
    let writer = PostgresStore::options()
        .schema(schema.clone())
        .connect(&common::url())
        .unwrap();
    let listener = PostgresStore::options()
        .schema(schema)
        .poll_interval(Duration::from_mins(1))
        .connect(&common::url())
        .unwrap();
    let mut watch = listener.watch();
    assert_eq!(watch.last_position(), 0);
    let id = stream("counter-1");
    let mut n = 0;
    assert!(wakes(&mut watch, || {
        block_on(writer.append(&id, ExpectedVersion::Any, vec![event(n)])).unwrap();
        n += 1;
    }));
    assert!(watch.last_position() >= 1);
}

/// Without `LISTEN`, the watch learns of the commit by polling the head.
#[test]
fn polling_is_the_fallback_without_listen() {
    let schema = common::fresh_schema();
    let writer = PostgresStore::options()
        .schema(schema.clone())
        .connect(&common::url())
        .unwrap();
    let poller = PostgresStore::options()
        .schema(schema)
        .listen(false)
        .poll_interval(Duration::from_millis(50))
        .connect(&common::url())
        .unwrap();
    let mut watch = poller.watch();
    block_on(writer.append(
        &stream("counter-1"),
        ExpectedVersion::NoStream,
        vec![event(1)],
    ))
    .unwrap();
    assert!(wakes(&mut watch, || {}));
    assert_eq!(watch.last_position(), 1);
}

const CANARY: &str = "canary-7f3a@example.com";

/// S3 on PostgreSQL: personal fields are sealed in the table, read back
/// opened, and read as forgotten once the subject is forgotten; no row of
/// the events table nor of the key table holds the canary, and the
/// subject's keys are gone from the key table.
#[test]
fn s3_personal_fields_are_sealed_and_forgotten() {
    let kek = KeyEncryptionKey::generate();
    let schema = common::fresh_schema();
    let store = PostgresStore::options()
        .schema(schema.clone())
        .personal_data(kek.clone())
        .connect(&common::url())
        .unwrap();
    let member = stream("member-7");
    let payload = format!(r#"{{"plan":"gold","email":{{"$personal":"{CANARY}"}}}}"#);
    block_on(store.append(
        &member,
        ExpectedVersion::NoStream,
        vec![NewEvent::new("member", "member-joined", 1, payload)],
    ))
    .unwrap();
    let other = stream("member-8");
    block_on(store.append(
        &other,
        ExpectedVersion::NoStream,
        vec![NewEvent::new(
            "member",
            "member-joined",
            1,
            r#"{"plan":"basic","email":{"$personal":"eight@example.com"}}"#,
        )],
    ))
    .unwrap();

    let mut sql = postgres::Client::connect(&common::url(), postgres::NoTls).unwrap();
    let count = |sql: &mut postgres::Client, query: &str| -> i64 {
        sql.query_one(&query.replace("{schema}", &schema), &[])
            .unwrap()
            .get(0)
    };
    let with_canary =
        format!("SELECT count(*) FROM {{schema}}.es_events WHERE payload LIKE '%{CANARY}%'");
    assert_eq!(count(&mut sql, &with_canary), 0, "sealed in the table");
    let read = common::read_all(&store, 1);
    assert!(read[0].event.as_str().contains(CANARY), "opened on reading");
    assert_eq!(
        count(
            &mut sql,
            "SELECT count(*) FROM {schema}.es_data_keys WHERE subject = 'member-7'"
        ),
        1
    );

    let forgotten =
        block_on(store.forget("member-7", Metadata::new().reason("erasure request"))).unwrap();
    assert_eq!(forgotten.keys_destroyed, 1);
    assert_eq!(
        count(
            &mut sql,
            "SELECT count(*) FROM {schema}.es_data_keys WHERE subject = 'member-7'"
        ),
        0
    );
    let read = common::read_all(&store, 1);
    assert!(!read[0].event.as_str().contains(CANARY));
    assert!(
        read[0].event.as_str().contains(r#""$forgotten":true"#),
        "{}",
        read[0].event.as_str()
    );
    assert!(
        read[1].event.as_str().contains("eight@example.com"),
        "the other subject reads"
    );
    assert_eq!(read.last().unwrap().name, "es.subject-forgotten");

    // A store opened with another key-encryption key is refused at once.
    let wrong = PostgresStore::options()
        .schema(schema)
        .personal_data(KeyEncryptionKey::generate())
        .connect(&common::url());
    assert!(
        matches!(wrong, Err(OpenError::Keys(PrivacyError::WrongKey))),
        "{wrong:?}"
    );
}

/// A store in a schema made by a newer es-postgres is refused, and left
/// as it is.
#[test]
fn a_newer_schema_is_refused() {
    let store = common::store();
    let schema = store.schema().to_owned();
    drop(store);
    let mut sql = postgres::Client::connect(&common::url(), postgres::NoTls).unwrap();
    sql.batch_execute(&format!("UPDATE {schema}.es_schema SET version = 99"))
        .unwrap();
    let opened = PostgresStore::options()
        .schema(schema)
        .connect(&common::url());
    assert!(
        matches!(
            opened,
            Err(OpenError::NewerSchema { found: 99, known, .. }) if known < 99
        ),
        "{opened:?}"
    );
}

/// A server that does not answer is a typed error at connect.
#[test]
fn an_unreachable_server_is_a_connect_error() {
    let opened = PostgresStore::connect("postgresql://nobody@127.0.0.1:1/none");
    assert!(matches!(opened, Err(OpenError::Connect(_))), "{opened:?}");
}
