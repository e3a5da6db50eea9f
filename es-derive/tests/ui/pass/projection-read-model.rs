// A read model (`context = ...`): `Dispatch<Cx>` hands each event, in its
// whole envelope, to the `Handle<E, Cx>` impl of its type, with the context
// the runner gives (here our own type, called by hand).
use std::cell::RefCell;

use es_core::prelude::*;
use es_core::{BoxError, Dispatch, ReadRange};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized {
    pub name: String,
}

mod crm {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct ContactDetailsUpdated {
        pub phone: String,
    }
}

/// What the handlers write to: a log of lines.
#[derive(Default)]
pub struct Log {
    lines: RefCell<Vec<String>>,
}

#[derive(Projection, Default)]
#[projection(name = "lead-search", version = 2, events(LeadInitialized, crm::ContactDetailsUpdated), context = Log)]
pub struct LeadSearch {
    handled: usize,
}

impl Handle<LeadInitialized, Log> for LeadSearch {
    fn handle(&mut self, cx: &Log, event: &Envelope<LeadInitialized>) -> Result<(), BoxError> {
        self.handled += 1;
        cx.lines.borrow_mut().push(format!(
            "{} v{} initialized {}",
            event.stream_id, event.version, event.event.name
        ));
        Ok(())
    }
}

impl Handle<crm::ContactDetailsUpdated, Log> for LeadSearch {
    fn handle(
        &mut self,
        cx: &Log,
        event: &Envelope<crm::ContactDetailsUpdated>,
    ) -> Result<(), BoxError> {
        if event.event.phone.is_empty() {
            return Err("no phone".into());
        }
        self.handled += 1;
        cx.lines.borrow_mut().push(format!(
            "{} v{} phone {}",
            event.aggregate_id(),
            event.version,
            event.event.phone
        ));
        Ok(())
    }
}

// A context that is a generic path, handed by a runner in another module.
#[derive(Projection, Default)]
#[projection(events(LeadInitialized), context = std::cell::RefCell<Vec<String>>)]
pub struct Names;

impl Handle<LeadInitialized, RefCell<Vec<String>>> for Names {
    fn handle(
        &mut self,
        cx: &RefCell<Vec<String>>,
        event: &Envelope<LeadInitialized>,
    ) -> Result<(), BoxError> {
        cx.borrow_mut().push(event.event.name.clone());
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    assert_eq!((LeadSearch::NAME, LeadSearch::VERSION), ("lead-search", 2));
    assert_eq!((Names::NAME, Names::VERSION), ("names", 1));

    es_core::blocking::block_on(async {
        let store = InMemoryStore::new();
        let stream = StreamId::new("lead-12")?;
        let events = [
            LeadSearchEvent::from(LeadInitialized {
                name: "Casey".into(),
            }),
            LeadSearchEvent::from(crm::ContactDetailsUpdated {
                phone: "555-0100".into(),
            }),
            LeadSearchEvent::from(crm::ContactDetailsUpdated {
                phone: String::new(),
            }),
        ];
        let new = events
            .iter()
            .map(|e| es_core::NewEvent::encode("lead", e, Metadata::new()))
            .collect::<Result<Vec<_>, _>>()?;
        store
            .append(&stream, ExpectedVersion::NoStream, new)
            .await?;

        let mut recorded = Vec::new();
        let mut read = store.read_stream(&stream, ReadRange::all());
        while let Some(event) = es_core::store::next(&mut read).await {
            recorded.push(event?);
        }
        assert_eq!(recorded.len(), 3);

        let (log, mut search) = (Log::default(), LeadSearch::default());
        let (mut seen, mut names) = (RefCell::new(Vec::new()), Names);
        for event in &recorded[..2] {
            let envelope = event.clone().into_envelope::<LeadSearchEvent>()?;
            search.dispatch(&log, envelope)?;
            // A runner decodes only the events a projection lists.
            if Names::handles(&event.name) {
                names.dispatch(&seen, event.clone().into_envelope::<NamesEvent>()?)?;
            }
        }
        assert_eq!(search.handled, 2);
        assert_eq!(
            *log.lines.borrow(),
            ["lead-12 v1 initialized Casey", "12 v2 phone 555-0100"]
        );
        assert_eq!(*seen.get_mut(), ["Casey"]);

        // A handler's error is what `dispatch` returns.
        let envelope = recorded[2].clone().into_envelope::<LeadSearchEvent>()?;
        assert_eq!((envelope.version, envelope.position), (3, 3));
        let error = search
            .dispatch(&log, envelope)
            .expect_err("the handler refuses it");
        assert_eq!(error.to_string(), "no phone");
        assert_eq!(search.handled, 2);
        Ok(())
    })
}
