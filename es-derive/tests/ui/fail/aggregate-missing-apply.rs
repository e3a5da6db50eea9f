use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

mod closed {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct TicketClosed;
}

// `Apply<closed::TicketClosed>` is missing: reported on its path.
#[derive(Aggregate, Default)]
#[aggregate(events(TicketOpened, closed::TicketClosed))]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

fn main() {}
