use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Aggregate, Default)]
#[aggregate(events(LeadInitialized))]
pub struct Lead;

impl Apply<LeadInitialized> for Lead {
    fn apply(&mut self, _: &LeadInitialized) {}
}

// An event is not an aggregate: `aggregates(...)` names the aggregate types
// whose streams the projection reads.
#[derive(Projection, Default)]
#[projection(events(LeadInitialized), aggregates(Lead, LeadInitialized))]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

fn main() {}
