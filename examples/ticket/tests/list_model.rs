//! The service's ticket list read model over a history of every ticket
//! event: one row per ticket, with status, escalation, message count and
//! the version of its last event.

use es_core::testing::history;
use es_sqlite::testing::given;
use ticket::service::list::TicketList;
use ticket::{
    AgentId, EscalationWithdrawn, MessageAdded, MessageMovedIn, MessageMovedOut, Reason, Ticket,
    TicketClosed, TicketEscalated, TicketOpened,
};

fn opened(title: &str) -> TicketOpened {
    TicketOpened {
        title: title.into(),
        customer_email: "ada@example.com".to_owned().into(),
    }
}

fn said(body: &str) -> MessageAdded {
    MessageAdded {
        body: body.into(),
        by: "customer".into(),
    }
}

#[test]
fn each_ticket_event_moves_its_row() {
    let escalated = TicketEscalated {
        reason: Reason("VIP".into()),
        by: AgentId("agent-9".into()),
    };
    let withdrawn = EscalationWithdrawn {
        reason: Reason("wrong ticket".into()),
    };
    let events = history()
        .of::<Ticket>("t-1", (opened("Printer on fire"), said("It smokes.")))
        .of::<Ticket>(
            "t-2",
            (opened("Cannot log in"), said("Help"), said("Hello?")),
        )
        .of::<Ticket>("t-1", (escalated.clone(), withdrawn, escalated))
        .of::<Ticket>(
            "t-2",
            MessageMovedOut {
                message: 2,
                to: "t-1".into(),
            },
        )
        .of::<Ticket>(
            "t-1",
            (
                MessageMovedIn {
                    from: "t-2".into(),
                    message: 2,
                    body: "Hello?".into(),
                    by: "customer".into(),
                },
                TicketClosed {
                    resolution: "replaced the fuser".into(),
                },
            ),
        );
    given(events).then_read_model(TicketList).assert_rows(
        "SELECT id, title, status, escalated, messages, version FROM tickets ORDER BY id",
        [
            (
                "t-1".to_owned(),
                "Printer on fire".to_owned(),
                "closed".to_owned(),
                1,
                2,
                7,
            ),
            (
                "t-2".to_owned(),
                "Cannot log in".to_owned(),
                "open".to_owned(),
                0,
                1,
                4,
            ),
        ],
    );
}
