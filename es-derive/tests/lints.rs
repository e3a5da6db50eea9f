//! User code that derives stays clean under strict lints: no warning comes
//! from the generated code, for every shape the derives expand (plain
//! events, `upcast_from`, `snapshot(...)`, `conflicts = ...`, projections
//! with and without `context = ...` or `aggregates(...)`).
//!
//! Checked by `cargo clippy -p es-derive --all-targets -- -D warnings` too.

#![deny(warnings, unused_qualifications, missing_docs, rust_2018_idioms)]
#![deny(clippy::all, clippy::pedantic)]
#![forbid(unsafe_code)]

use es_core::prelude::*;
use es_core::{Dispatch, RecordedEvent};
use serde::{Deserialize, Serialize};

/// A documented event.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[event(name = "lint-happened")]
pub struct Happened {
    /// How many.
    pub count: u32,
}

/// The first version of [`Renamed`].
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[event(name = "lint-renamed", version = 1)]
pub struct RenamedV1 {
    /// The old name.
    pub name: String,
}

/// An event with an upcast chain.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[event(name = "lint-renamed", version = 2, upcast_from = RenamedV1)]
pub struct Renamed {
    /// The new name.
    pub to: String,
}

impl From<RenamedV1> for Renamed {
    fn from(old: RenamedV1) -> Self {
        Renamed { to: old.name }
    }
}

/// A unit event.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Reset;

/// A documented aggregate.
#[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(
    name = "lint",
    events(Happened, Renamed, Reset),
    snapshot(every = 10, version = 2),
    conflicts = Lint::both_reset
)]
pub struct Lint {
    total: u64,
    name: String,
}

impl Lint {
    fn both_reset(ours: &[LintEvent], theirs: &[LintEvent]) -> bool {
        let resets = |events: &[LintEvent]| events.iter().any(|e| matches!(e, LintEvent::Reset(_)));
        resets(ours) && resets(theirs)
    }
}

impl Apply<Happened> for Lint {
    fn apply(&mut self, event: &Happened) {
        self.total += u64::from(event.count);
    }
}

impl Apply<Renamed> for Lint {
    fn apply(&mut self, event: &Renamed) {
        self.name.clone_from(&event.to);
    }
}

impl Apply<Reset> for Lint {
    fn apply(&mut self, _: &Reset) {
        self.total = 0;
    }
}

/// An aggregate without snapshots or `conflicts`, and a crate-private one.
#[derive(Aggregate, Default)]
#[aggregate(events(Happened))]
struct Quiet;

impl Apply<Happened> for Quiet {
    fn apply(&mut self, _: &Happened) {}
}

/// A documented per-stream projection.
#[derive(Projection, Default, Debug)]
#[projection(
    name = "lint-totals",
    version = 2,
    events(Happened, Reset),
    aggregates(Lint)
)]
pub struct Totals {
    total: u64,
}

impl Apply<Happened> for Totals {
    fn apply(&mut self, event: &Happened) {
        self.total += u64::from(event.count);
    }
}

impl Apply<Reset> for Totals {
    fn apply(&mut self, _: &Reset) {
        self.total = 0;
    }
}

/// What the read model writes to.
#[derive(Default)]
pub struct Sink {
    names: std::cell::RefCell<Vec<String>>,
}

/// A documented read model with a context, and a crate-private one.
#[derive(Projection, Default)]
#[projection(events(Renamed, Happened), context = Sink)]
pub struct Names;

impl Handle<Renamed, Sink> for Names {
    fn handle(&mut self, cx: &Sink, event: &Envelope<Renamed>) -> Result<(), es_core::BoxError> {
        cx.names.borrow_mut().push(event.event.to.clone());
        Ok(())
    }
}

impl Handle<Happened, Sink> for Names {
    fn handle(&mut self, _: &Sink, _: &Envelope<Happened>) -> Result<(), es_core::BoxError> {
        Ok(())
    }
}

#[derive(Projection, Default)]
#[projection(events(Reset), aggregates(Lint, Quiet), context = Sink)]
struct Resets;

impl Handle<Reset, Sink> for Resets {
    fn handle(&mut self, _: &Sink, _: &Envelope<Reset>) -> Result<(), es_core::BoxError> {
        Ok(())
    }
}

#[test]
fn strict_lints_hold() {
    let mut lint = Lint::default();
    lint.apply(&LintEvent::from(Happened { count: 2 }));
    lint.apply(&LintEvent::decode("lint-renamed", 1, r#"{"name":"x"}"#).expect("upcasts"));
    assert_eq!((lint.total, lint.name.as_str()), (2, "x"));
    assert!(Lint::conflicts(&[Reset.into()], &[Reset.into()]));
    let mut quiet = Quiet;
    quiet.apply(&QuietEvent::from(Happened { count: 1 }));

    let mut totals = Totals::default();
    totals.apply(&TotalsEvent::from(Happened { count: 3 }));
    assert_eq!(
        (Totals::NAME, Totals::VERSION, totals.total),
        ("lint-totals", 2, 3)
    );
    assert_eq!(Totals::AGGREGATES, ["lint"]);
    assert_eq!(Resets::AGGREGATES, ["lint", "quiet"]);

    let recorded = RecordedEvent {
        stream_id: StreamId::new("lint-1").expect("a stream id"),
        aggregate_type: "lint".into(),
        version: 1,
        position: 1,
        event_id: es_core::Uuid::nil(),
        recorded_at: Timestamp::from_unix_micros(0),
        occurred_at: Timestamp::from_unix_micros(0),
        name: "lint-renamed".into(),
        schema_version: 2,
        metadata: Metadata::new(),
        event: es_core::Payload::from(r#"{"to":"y"}"#),
    };
    let sink = Sink::default();
    let renamed = recorded.into_envelope::<NamesEvent>().expect("decodes");
    Names.dispatch(&sink, renamed.clone()).expect("handled");
    assert_eq!(*sink.names.borrow(), ["y"]);
    let reset = renamed.with_event(ResetsEvent::from(Reset));
    Resets.dispatch(&sink, reset).expect("handled");
}
