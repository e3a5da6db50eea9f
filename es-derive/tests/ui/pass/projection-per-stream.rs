// A per-stream projection listing events of two aggregates, folded from one
// stream with `es_core::projection::project`: events it does not list are
// skipped, and the version counts every event of the stream.
use es_core::prelude::*;

mod lead {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct LeadInitialized {
        pub name: String,
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct Called;

    #[derive(Aggregate, Default)]
    #[aggregate(events(LeadInitialized, Called))]
    pub struct Lead;

    impl Apply<LeadInitialized> for Lead {
        fn apply(&mut self, _: &LeadInitialized) {}
    }

    impl Apply<Called> for Lead {
        fn apply(&mut self, _: &Called) {}
    }
}

mod crm {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct ContactDetailsUpdated {
        pub phone: String,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(events(ContactDetailsUpdated))]
    pub struct Contact;

    impl Apply<ContactDetailsUpdated> for Contact {
        fn apply(&mut self, _: &ContactDetailsUpdated) {}
    }
}

use lead::LeadInitialized;

#[derive(Projection, Default, Debug)]
#[projection(events(LeadInitialized, crm::ContactDetailsUpdated))]
pub struct LeadSearch {
    name: String,
    phones: Vec<String>,
}

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, event: &LeadInitialized) {
        self.name.clone_from(&event.name);
    }
}

impl Apply<crm::ContactDetailsUpdated> for LeadSearch {
    fn apply(&mut self, event: &crm::ContactDetailsUpdated) {
        self.phones.push(event.phone.clone());
    }
}

/// Named and versioned explicitly.
#[derive(Projection, Default)]
#[projection(name = "lead-phones", version = 3, events(crm::ContactDetailsUpdated))]
pub struct Phones(usize);

impl Apply<crm::ContactDetailsUpdated> for Phones {
    fn apply(&mut self, _: &crm::ContactDetailsUpdated) {
        self.0 += 1;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    assert_eq!(LeadSearch::NAME, "lead-search");
    assert_eq!(LeadSearch::VERSION, 1);
    assert_eq!(
        LeadSearch::event_names(),
        ["lead-initialized", "contact-details-updated"]
    );
    assert!(!LeadSearch::handles("called"));
    assert_eq!((Phones::NAME, Phones::VERSION), ("lead-phones", 3));

    es_core::blocking::block_on(async {
        let store = InMemoryStore::new();
        let leads = Repository::<lead::Lead, _>::new(store.clone());
        let contacts = Repository::<crm::Contact, _>::new(store.clone());
        leads
            .execute("7", |_| LeadInitialized {
                name: "Casey".into(),
            })
            .await?;
        leads.execute("7", |_| lead::Called).await?;
        for phone in ["555-0100", "555-0199"] {
            let updated = |_: &crm::Contact| crm::ContactDetailsUpdated {
                phone: phone.to_owned(),
            };
            contacts.execute("7", updated).await?;
        }

        let lead = leads.stream_id("7")?;
        let search = es_core::projection::project::<LeadSearch, _>(&store, &lead).await?;
        assert_eq!(search.name, "Casey");
        assert!(search.phones.is_empty());
        assert_eq!(search.version, 2, "every event counts, listed or not");

        let contact = contacts.stream_id("7")?;
        let search = es_core::projection::project::<LeadSearch, _>(&store, &contact).await?;
        assert_eq!(search.name, "");
        assert_eq!(search.phones, ["555-0100", "555-0199"]);
        assert_eq!(search.version, 2);

        let phones = es_core::projection::project::<Phones, _>(&store, &contact).await?;
        assert_eq!((phones.0, phones.version), (2, 2));

        let none = es_core::projection::project::<Phones, _>(&store, &lead).await?;
        assert_eq!((none.0, none.version), (0, 2));

        let missing = leads.stream_id("8")?;
        let empty = es_core::projection::project::<LeadSearch, _>(&store, &missing).await?;
        assert_eq!((empty.name.as_str(), empty.version), ("", 0));
        Ok(())
    })
}
