use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer_id: String,
    #[personal]
    pub email: Personal<String>,
}

fn main() {}
