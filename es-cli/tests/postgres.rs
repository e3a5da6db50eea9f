//! `es import --postgres`: a SQLite store moved to PostgreSQL through the
//! export file, every event as it was, and a second import a repeat. Needs
//! a server: run under `scripts/with-postgres` (it sets `ES_POSTGRES_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use es_core::blocking::{Repository, block_on};
use es_core::store::next;
use es_core::{EventStore, RecordedEvent};
use es_postgres::PostgresStore;
use ticket::Ticket;

mod common;
use common::{all, stderr, stdout, tickets};

fn url() -> String {
    std::env::var("ES_POSTGRES_URL").expect(
        "ES_POSTGRES_URL is not set: run with a server of its own, `scripts/with-postgres cargo test -p es-cli`",
    )
}

#[test]
fn a_sqlite_store_moves_to_postgres_by_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = tickets(dir.path());
    let file = dir.path().join("all.jsonl");
    let es = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_es"))
            .args(args)
            .output()
            .expect("the es binary runs")
    };
    let out = es(&[
        "export",
        db.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let schema = format!("cli_{}", es_core::Uuid::now_v7().simple());
    let url = url();
    let import = || {
        es(&[
            "import",
            file.to_str().unwrap(),
            "--postgres",
            &url,
            "--schema",
            &schema,
        ])
    };
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("8 events imported, 0 already stored, into schema"),
        "{}",
        stdout(&out)
    );

    let store = PostgresStore::options()
        .schema(schema.as_str())
        .connect(&url)
        .unwrap();
    let moved: Vec<RecordedEvent> = block_on(async {
        let mut events = store.read_all(1);
        let mut out = Vec::new();
        while let Some(e) = next(&mut events).await {
            out.push(e.unwrap());
        }
        out
    });
    let original = all(&db);
    assert_eq!(original.len(), moved.len());
    for (a, b) in original.iter().zip(&moved) {
        assert_eq!(
            (
                &a.stream_id,
                &a.aggregate_type,
                a.version,
                a.position,
                a.event_id
            ),
            (
                &b.stream_id,
                &b.aggregate_type,
                b.version,
                b.position,
                b.event_id
            )
        );
        assert_eq!(
            (a.occurred_at, &a.name, a.schema_version),
            (b.occurred_at, &b.name, b.schema_version)
        );
        assert_eq!((&a.metadata, a.payload()), (&b.metadata, b.payload()));
    }
    let again = import();
    assert!(
        stdout(&again).contains("0 events imported, 8 already stored"),
        "{}",
        stdout(&again)
    );
    // The moved store serves the domain as the file did.
    let tickets = Repository::<Ticket, _>::new(store);
    assert_eq!(tickets.load("t-2").unwrap().version, 3);
}
