use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LampSwitchedOn;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lamp-dimmed")]
pub struct LampDimmed(pub u8);

#[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(events(LampSwitchedOn, LampDimmed), snapshot(every = 10, version = 2))]
pub struct Lamp {
    on: bool,
    level: u8,
}

impl Apply<LampSwitchedOn> for Lamp {
    fn apply(&mut self, _: &LampSwitchedOn) {
        self.on = true;
        self.level = 100;
    }
}

impl Apply<LampDimmed> for Lamp {
    fn apply(&mut self, event: &LampDimmed) {
        self.level = event.0;
    }
}

fn main() {
    assert_eq!(LampSwitchedOn::NAME, "lamp-switched-on");
    assert_eq!(Lamp::SNAPSHOT, Some(es_core::SnapshotPolicy { every: 10, version: 2 }));
    let dimmed = LampEvent::from(LampDimmed(40));
    let payload = dimmed.encode().unwrap();
    assert_eq!(payload, "40");
    let back = LampEvent::decode("lamp-dimmed", 1, payload.as_str()).unwrap();
    assert_eq!(back, dimmed);
    let mut lamp = Lamp::default();
    lamp.apply(&LampEvent::from(LampSwitchedOn));
    lamp.apply(&back);
    assert_eq!((lamp.on, lamp.level), (true, 40));
    let snapshot = lamp.encode_snapshot().unwrap().unwrap();
    let restored = Lamp::decode_snapshot(&snapshot).unwrap().unwrap();
    assert_eq!((restored.on, restored.level), (true, 40));
}
