use es_core::BoxError;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized {
    pub name: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ContactDetailsUpdated;

// A bad value: its error is the only one. The stubs (the event enum, its
// `From` impls and stub `EventSet`, `Projection`, `Apply` impls) keep
// the code below, which names `LeadSearchEvent`, `project::<LeadSearch, _>`
// and `impl Apply<E> for LeadSearch`, free of errors of its own.
#[derive(Projection, Default)]
#[projection(version = 0, events(LeadInitialized, ContactDetailsUpdated))]
pub struct LeadSearch {
    name: String,
}

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, event: &LeadInitialized) {
        self.name.clone_from(&event.name);
    }
}

impl Apply<ContactDetailsUpdated> for LeadSearch {
    fn apply(&mut self, _: &ContactDetailsUpdated) {}
}

// The same for a read model: the stub `Dispatch<Log>`.
pub struct Log;

#[derive(Projection, Default)]
#[projection(events(LeadInitialized), context = Log, contxt = Log)]
pub struct Names;

impl Handle<LeadInitialized, Log> for Names {
    fn handle(&mut self, _: &Log, _: &Envelope<LeadInitialized>) -> Result<(), BoxError> {
        Ok(())
    }
}

fn kind(event: &LeadSearchEvent) -> &'static str {
    match event {
        LeadSearchEvent::LeadInitialized(_) => "initialized",
        LeadSearchEvent::ContactDetailsUpdated(_) => "updated",
    }
}

fn run<P: es_core::Dispatch<Log>>(p: &mut P, event: Envelope<P::Event>) -> Result<(), BoxError> {
    p.dispatch(&Log, event)
}

fn main() {
    assert_eq!(kind(&LeadSearchEvent::from(ContactDetailsUpdated)), "updated");
    let store = InMemoryStore::new();
    let stream = StreamId::new("lead-1").unwrap();
    let _folding = es_core::projection::project::<LeadSearch, _>(&store, &stream);
    assert_eq!(LeadSearch::NAME, "lead-search");
    let _ = run::<Names>;
    let _ = NamesEvent::from(LeadInitialized { name: String::new() });
}
