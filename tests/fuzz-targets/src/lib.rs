//! RELIABILITY T14: the fuzz targets. Each function takes arbitrary bytes
//! and feeds them to one decode or validation path of es; it panics only
//! when that path breaks a promise (a panic of its own, an untyped
//! failure, a wrong answer), which is what a fuzzer looks for.
//!
//! They are run two ways:
//!
//! - coverage-guided, by `cargo fuzz` (the `fuzz/` directory, outside the
//!   workspace: `scripts/fuzz TARGET SECONDS`, and the long tier), which
//!   needs nothing but the stable toolchain with `--sanitizer none`;
//! - in every `cargo test`, over the seeds in `fuzz/seeds/<target>/` and
//!   every crash the fuzzers found (`fuzz/regressions/<target>/`), then
//!   thousands of generated inputs (`tests/targets.rs`).
//!
//! | target | path |
//! |---|---|
//! | [`event_decode`] | a stored payload decoded as a Ticket event, through its upcast chain |
//! | [`raw_upcast`] | a stored payload through a chain of raw upcasters (rename, reshape, split) |
//! | [`stream_ids`] | stream ids and aggregate ids: validation and round trip |
//! | [`open_sealed`] | a payload with sealed personal fields opened with a subject's key |
//! | [`http_request`] | a request body to each command of the Ticket service, answered in process |
//! | [`import_file`] | an export file, checked and imported as `es import` does, twice |

// A fuzz target reports a broken promise by panicking: that is its whole
// job, so its panics are not documented one by one. The upcaster
// functions have the signatures `RawUpcaster` takes.
#![allow(
    clippy::missing_panics_doc,
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps
)]

use std::sync::{Arc, OnceLock};

use es_core::privacy::{KeyEncryptionKey, Keys, MemoryKeyStore};
use es_core::upcast::{RawEvent, RawUpcaster};
use es_core::{BoxError, Payload, RecordedEvent, StreamId, Timestamp, Uuid};

/// A fuzz target: arbitrary bytes in, a panic on a broken promise.
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz` and the seed tests know them.
pub const TARGETS: &[(&str, Target)] = &[
    ("event_decode", event_decode),
    ("raw_upcast", raw_upcast),
    ("stream_ids", stream_ids),
    ("open_sealed", open_sealed),
    ("http_request", http_request),
    ("import_file", import_file),
];

/// A stored event of `aggregate_type`, `name` at `version`, with `payload`.
fn stored(aggregate_type: &str, name: &str, version: u32, payload: &str) -> RecordedEvent {
    RecordedEvent {
        // A valid literal id.
        stream_id: StreamId::new("fuzz-1").unwrap_or_else(|_| unreachable!()),
        aggregate_type: aggregate_type.into(),
        version: 1,
        position: 1,
        event_id: Uuid::nil(),
        recorded_at: Timestamp::from_unix_micros(0),
        occurred_at: Timestamp::from_unix_micros(0),
        name: name.to_owned(),
        schema_version: version,
        metadata: es_core::Metadata::default(),
        event: Payload::new(payload),
    }
}

/// The first byte chooses one of `choices`; the rest is the input.
fn choose<'a, T>(data: &'a [u8], choices: &'a [T]) -> Option<(&'a T, &'a [u8])> {
    let (first, rest) = data.split_first()?;
    Some((choices.get(usize::from(*first) % choices.len())?, rest))
}

/// A stored payload (any bytes) decoded as each Ticket event name and
/// schema version, the first through its upcast chain (`ticket-escalated`
/// 1 → 2): an envelope or a `DecodeError`, never a panic.
pub fn event_decode(data: &[u8]) {
    const NAMES: &[(&str, u32)] = &[
        ("ticket-opened", 1),
        ("message-added", 1),
        ("ticket-escalated", 1),
        ("ticket-escalated", 2),
        ("ticket-escalated", 9),
        ("escalation-withdrawn", 1),
        ("ticket-closed", 1),
        ("message-moved-out", 1),
        ("message-moved-in", 1),
        ("no-such-event", 1),
    ];
    let Some(((name, version), rest)) = choose(data, NAMES) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let event = stored("ticket", name, *version, text);
    if let Ok(decoded) = event.into_envelopes::<ticket::TicketEvent>() {
        assert!(!decoded.is_empty(), "a decoded event is at least one event");
    }
}

/// Reshape: the `name` field split in two; fails on a payload without one.
fn split_name(payload: &mut serde_json::Value) -> Result<(), BoxError> {
    let name = payload
        .get("name")
        .and_then(serde_json::Value::as_str)
        .ok_or("no name")?
        .to_owned();
    let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
    *payload = serde_json::json!({ "first": first, "last": last, "phone": payload["phone"] });
    Ok(())
}

/// Split: a card is a naming and a phoning.
fn split_card(card: RawEvent) -> Result<Vec<RawEvent>, BoxError> {
    let p = card.payload.clone();
    let event = |name: &str, payload| RawEvent {
        name: name.into(),
        version: 1,
        payload,
        ..card.clone()
    };
    Ok(vec![
        event(
            "fuzz-named",
            serde_json::json!({ "first": p["first"], "last": p["last"] }),
        ),
        event("fuzz-phoned", serde_json::json!({ "phone": p["phone"] })),
    ])
}

es_core::upcasters! {
    RawUpcaster::rename("fuzz", "fuzz-created", 1, "fuzz-card", 1),
    RawUpcaster::reshape("fuzz", "fuzz-card", 1, 2, split_name),
    RawUpcaster::split("fuzz", "fuzz-card", 2, &[("fuzz-named", 1), ("fuzz-phoned", 1)], split_card),
    RawUpcaster::remove("fuzz", "fuzz-viewed", 1),
}

/// A stored payload through the raw upcasters of aggregate `fuzz` (a
/// rename, a reshape, a split, a removal, chained): the events it becomes,
/// or a `DecodeError`; never a panic, and never more than the split's two.
pub fn raw_upcast(data: &[u8]) {
    const KEYS: &[(&str, u32)] = &[
        ("fuzz-created", 1),
        ("fuzz-card", 1),
        ("fuzz-card", 2),
        ("fuzz-viewed", 1),
        ("fuzz-named", 1),
    ];
    let Some(((name, version), rest)) = choose(data, KEYS) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(Some(events)) = es_core::upcast::upcast("fuzz", name, *version, text) {
        assert!(events.len() <= 2, "{name}@{version} became {events:?}");
    }
}

/// Any string as a stream id, and as an aggregate id of type `ticket`:
/// accepted exactly as given (its text is the input), or refused with a
/// `StreamIdError`.
pub fn stream_ids(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = StreamId::new(text) {
        assert_eq!(id.as_str(), text);
    }
    if let Ok(id) = StreamId::for_aggregate("ticket", text) {
        assert_eq!(id.aggregate_id("ticket"), Some(text));
    }
}

/// The keys of the sealed target, with one subject's key, and a payload
/// sealed with it: `(keys, stream, event id, sealed payload)`.
pub fn sealing() -> &'static (Keys, StreamId, Uuid, String) {
    static SEALED: OnceLock<(Keys, StreamId, Uuid, String)> = OnceLock::new();
    SEALED.get_or_init(|| {
        let keys = Keys::new(MemoryKeyStore::new(KeyEncryptionKey::generate()));
        let stream = StreamId::new("ticket-t-1").unwrap_or_else(|_| unreachable!());
        let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
        let sealed = keys
            .seal(SEALED_PLAIN, &stream, id)
            .ok()
            .flatten()
            .unwrap_or_default();
        (keys, stream, id, sealed)
    })
}

/// What [`sealing`] seals.
pub const SEALED_PLAIN: &str =
    r#"{"title":"Printer on fire","customer_email":{"$personal":"ada@example.com"}}"#;

/// A payload (any bytes) opened with the sealing subject's key: an
/// opened payload or a typed error, never a panic. (That no altered sealed
/// value opens is checked by the tests, which know where the value is.)
pub fn open_sealed(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (keys, stream, id, _) = sealing();
    let _ = keys.open(text, stream, *id);
}

/// The service of the HTTP target: a runtime and a Ticket service over a
/// SQLite file in a temporary directory, kept for the process.
fn service() -> Option<&'static (tokio::runtime::Runtime, Arc<ticket::service::Service>)> {
    static SERVICE: OnceLock<Option<(tokio::runtime::Runtime, Arc<ticket::service::Service>)>> =
        OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .ok()?;
            let dir = tempfile::tempdir().ok()?.keep();
            let store = es_sqlite::SqliteStore::options()
                .personal_data(KeyEncryptionKey::generate())
                .open(dir.join("tickets.db"))
                .ok()?;
            let service = runtime.block_on(async { ticket::service::Service::start(store) });
            Some((runtime, service.ok()?))
        })
        .as_ref()
}

/// A request body (any bytes) to one of the Ticket service's command
/// routes, on an open ticket: answered in process, never a panic, never a
/// 500, and every refusal a problem document whose `status` is the
/// response's.
pub fn http_request(data: &[u8]) {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;

    const ROUTES: &[&str] = &[
        "/api/tickets",
        "/api/tickets/t-1/messages",
        "/api/tickets/t-1/escalate",
        "/api/tickets/t-1/close",
        "/api/tickets/t-1/corrections",
        "/api/tickets/t-1/forget",
        "/api/tickets/t-2/messages",
    ];
    let Some((route, body)) = choose(data, ROUTES) else {
        return;
    };
    let Some((runtime, service)) = service() else {
        panic!("the Ticket service does not start");
    };
    let send = |route: &str, body: Vec<u8>| {
        let request = Request::post(route)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|_| unreachable!("a literal request"));
        runtime.block_on(async {
            let response = ticket::service::router(service.clone())
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (status, bytes)
        })
    };
    // The ticket the commands name (opened again: a 422 after the first).
    send(
        "/api/tickets",
        br#"{"id":"t-1","title":"Printer on fire","email":"ada@example.com"}"#.to_vec(),
    );
    let (status, bytes) = send(route, body.to_vec());
    assert!(!status.is_server_error(), "{route}: {status}: {bytes:?}");
    if status.is_client_error() {
        let problem: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{route}: {status}: not a problem document ({e})"));
        assert_eq!(problem["status"], status.as_u16(), "{route}: {problem}");
    }
}

/// An export file (any bytes; the first chooses renumbering and the batch
/// size) read as `es import` reads it: each line an exported event or a
/// parse error; a line that parses writes back and parses again to the
/// same text. A file whose every line parses and passes
/// [`ImportCheck`](es_core::export::ImportCheck), its streams beginning at
/// version 1 or renumbered, imports whole into an empty store, with each
/// stream's events in the file's order under their ids; importing it
/// again appends nothing.
pub fn import_file(data: &[u8]) {
    import_file_imported(data);
}

/// [`import_file`], saying whether the file was imported (it parsed,
/// passed the check and began its streams at version 1 or was
/// renumbered), so that tests know the import was reached.
pub fn import_file_imported(data: &[u8]) -> bool {
    use es_core::export::{ExportedEvent, ImportBatches, ImportCheck};
    use es_core::{EventStore, InMemoryStore, ReadRange, blocking::block_on};

    let Some((&first, rest)) = data.split_first() else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return false;
    };
    let renumber = first & 1 == 1;
    let batch = usize::from(first >> 1) % 8 + 1;
    let mut events = Vec::new();
    let mut whole = true;
    let limits = es_core::store::Limits {
        max_events_per_append: batch,
        ..es_core::store::Limits::default()
    };
    let mut check = ImportCheck::new(renumber, limits);
    for line in text.lines() {
        match ExportedEvent::parse(line) {
            Ok(None) => {}
            Ok(Some(event)) => {
                let written = serde_json::to_string(&event)
                    .unwrap_or_else(|e| panic!("an exported event does not write: {e}"));
                let again = ExportedEvent::parse(&written)
                    .unwrap_or_else(|e| panic!("{written} does not parse again: {e}"));
                let again = serde_json::to_string(&again).ok();
                assert_eq!(again.as_deref(), Some(written.as_str()), "a line changes");
                whole &= check.check(&event).is_ok();
                events.push(event);
            }
            Err(_) => whole = false,
        }
    }
    if !whole {
        return false;
    }
    assert_eq!(check.events(), events.len() as u64);
    let mut firsts = std::collections::HashMap::new();
    for event in &events {
        firsts.entry(event.stream.as_str()).or_insert(event.version);
    }
    if !renumber && firsts.values().any(|&v| v != 1) {
        // Continues streams an empty store does not hold.
        return false;
    }
    let store = InMemoryStore::new();
    let import = |events: Vec<ExportedEvent>| {
        let (mut appended, mut repeated) = (0, 0);
        let mut batches = ImportBatches::new(renumber, &limits);
        let mut append = |batch: es_core::export::ImportBatch| {
            let results = block_on(store.append_to_streams(batch.writes)).unwrap_or_else(|e| {
                panic!(
                    "a checked file is refused at line {}: {e}",
                    batch.first_line
                )
            });
            if results.iter().all(|r| r.repeated) {
                repeated += batch.events;
            } else {
                appended += batch.events;
            }
        };
        for (n, event) in events.into_iter().enumerate() {
            let full = batches
                .push(n + 1, event)
                .unwrap_or_else(|e| panic!("a checked stream id is refused: {e}"));
            full.into_iter().for_each(&mut append);
        }
        batches.finish().into_iter().for_each(&mut append);
        (appended, repeated)
    };
    let total = events.len();
    assert_eq!(import(events.clone()), (total, 0), "the first import");
    assert_eq!(import(events.clone()), (0, total), "the second import");
    let mut streams = std::collections::BTreeMap::<&str, Vec<Uuid>>::new();
    for event in &events {
        streams
            .entry(&event.stream)
            .or_default()
            .push(event.event_id);
    }
    for (stream, ids) in streams {
        let id = StreamId::new(stream).unwrap_or_else(|e| panic!("checked: {e}"));
        let stored = block_on(async {
            let mut read = store.read_stream(&id, ReadRange::all());
            let mut stored = Vec::new();
            while let Some(event) = es_core::store::next(&mut read).await {
                let event = event.unwrap_or_else(|e| panic!("{stream} does not read: {e}"));
                stored.push(event.event_id);
            }
            stored
        });
        assert_eq!(stored, ids, "{stream}");
    }
    true
}
