use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
pub struct Changed<T> {
    pub value: T,
}

fn main() {}
