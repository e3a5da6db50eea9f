//! The generated code names everything by absolute path: it still compiles
//! when the user's module shadows prelude items and common crate names.
//!
//! The shadowing items are declared by a macro in every module where a
//! derive runs (the crate root and `mod domain`), so every expansion (plain
//! events, `upcast_from`, `snapshot(...)`, `conflicts = ...`) is compiled in
//! their scope.

#![allow(
    dead_code,
    non_camel_case_types,
    missing_docs,
    unreachable_pub,
    clippy::all
)]

/// Items that shadow the prelude and the crates the expansion uses: a bare
/// `Result`, `Ok`, `core::...` or `serde_json::...` in an expansion would
/// resolve to one of these and fail to compile.
macro_rules! shadow_everything {
    () => {
        struct Result;
        struct Ok;
        struct Err;
        struct Option;
        struct Some;
        struct None;
        struct Box;
        struct Vec;
        struct String;
        struct From;
        struct Into;
        struct Default;
        struct Debug;
        struct Clone;
        struct PartialEq;
        struct Send;
        struct Sync;
        struct Infallible;
        mod core {}
        mod std {}
        mod serde {}
        mod serde_json {}
        mod inventory {}
        mod es_core {}
    };
}

shadow_everything!();

mod domain {
    // Only what a user writes: the derives, serde, and the traits (through
    // `::`, since this module shadows the crate names too).
    use ::es_core::{Aggregate, Apply, Event};
    use ::serde::{Deserialize, Serialize};

    shadow_everything!();

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "shadow-opened", version = 1)]
    pub struct Opened {
        pub title: ::std::string::String,
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "shadow-closed", version = 2, upcast_from = ClosedV1)]
    pub struct Closed;

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "shadow-closed", version = 1)]
    pub struct ClosedV1;

    impl ::core::convert::From<ClosedV1> for Closed {
        fn from(_: ClosedV1) -> Self {
            Closed
        }
    }

    pub fn closes_conflict(ours: &[ShadowEvent], theirs: &[ShadowEvent]) -> bool {
        let closes = |events: &[ShadowEvent]| {
            events
                .iter()
                .any(|e| ::core::matches!(e, ShadowEvent::Closed(_)))
        };
        closes(ours) && closes(theirs)
    }

    #[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
    #[aggregate(
        name = "shadow",
        events(Opened, Closed),
        snapshot(every = 5, version = 2),
        conflicts = closes_conflict
    )]
    pub struct Shadow {
        pub open: bool,
    }

    impl Apply<Opened> for Shadow {
        fn apply(&mut self, _: &Opened) {
            self.open = true;
        }
    }

    impl Apply<Closed> for Shadow {
        fn apply(&mut self, _: &Closed) {
            self.open = false;
        }
    }
}

// The shadowing items above are in scope here, and the derives run here too.
#[derive(
    ::es_core::Event,
    ::serde::Serialize,
    ::serde::Deserialize,
    ::core::fmt::Debug,
    ::core::clone::Clone,
    ::core::cmp::PartialEq,
)]
pub struct Noted;

#[derive(::es_core::Aggregate, ::core::default::Default)]
#[aggregate(events(Noted))]
pub struct Notes;

impl ::es_core::Apply<Noted> for Notes {
    fn apply(&mut self, _: &Noted) {}
}

#[test]
fn derives_compile_and_work_with_shadowed_names() {
    use ::es_core::{Aggregate as _, Apply as _, EventSet as _};
    let mut shadow = domain::Shadow::default();
    shadow.apply(&domain::ShadowEvent::from(domain::Opened {
        title: "t".into(),
    }));
    assert!(shadow.open);
    let closed = domain::ShadowEvent::decode("shadow-closed", 1, "null").expect("upcasts");
    shadow.apply(&closed);
    assert!(!shadow.open);

    let snapshot = shadow
        .encode_snapshot()
        .expect("snapshots are on")
        .expect("encodes");
    let restored = domain::Shadow::decode_snapshot(&snapshot)
        .expect("snapshots are on")
        .expect("decodes");
    assert!(!restored.open);

    let opened = domain::ShadowEvent::from(domain::Opened { title: "t".into() });
    assert!(domain::Shadow::conflicts(
        &[closed.clone()],
        &[closed.clone()]
    ));
    assert!(!domain::Shadow::conflicts(&[opened], &[closed]));
    assert_eq!(NotesEvent::EVENTS.len(), 1);
}
