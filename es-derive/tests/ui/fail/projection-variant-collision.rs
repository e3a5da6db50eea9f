use es_core::prelude::*;

mod lead {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "lead-updated")]
    pub struct Updated;
}

mod crm {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "contact-updated")]
    pub struct Updated;
}

// Events of two aggregates with one type name: the enum cannot have two
// `Updated` variants.
#[derive(Projection, Default)]
#[projection(events(lead::Updated, crm::Updated))]
pub struct LeadSearch;

impl Apply<lead::Updated> for LeadSearch {
    fn apply(&mut self, _: &lead::Updated) {}
}

fn main() {}
