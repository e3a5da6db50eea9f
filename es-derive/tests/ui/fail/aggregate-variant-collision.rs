use es_core::prelude::*;

mod a {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "door-opened")]
    pub struct Opened;
}

mod b {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "window-opened")]
    pub struct Opened;
}

#[derive(Aggregate, Default)]
#[aggregate(events(a::Opened, b::Opened))]
pub struct House;

impl Apply<a::Opened> for House {
    fn apply(&mut self, _: &a::Opened) {}
}

impl Apply<b::Opened> for House {
    fn apply(&mut self, _: &b::Opened) {}
}

fn main() {}
