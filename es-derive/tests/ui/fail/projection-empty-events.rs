use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ContactDetailsUpdated;

#[derive(Projection, Default)]
#[projection(events())]
pub struct LeadSearch;

fn main() {}
