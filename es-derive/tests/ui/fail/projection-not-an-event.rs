use es_core::prelude::*;

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Projection, Default)]
#[projection(events(LeadInitialized))]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

fn main() {}
