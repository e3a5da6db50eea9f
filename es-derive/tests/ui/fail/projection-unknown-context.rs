use es_core::prelude::*;
use es_core::BoxError;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

pub struct Log;

// A context that does not resolve is reported on `context = ...`.
#[derive(Projection, Default)]
#[projection(events(LeadInitialized), context = Logg)]
pub struct LeadSearch;

impl Handle<LeadInitialized, Log> for LeadSearch {
    fn handle(&mut self, _: &Log, _: &Envelope<LeadInitialized>) -> Result<(), BoxError> {
        Ok(())
    }
}

fn main() {}
