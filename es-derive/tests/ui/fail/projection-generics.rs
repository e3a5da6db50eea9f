use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ContactDetailsUpdated;

#[derive(Projection, Default)]
#[projection(events(LeadInitialized))]
pub struct LeadSearch<T> {
    rows: Vec<T>,
}

pub struct Log;

#[derive(Projection, Default)]
#[projection(events(LeadInitialized), context = Log)]
pub struct Rows<T>(Vec<T>);

fn main() {}
