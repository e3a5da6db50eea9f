use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Changed<T> {
    pub value: T,
}

#[derive(Aggregate, Default)]
#[aggregate(events(Changed<u32>))]
pub struct Counter;

impl Apply<Changed<u32>> for Counter {
    fn apply(&mut self, _: &Changed<u32>) {}
}

fn main() {}
