use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Opened;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NotListed;

#[derive(Aggregate, Default, Debug)]
#[aggregate(events(Opened))]
pub struct Thing;

impl Apply<Opened> for Thing {
    fn apply(&mut self, _: &Opened) {}
}

impl Thing {
    fn decide(&self) -> NotListed {
        NotListed
    }
}

fn main() {
    es_core::testing::given::<Thing>(()).when(Thing::decide).then_nothing();
}
