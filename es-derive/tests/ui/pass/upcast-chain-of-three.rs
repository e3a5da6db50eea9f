use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 1)]
pub struct TicketEscalatedV1 {
    pub reason: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1)]
pub struct TicketEscalatedV2 {
    pub reason: String,
    pub by: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 3, upcast_from = TicketEscalatedV2)]
pub struct TicketEscalated {
    pub reasons: Vec<String>,
    pub by: String,
}

impl From<TicketEscalatedV1> for TicketEscalatedV2 {
    fn from(old: TicketEscalatedV1) -> Self {
        TicketEscalatedV2 { reason: old.reason, by: "system".into() }
    }
}

impl From<TicketEscalatedV2> for TicketEscalated {
    fn from(old: TicketEscalatedV2) -> Self {
        TicketEscalated { reasons: vec![old.reason], by: old.by }
    }
}

fn main() {
    let v1 = TicketEscalated::decode(1, r#"{"reason":"vip"}"#).unwrap();
    assert_eq!(v1, TicketEscalated { reasons: vec!["vip".into()], by: "system".into() });
    let v2 = TicketEscalated::decode(2, r#"{"reason":"late","by":"ann"}"#).unwrap();
    assert_eq!(v2, TicketEscalated { reasons: vec!["late".into()], by: "ann".into() });
    let v3 = TicketEscalated::decode(3, r#"{"reasons":["a","b"],"by":"bo"}"#).unwrap();
    assert_eq!(v3.reasons.len(), 2);
    assert!(matches!(TicketEscalated::decode(4, "{}"), Err(es_core::DecodeError::VersionTooNew { .. })));
    assert!(matches!(TicketEscalated::decode(0, "{}"), Err(es_core::DecodeError::UnknownVersion { .. })));
    assert_eq!(TicketEscalated::decodable_versions(), vec![1, 2, 3]);
}
