use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Opened;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Closed;

// A bad value: its error is the only one. The stubs (the event enum, its
// `From` impls and stub `Aggregate` impls) keep the code below, which names
// `ThingEvent`, `Repository::<Thing, _>` and `impl Apply<E> for Thing`, free
// of errors of its own.
#[derive(Aggregate, Default, Debug)]
#[aggregate(events(Opened, Closed), snapshot(every = 0))]
pub struct Thing {
    open: bool,
}

impl Apply<Opened> for Thing {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Closed> for Thing {
    fn apply(&mut self, _: &Closed) {
        self.open = false;
    }
}

impl Thing {
    fn close(&self) -> Result<Closed, &'static str> {
        if self.open { Ok(Closed) } else { Err("not open") }
    }
}

fn kind(event: &ThingEvent) -> &'static str {
    match event {
        ThingEvent::Opened(_) => "opened",
        ThingEvent::Closed(_) => "closed",
    }
}

fn main() {
    assert_eq!(kind(&ThingEvent::from(Opened)), "opened");
    let things = Repository::<Thing, _>::new(InMemoryStore::new());
    let _closing = things.execute("t-1", |t| t.close());
    es_core::testing::given::<Thing>(Opened).when(Thing::close).then(Closed);
    assert_eq!(Thing::NAME, "thing");
}
