//! The replay check (`es_core::verify`): a clean store reports nothing, and
//! each kind of finding, planted in a store, is reported with its stream,
//! version and reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unnecessary_wraps,       // upcasters return a Result
    clippy::needless_pass_by_value, // test helpers take values
    missing_docs,
    unreachable_pub
)]

use std::sync::{Arc, Mutex};

use es_core::blocking::block_on;
use es_core::evolution::Migration;
use es_core::prelude::*;
use es_core::verify::{Finding, Phase, Progress, Unchecked, Verify};
use es_core::{BoxError, NewEvent, Snapshot, upcast::RawUpcaster};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A meter reading. Version 0 stored it as text (`{"reading": "12"}`); a raw
/// upcaster parses it.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "meter-read")]
pub struct Read {
    pub value: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "meter-reset")]
pub struct Reset;

/// Its `apply` assumes readings are never negative: the kind of assumption
/// a replay check catches before a deploy does.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "meter", events(Read, Reset), snapshot(every = 2))]
pub struct Meter {
    pub total: u64,
    pub readings: u32,
}

impl Apply<Read> for Meter {
    fn apply(&mut self, e: &Read) {
        let value = u64::try_from(e.value).expect("a reading is never negative");
        self.total += value;
        self.readings += 1;
    }
}

impl Apply<Reset> for Meter {
    fn apply(&mut self, _: &Reset) {
        *self = Meter::default();
    }
}

/// `{"reading": "12"}` -> `{"value": 12}`; fails on text that is no number.
fn parse_reading(payload: &mut serde_json::Value) -> Result<(), BoxError> {
    let text = payload["reading"].as_str().ok_or("no reading")?;
    let value: i64 = text.trim().parse()?;
    *payload = json!({ "value": value });
    Ok(())
}

es_core::upcasters! {
    RawUpcaster::reshape("meter", "meter-read", 0, 1, parse_reading),
}

/// Another program's aggregate, sharing the store.
#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "gauge", events(Reset))]
pub struct Gauge;
impl Apply<Reset> for Gauge {
    fn apply(&mut self, _: &Reset) {}
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

fn raw(name: &str, version: u32, payload: serde_json::Value) -> NewEvent {
    NewEvent::new("meter", name.to_owned(), version, payload.to_string())
}

fn append(store: &InMemoryStore, id: &str, events: Vec<NewEvent>) {
    block_on(store.append(&stream(id), ExpectedVersion::Any, events)).unwrap();
}

fn verify(store: &InMemoryStore) -> es_core::verify::Report {
    block_on(Verify::new(store).aggregate::<Meter>().run()).unwrap()
}

/// A store the current code reads entirely: typed events, an old-format
/// event the upcaster reads, snapshots the repository took, a moved stream,
/// and another program's stream.
fn clean_store() -> InMemoryStore {
    let store = InMemoryStore::new();
    let meters = Repository::<Meter, _>::new(store.clone());
    for (id, values) in [("1", &[3, 4, 5][..]), ("2", &[10][..]), ("3", &[1, 1][..])] {
        for &value in values {
            block_on(meters.execute(id, |_| Read { value })).unwrap();
        }
    }
    append(
        &store,
        "meter-4",
        vec![raw("meter-read", 0, json!({ "reading": " 7" }))],
    );
    block_on(Migration::copy(stream("meter-2"), stream("meter-20")).run(&store)).unwrap();
    append(
        &store,
        "gauge-1",
        vec![NewEvent::new("gauge", "meter-reset", 1, "null")],
    );
    store
}

#[test]
fn a_clean_store_reports_nothing() {
    let store = clean_store();
    // The repository snapshots every 2 versions: meter-1 and meter-3 have one.
    assert!(
        block_on(store.load_snapshot(&stream("meter-1")))
            .unwrap()
            .is_some()
    );
    let report = verify(&store);
    assert_eq!(report.findings, vec![], "{report}");
    assert!(report.is_clean());
    // meter-1 (3), meter-2 (1 and its marker), meter-3 (2), meter-4 (1), meter-20 (1).
    assert_eq!((report.streams, report.events), (5, 9));
    assert_eq!(report.snapshots_compared, 2);
    assert_eq!(
        report.unchecked,
        vec![Unchecked {
            aggregate_type: "gauge".into(),
            streams: 1,
            events: 1
        }]
    );
    assert_eq!(
        report.to_string(),
        "5 streams, 9 events and 2 snapshots replayed: no findings"
    );
    assert_eq!(
        format!("{report:#}"),
        "5 streams, 9 events and 2 snapshots replayed: no findings\n  \
         not checked: 1 stream (1 event) of aggregate type `gauge`"
    );

    // Given both aggregates, nothing is unchecked.
    let both = block_on(
        Verify::new(&store)
            .aggregate::<Meter>()
            .aggregate::<Gauge>()
            .run(),
    )
    .unwrap();
    assert!(both.is_clean() && both.unchecked.is_empty());
    assert_eq!(both.streams, 6);
}

#[test]
fn an_event_that_does_not_decode_is_reported_with_its_stream_and_version() {
    let store = clean_store();
    append(
        &store,
        "meter-1",
        vec![
            raw("meter-read", 1, json!({ "value": "five" })),
            raw("meter-calibrated", 1, json!({})),
            raw("meter-read", 2, json!({ "value": 5 })),
        ],
    );
    let report = verify(&store);
    let found: Vec<(String, u64, String, u32)> = report
        .findings
        .iter()
        .map(|f| match f {
            Finding::Undecodable {
                stream,
                version,
                name,
                schema_version,
                ..
            } => (stream.to_string(), *version, name.clone(), *schema_version),
            other => panic!("not an undecodable event: {other}"),
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("meter-1".into(), 4, "meter-read".into(), 1),
            ("meter-1".into(), 5, "meter-calibrated".into(), 1),
            ("meter-1".into(), 6, "meter-read".into(), 2),
        ]
    );
    let text = report.findings[0].to_string();
    assert!(
        text.starts_with("meter-1 version 4: `meter-read` version 1 does not decode: "),
        "{text}"
    );
    assert!(text.contains("invalid type"), "the serde reason: {text}");
    assert!(
        report.findings[2].to_string().contains("newer"),
        "{}",
        report.findings[2]
    );
    let listed = format!("{report:#}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines[0],
        "5 streams, 12 events and 2 snapshots replayed: 3 findings"
    );
    assert_eq!(lines[1], format!("  {}", report.findings[0]));
    assert_eq!(
        lines.len(),
        5,
        "the summary, 3 findings, 1 unchecked type: {listed}"
    );
}

#[test]
fn an_upcaster_that_fails_is_reported() {
    let store = clean_store();
    append(
        &store,
        "meter-5",
        vec![raw("meter-read", 0, json!({ "reading": "12" }))],
    );
    append(
        &store,
        "meter-5",
        vec![raw("meter-read", 0, json!({ "reading": "twelve" }))],
    );
    let report = verify(&store);
    let [
        Finding::Undecodable {
            stream,
            version,
            reason,
            ..
        },
    ] = &report.findings[..]
    else {
        panic!("one finding: {:?}", report.findings);
    };
    assert_eq!((stream.as_str(), *version), ("meter-5", 2));
    assert!(reason.contains("upcast"), "{reason}");
    assert!(
        reason.contains("invalid digit"),
        "the upcaster's own error: {reason}"
    );
}

#[test]
fn an_apply_that_panics_is_caught_and_reported() {
    let store = clean_store();
    append(
        &store,
        "meter-6",
        vec![
            raw("meter-read", 1, json!({ "value": 2 })),
            raw("meter-read", 1, json!({ "value": -1 })),
            // After the panic the state is not the events' state: later
            // events are still decoded, not applied.
            raw("meter-read", 1, json!({ "value": -2 })),
            raw("meter-read", 1, json!({ "value": "x" })),
        ],
    );
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let report = verify(&store);
    std::panic::set_hook(quiet);
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    assert_eq!(
        report.findings[0],
        Finding::ApplyPanicked {
            stream: stream("meter-6"),
            version: 2,
            name: "meter-read".into(),
            message: "a reading is never negative: TryFromIntError(())".into(),
        }
    );
    assert!(matches!(
        report.findings[1],
        Finding::Undecodable { version: 4, .. }
    ));
    assert_eq!(
        report.findings[0].to_string(),
        "meter-6 version 2: applying `meter-read` panicked: a reading is never negative: TryFromIntError(())"
    );
    // The other streams were replayed all the same.
    assert_eq!(report.streams, 6);
}

fn plant_snapshot(
    store: &InMemoryStore,
    id: &str,
    version: u64,
    schema_version: u32,
    state: &[u8],
) {
    block_on(store.save_snapshot(Snapshot {
        stream_id: stream(id),
        aggregate_type: "meter".into(),
        version,
        schema_version,
        state: state.to_vec(),
        taken_at: Timestamp::now(),
    }))
    .unwrap();
}

#[test]
fn a_snapshot_that_differs_from_its_events_is_reported() {
    let store = clean_store();
    // meter-1's events give {total: 7, readings: 2} at version 2.
    block_on(store.delete_snapshot(&stream("meter-1"))).unwrap();
    plant_snapshot(&store, "meter-1", 2, 1, br#"{"total":9,"readings":2}"#);
    // Past the end of meter-2 (1 event and its marker).
    plant_snapshot(&store, "meter-2", 5, 1, br#"{"total":10,"readings":1}"#);
    // Not the state's type.
    plant_snapshot(&store, "meter-4", 1, 1, br#"{"total":"seven"}"#);
    // Another state schema version is not drift: repositories ignore it.
    block_on(store.delete_snapshot(&stream("meter-3"))).unwrap();
    plant_snapshot(&store, "meter-3", 1, 7, br#"{"total":0,"readings":0}"#);

    let report = verify(&store);
    let drift: Vec<(String, u64, String)> = report
        .findings
        .iter()
        .map(|f| match f {
            Finding::SnapshotDrift {
                stream,
                version,
                reason,
            } => (stream.to_string(), *version, reason.clone()),
            other => panic!("not drift: {other}"),
        })
        .collect();
    assert_eq!(drift.len(), 3, "{drift:?}");
    assert_eq!(
        drift[0],
        ("meter-1".into(), 2, "`/total`: snapshot 9, events 7".into())
    );
    assert_eq!(
        drift[1],
        (
            "meter-2".into(),
            5,
            "the snapshot is at version 5 but the stream ends at version 2".into()
        )
    );
    assert_eq!((drift[2].0.as_str(), drift[2].1), ("meter-4", 1));
    assert!(
        drift[2].2.starts_with("the snapshot does not decode"),
        "{}",
        drift[2].2
    );
    assert_eq!(report.snapshots_compared, 3, "meter-1, meter-2 and meter-4");
}

#[test]
fn progress_is_reported_for_both_passes() {
    let store = clean_store();
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let log = seen.clone();
    let report = block_on(
        Verify::new(&store)
            .aggregate::<Meter>()
            .progress(move |p| log.lock().unwrap().push(p))
            .run(),
    )
    .unwrap();
    assert!(report.is_clean());
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            Progress {
                phase: Phase::List,
                done: 10,
                total: 10
            },
            Progress {
                phase: Phase::Replay,
                done: 9,
                total: 9
            },
        ]
    );
}

#[test]
fn an_empty_store_is_clean() {
    let report = verify(&InMemoryStore::new());
    assert!(report.is_clean());
    assert_eq!((report.streams, report.events), (0, 0));
}
