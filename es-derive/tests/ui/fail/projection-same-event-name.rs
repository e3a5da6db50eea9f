use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-initialized", version = 1)]
pub struct LeadInitializedV1;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-initialized", version = 2, upcast_from = LeadInitializedV1)]
pub struct LeadInitialized;

impl From<LeadInitializedV1> for LeadInitialized {
    fn from(_: LeadInitializedV1) -> Self {
        LeadInitialized
    }
}

#[derive(Projection, Default)]
#[projection(events(LeadInitialized, LeadInitializedV1))]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

impl Apply<LeadInitializedV1> for LeadSearch {
    fn apply(&mut self, _: &LeadInitializedV1) {}
}

fn main() {}
