//! The generated code names everything by absolute path: it still compiles
//! when the user's module shadows prelude items and common crate names.
//!
//! The shadowing items are declared by a macro in every module where a
//! derive runs (the crate root and `mod domain`), so every expansion (plain
//! events, `upcast_from`, `snapshot(...)`, `conflicts = ...`, projections
//! with and without `context = ...` or `aggregates(...)`) is compiled in
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
    use ::es_core::{Aggregate, Apply, Event, Handle, Projection};
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

    /// A per-stream projection.
    #[derive(Projection, Default)]
    #[projection(
        name = "shadow-count",
        version = 2,
        events(Opened, Closed),
        aggregates(Shadow)
    )]
    pub struct Count {
        pub events: usize,
    }

    impl Apply<Opened> for Count {
        fn apply(&mut self, _: &Opened) {
            self.events += 1;
        }
    }

    impl Apply<Closed> for Count {
        fn apply(&mut self, _: &Closed) {
            self.events += 1;
        }
    }

    /// What the read model writes to.
    #[derive(Default)]
    pub struct Seen {
        pub versions: ::core::cell::RefCell<::std::vec::Vec<u64>>,
    }

    /// A read model, with a context.
    #[derive(Projection, Default)]
    #[projection(events(Opened, Closed), aggregates(Shadow), context = Seen)]
    pub struct Log;

    impl Handle<Opened, Seen> for Log {
        fn handle(
            &mut self,
            cx: &Seen,
            event: &::es_core::Envelope<Opened>,
        ) -> ::core::result::Result<(), ::es_core::BoxError> {
            cx.versions.borrow_mut().push(event.version);
            ::core::result::Result::Ok(())
        }
    }

    impl Handle<Closed, Seen> for Log {
        fn handle(
            &mut self,
            _: &Seen,
            _: &::es_core::Envelope<Closed>,
        ) -> ::core::result::Result<(), ::es_core::BoxError> {
            ::core::result::Result::Err("closed".into())
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

#[derive(::es_core::Projection, ::core::default::Default)]
#[projection(events(Noted))]
pub struct NoteCount(usize);

impl ::es_core::Apply<Noted> for NoteCount {
    fn apply(&mut self, _: &Noted) {
        self.0 += 1;
    }
}

#[test]
fn derives_compile_and_work_with_shadowed_names() {
    use ::es_core::{Aggregate as _, Apply as _, Dispatch as _, EventSet as _, Projection as _};
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

    assert_eq!(
        (domain::Count::NAME, domain::Count::VERSION),
        ("shadow-count", 2)
    );
    assert_eq!(domain::Count::AGGREGATES, ["shadow"]);
    let mut count = domain::Count::default();
    count.apply(&domain::CountEvent::from(domain::Closed));
    assert_eq!(count.events, 1);
    let mut note_count = NoteCount::default();
    note_count.apply(&NoteCountEvent::from(Noted));
    assert_eq!((NoteCount::NAME, note_count.0), ("note-count", 1));

    let recorded = ::es_core::RecordedEvent {
        stream_id: ::es_core::StreamId::new("shadow-1").expect("a stream id"),
        aggregate_type: "shadow".into(),
        version: 4,
        position: 9,
        event_id: ::es_core::Uuid::nil(),
        recorded_at: ::es_core::Timestamp::from_unix_micros(0),
        occurred_at: ::es_core::Timestamp::from_unix_micros(0),
        name: "shadow-opened".into(),
        schema_version: 1,
        metadata: ::es_core::Metadata::new(),
        event: ::es_core::Payload::from(r#"{"title":"t"}"#),
    };
    let seen = domain::Seen::default();
    let opened = recorded
        .clone()
        .into_envelope::<domain::LogEvent>()
        .expect("decodes");
    domain::Log.dispatch(&seen, opened).expect("handled");
    assert_eq!(*seen.versions.borrow(), [4]);
    let closed = recorded.with_event(domain::LogEvent::from(domain::Closed));
    assert!(domain::Log.dispatch(&seen, closed).is_err());
}
