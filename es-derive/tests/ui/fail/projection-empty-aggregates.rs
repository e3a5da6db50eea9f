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

#[derive(Projection, Default)]
#[projection(events(LeadInitialized), aggregates())]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

fn main() {}
