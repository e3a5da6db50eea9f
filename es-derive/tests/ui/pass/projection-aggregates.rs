// `aggregates(...)`: a projection takes events from the streams of the listed
// aggregate types only. Event names are unique within an aggregate, not across
// aggregates: a ticket's `renamed` is skipped undecoded by a lead projection,
// by `project` (per stream) and by a runner asking `takes` (a read model).
use std::cell::RefCell;

use es_core::prelude::*;
use es_core::{BoxError, Dispatch};

mod lead {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct Renamed {
        pub name: String,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(events(Renamed))]
    pub struct Lead;

    impl Apply<Renamed> for Lead {
        fn apply(&mut self, _: &Renamed) {}
    }
}

mod crm {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A ticket's event, with the same stored name as a lead's `Renamed`
    /// and a payload a `Renamed` decodes from.
    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "renamed")]
    pub struct TicketRenamed {
        pub name: String,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(events(TicketRenamed))]
    pub struct Ticket;

    impl Apply<TicketRenamed> for Ticket {
        fn apply(&mut self, _: &TicketRenamed) {}
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct Contacted;

    #[derive(Aggregate, Default)]
    #[aggregate(name = "crm-contact", events(Contacted))]
    pub struct Contact;

    impl Apply<Contacted> for Contact {
        fn apply(&mut self, _: &Contacted) {}
    }
}

use lead::{Lead, Renamed};

/// A lead's names, from leads' streams only.
#[derive(Projection, Default, Debug)]
#[projection(events(Renamed), aggregates(Lead))]
pub struct LeadNames {
    names: Vec<String>,
}

impl Apply<Renamed> for LeadNames {
    fn apply(&mut self, event: &Renamed) {
        self.names.push(event.name.clone());
    }
}

/// The same without `aggregates(...)`: any aggregate's `renamed`.
#[derive(Projection, Default, Debug)]
#[projection(events(Renamed))]
pub struct AnyNames {
    names: Vec<String>,
}

impl Apply<Renamed> for AnyNames {
    fn apply(&mut self, event: &Renamed) {
        self.names.push(event.name.clone());
    }
}

/// Two aggregate types, one of them by path.
#[derive(Projection, Default, Debug)]
#[projection(events(Renamed, crm::Contacted), aggregates(Lead, crm::Contact))]
pub struct Activity(usize);

impl Apply<Renamed> for Activity {
    fn apply(&mut self, _: &Renamed) {
        self.0 += 1;
    }
}

impl Apply<crm::Contacted> for Activity {
    fn apply(&mut self, _: &crm::Contacted) {
        self.0 += 1;
    }
}

/// A read model of leads' renames, written to a log of lines.
#[derive(Projection, Default)]
#[projection(events(Renamed), aggregates(Lead), context = RefCell<Vec<String>>)]
pub struct RenameLog;

impl Handle<Renamed, RefCell<Vec<String>>> for RenameLog {
    fn handle(
        &mut self,
        cx: &RefCell<Vec<String>>,
        event: &Envelope<Renamed>,
    ) -> Result<(), BoxError> {
        cx.borrow_mut()
            .push(format!("{}: {}", event.stream_id, event.event.name));
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    assert_eq!(LeadNames::AGGREGATES, ["lead"]);
    assert_eq!(AnyNames::AGGREGATES, [""; 0]);
    assert_eq!(Activity::AGGREGATES, ["lead", "crm-contact"]);
    assert_eq!(RenameLog::AGGREGATES, ["lead"]);
    assert!(LeadNames::takes("lead", "renamed"));
    assert!(!LeadNames::takes("ticket", "renamed"));
    assert!(!LeadNames::takes("lead", "contacted"));
    assert!(
        LeadNames::handles("renamed"),
        "`handles` looks at the name only"
    );
    assert!(AnyNames::takes("ticket", "renamed"));
    assert!(Activity::takes("crm-contact", "contacted"));

    es_core::blocking::block_on(async {
        let store = InMemoryStore::new();
        let leads = Repository::<Lead, _>::new(store.clone());
        let tickets = Repository::<crm::Ticket, _>::new(store.clone());
        let contacts = Repository::<crm::Contact, _>::new(store.clone());
        leads
            .execute("7", |_| Renamed {
                name: "Casey".into(),
            })
            .await?;
        for name in ["Printer jam", "Printer on fire"] {
            let renamed = |_: &crm::Ticket| crm::TicketRenamed { name: name.into() };
            tickets.execute("7", renamed).await?;
        }
        contacts.execute("7", |_| crm::Contacted).await?;

        let lead = leads.stream_id("7")?;
        let ticket = tickets.stream_id("7")?;
        let contact = contacts.stream_id("7")?;
        use es_core::projection::project;
        let names = project::<LeadNames, _>(&store, &lead).await?;
        assert_eq!(names.names, ["Casey"]);
        assert_eq!(names.version, 1);

        // The ticket's `renamed` events are skipped, and still counted.
        let names = project::<LeadNames, _>(&store, &ticket).await?;
        assert!(names.names.is_empty());
        assert_eq!(names.version, 2);

        // Without `aggregates(...)`, they decode as a lead's.
        let any = project::<AnyNames, _>(&store, &ticket).await?;
        assert_eq!(any.names, ["Printer jam", "Printer on fire"]);

        assert_eq!(project::<Activity, _>(&store, &contact).await?.0, 1);
        let skipped = project::<Activity, _>(&store, &ticket).await?;
        assert_eq!((skipped.0, skipped.version), (0, 2));

        // What a runner does with each event of `$all`.
        let (lines, mut log) = (RefCell::new(Vec::new()), RenameLog);
        let mut all = store.read_all(0);
        while let Some(event) = es_core::store::next(&mut all).await {
            let event = event?;
            if RenameLog::takes(&event.aggregate_type, &event.name) {
                log.dispatch(&lines, event.into_envelope()?)?;
            }
        }
        assert_eq!(lines.into_inner(), ["lead-7: Casey"]);
        Ok(())
    })
}
