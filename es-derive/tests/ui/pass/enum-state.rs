// An aggregate's state may be an enum: a state machine.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DoorOpened;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DoorClosed {
    pub by: String,
}

#[derive(Aggregate, Default, Debug, PartialEq)]
#[aggregate(name = "door", events(DoorOpened, DoorClosed))]
pub enum Door {
    #[default]
    Closed,
    Open,
}

impl Apply<DoorOpened> for Door {
    fn apply(&mut self, _: &DoorOpened) {
        *self = Door::Open;
    }
}

impl Apply<DoorClosed> for Door {
    fn apply(&mut self, _: &DoorClosed) {
        *self = Door::Closed;
    }
}

impl Door {
    fn open(&self) -> Result<Option<DoorOpened>, String> {
        Ok(match self {
            Door::Closed => Some(DoorOpened),
            Door::Open => None,
        })
    }
}

fn main() {
    es_core::testing::given::<Door>(()).when(Door::open).then(DoorOpened);
    es_core::testing::given::<Door>(DoorOpened).when(Door::open).then_nothing();
    let closed = DoorClosed { by: "ann".into() };
    let state = es_core::testing::given::<Door>((DoorOpened, closed)).when(|d| d.open()).then([DoorOpened]);
    assert_eq!(state, Door::Open);
}
