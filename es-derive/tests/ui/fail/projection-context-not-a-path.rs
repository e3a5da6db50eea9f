use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ContactDetailsUpdated;

pub struct Log;

#[derive(Projection, Default)]
#[projection(events(LeadInitialized), context = "Log")]
pub struct LeadSearch;

fn main() {}
