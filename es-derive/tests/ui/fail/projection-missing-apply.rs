use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

mod crm {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct ContactDetailsUpdated;
}

// `Apply<crm::ContactDetailsUpdated>` is missing: reported on its path.
#[derive(Projection, Default)]
#[projection(events(LeadInitialized, crm::ContactDetailsUpdated))]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

fn main() {}
