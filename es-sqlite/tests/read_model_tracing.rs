//! A runner's progress as `tracing` events: a long catch-up logs its
//! progress (checkpoint, head, rate) inside a `read_model` span naming the
//! model and its version, and says when it serves.
//!
//! One test: it installs the process's global subscriber.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common/bank.rs"]
mod bank;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bank::{Balances, deposited};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, StreamId};
use es_sqlite::{ReadModels, RunOptions, SqliteStore};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// An event as recorded: its fields as text, and the fields of the spans
/// it was in.
#[derive(Debug, Default, Clone)]
struct Logged {
    fields: HashMap<String, String>,
    spans: Vec<HashMap<String, String>>,
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every event, with the spans each thread is in.
#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, HashMap<String, String>>>,
    stacks: Mutex<HashMap<std::thread::ThreadId, Vec<u64>>>,
    events: Arc<Mutex<Vec<Logged>>>,
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = Fields::default();
        span.record(&mut fields);
        fields
            .0
            .insert("span".into(), span.metadata().name().into());
        self.spans.lock().unwrap().insert(id, fields.0);
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let stack = self
            .stacks
            .lock()
            .unwrap()
            .get(&std::thread::current().id())
            .cloned()
            .unwrap_or_default();
        let spans = self.spans.lock().unwrap();
        let spans = stack
            .iter()
            .filter_map(|id| spans.get(id).cloned())
            .collect();
        self.events.lock().unwrap().push(Logged {
            fields: fields.0,
            spans,
        });
    }
    fn enter(&self, span: &Id) {
        self.stacks
            .lock()
            .unwrap()
            .entry(std::thread::current().id())
            .or_default()
            .push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut stacks = self.stacks.lock().unwrap();
        if let Some(stack) = stacks.get_mut(&std::thread::current().id()) {
            stack.retain(|s| *s != span.into_u64());
        }
    }
}

#[test]
fn a_long_catch_up_logs_its_progress_in_the_models_span() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        events: events.clone(),
        ..Recorder::default()
    };
    tracing::subscriber::set_global_default(recorder).unwrap();

    let store = SqliteStore::open_temporary().unwrap();
    let stream = StreamId::new("a-1").unwrap();
    for _ in 0..20 {
        let batch = (0..50).map(deposited).collect();
        block_on(store.append(&stream, ExpectedVersion::Any, batch)).unwrap();
    }
    let models = ReadModels::open(&store).unwrap();
    // Small batches, and progress logged after every one of them.
    let options = RunOptions::new()
        .batch(100)
        .progress_every(Duration::ZERO)
        .poll_interval(Duration::from_millis(5));
    let runner = models.start_with(Balances::default(), options).unwrap();
    block_on(runner.caught_up()).unwrap();
    drop(runner);

    let logged = events.lock().unwrap().clone();
    let of_model: Vec<&Logged> = logged
        .iter()
        .filter(|e| {
            e.spans.iter().any(|s| {
                s.get("span").map(String::as_str) == Some("read_model")
                    && s.get("name").map(String::as_str) == Some("balances")
                    && s.get("version").map(String::as_str) == Some("1")
            })
        })
        .collect();
    let message = |e: &&Logged| e.fields.get("message").cloned().unwrap_or_default();
    let progress: Vec<&&Logged> = of_model
        .iter()
        .filter(|e| message(e) == "catching up")
        .collect();
    assert!(
        progress.len() >= 5,
        "progress was logged {} times: {of_model:?}",
        progress.len()
    );
    for e in &progress {
        let checkpoint: u64 = e.fields["checkpoint"].parse().unwrap();
        let head: u64 = e.fields["head"].parse().unwrap();
        let behind: u64 = e.fields["behind"].parse().unwrap();
        assert_eq!(head, 1_000);
        assert_eq!(behind, head - checkpoint);
        assert!(e.fields.contains_key("events_per_second"));
    }
    assert!(
        of_model.iter().any(|e| message(e) == "caught up: serving"),
        "{of_model:?}"
    );
}
