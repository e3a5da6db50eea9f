//! The registry checks the raw upcaster graph: a cycle, two upcasters for
//! one key, a chain ending where nothing decodes, and an upcaster taking a
//! key a typed chain decodes without saying so are each reported; reads
//! that meet them fail with a typed error instead of looping or guessing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_pass_by_value, // upcasters take their event by value
    clippy::unnecessary_wraps,      // and return a Result
    missing_docs,
    unreachable_pub
)]

use es_core::prelude::*;
use es_core::registry::RegistryError;
use es_core::upcast::RawUpcaster;
use es_core::{DecodeError, Error, NewEvent};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "note-written")]
pub struct Written {
    pub text: String,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "note", events(Written))]
pub struct Note;
impl Apply<Written> for Note {
    fn apply(&mut self, _: &Written) {}
}

es_core::upcasters! {
    // A cycle: ping -> pong -> ping.
    RawUpcaster::rename("note", "note-ping", 1, "note-pong", 1),
    RawUpcaster::rename("note", "note-pong", 1, "note-ping", 1),
    // Two upcasters for one key.
    RawUpcaster::remove("note", "note-twice", 1),
    RawUpcaster::rename("note", "note-twice", 1, "note-written", 1),
    // A chain ending at a version nothing decodes.
    RawUpcaster::rename("note", "note-old", 1, "note-written", 7),
    // Taking a key the typed event decodes, without saying so ...
    RawUpcaster::remove("note", "note-written", 1),
}

#[test]
fn every_problem_of_the_graph_is_reported() {
    let errors = es_core::registry::validate().unwrap_err().0;
    let has = |e: &RegistryError| errors.contains(e);
    assert!(
        has(&RegistryError::UpcastCycle {
            aggregate: "note",
            name: "note-ping",
            version: 1
        }),
        "{errors:?}"
    );
    assert!(
        has(&RegistryError::UpcastCycle {
            aggregate: "note",
            name: "note-pong",
            version: 1
        }),
        "{errors:?}"
    );
    assert!(
        has(&RegistryError::DuplicateUpcaster {
            aggregate: "note",
            name: "note-twice",
            version: 1
        }),
        "{errors:?}"
    );
    assert!(
        has(&RegistryError::UpcastDeadEnd {
            aggregate: "note",
            name: "note-old",
            version: 1,
            ends_at: "note-written",
            ends_version: 7
        }),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| matches!(e, RegistryError::ShadowsTyped { name: "note-written", version: 1, typed, .. } if typed.ends_with("Written"))),
        "{errors:?}"
    );
    let text = es_core::registry::validate().unwrap_err().to_string();
    assert!(
        text.contains("run in a cycle") && text.contains("overriding_typed"),
        "{text}"
    );
}

async fn load(name: &str) -> Result<Loaded<Note>, Error> {
    let store = InMemoryStore::new();
    let stream = StreamId::new("note-1").unwrap();
    let stored = NewEvent::new("note", name.to_owned(), 1, r#"{"text":"x"}"#);
    store
        .append(&stream, ExpectedVersion::NoStream, vec![stored])
        .await
        .unwrap();
    Repository::<Note, _>::new(store).load("1").await
}

#[tokio::test]
async fn reads_that_meet_them_fail_typed() {
    let Err(Error::Decode {
        source: DecodeError::Upcast { reason, .. },
        ..
    }) = load("note-ping").await
    else {
        panic!("a cycle is a decode error");
    };
    assert!(reason.contains("cycle"), "{reason}");
    let Err(Error::Decode {
        source: DecodeError::Upcast { reason, .. },
        ..
    }) = load("note-twice").await
    else {
        panic!("two upcasters for one key are a decode error");
    };
    assert!(reason.contains("two raw upcasters"), "{reason}");
    let Err(Error::Decode { source, .. }) = load("note-old").await else {
        panic!("a dead end is a decode error");
    };
    assert!(
        matches!(source, DecodeError::VersionTooNew { version: 7, .. }),
        "{source}"
    );
}

/// `.overriding_typed()` says the shadowing is meant: no error for it.
mod overriding {
    use es_core::Event;
    use es_core::upcast::RawUpcaster;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "note-pinned")]
    pub struct Pinned;

    es_core::upcasters! {
        RawUpcaster::remove("note", "note-pinned", 1).overriding_typed(),
    }

    #[test]
    fn is_not_reported() {
        let registry = es_core::registry::Registry::builder()
            .event::<Pinned>()
            .build()
            .unwrap();
        assert!(
            registry.decodes("note-pinned", 1),
            "a typed chain does decode it"
        );
        let errors = es_core::registry::validate().unwrap_err().0;
        assert!(
            !errors.iter().any(|e| matches!(
                e,
                es_core::registry::RegistryError::ShadowsTyped {
                    name: "note-pinned",
                    ..
                }
            )),
            "{errors:?}"
        );
    }
}
