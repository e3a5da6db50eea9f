use es_core::prelude::*;
use es_core::BoxError;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

mod crm {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct ContactDetailsUpdated;
}

pub struct Log;

// `Handle<crm::ContactDetailsUpdated, Log>` is missing: reported on its path.
#[derive(Projection, Default)]
#[projection(events(LeadInitialized, crm::ContactDetailsUpdated), context = Log)]
pub struct LeadSearch;

impl Handle<LeadInitialized, Log> for LeadSearch {
    fn handle(&mut self, _: &Log, _: &Envelope<LeadInitialized>) -> Result<(), BoxError> {
        Ok(())
    }
}

fn main() {}
