//! The event registry: the process-wide one (`registry::validate`, which sees
//! what the derives in this test binary registered, deliberate duplicates
//! included) and the explicit `Registry::builder()`.

// Helpers and property bodies unwrap as `#[test]` functions do: a failure
// there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::codec;
use es_core::prelude::*;
use es_core::registry::{
    self, AggregateRegistration, EventRegistration, RegisteredEvent, RegistryError, RegistryErrors,
};
use es_core::{DecodeError, EventKey};
use serde::{Deserialize, Serialize};

/// A clean domain: an upcast chain (v1 -> v2), another event, an aggregate.
mod shop {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "order-placed", version = 1)]
    pub(crate) struct OrderPlacedV1 {
        pub(crate) sku: String,
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "order-placed", version = 2, upcast_from = OrderPlacedV1)]
    pub(crate) struct OrderPlaced {
        pub(crate) sku: String,
        pub(crate) quantity: u32,
    }

    impl From<OrderPlacedV1> for OrderPlaced {
        fn from(v1: OrderPlacedV1) -> Self {
            OrderPlaced {
                sku: v1.sku,
                quantity: 1,
            }
        }
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "order-shipped")]
    pub(crate) struct OrderShipped;

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "note")]
    pub(crate) struct Note {
        pub(crate) text: String,
    }

    #[derive(Aggregate, Default, Debug)]
    #[aggregate(name = "shop", events(OrderPlaced, OrderShipped))]
    pub(crate) struct Shop {
        pub(crate) placed: u32,
        pub(crate) shipped: bool,
    }

    impl Apply<OrderPlaced> for Shop {
        fn apply(&mut self, e: &OrderPlaced) {
            self.placed += e.quantity;
        }
    }

    impl Apply<OrderShipped> for Shop {
        fn apply(&mut self, _: &OrderShipped) {
            self.shipped = true;
        }
    }
}

/// Deliberate mistakes: two event types claiming ("dup", 1), and two
/// aggregate types named "twin".
mod deliberate {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "dup", version = 1)]
    pub(crate) struct DupA {
        pub(crate) a: u32,
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "dup", version = 1)]
    pub(crate) struct DupB {
        pub(crate) b: String,
    }

    #[derive(Aggregate, Default, Debug)]
    #[aggregate(name = "twin", events(DupA))]
    pub(crate) struct TwinA;

    impl Apply<DupA> for TwinA {
        fn apply(&mut self, _: &DupA) {}
    }

    #[derive(Aggregate, Default, Debug)]
    #[aggregate(name = "twin", events(DupA))]
    pub(crate) struct TwinB;

    impl Apply<DupA> for TwinB {
        fn apply(&mut self, _: &DupA) {}
    }
}

use deliberate::{DupA, DupB, TwinA, TwinB};
use shop::{Note, OrderPlaced, OrderPlacedV1, OrderShipped, Shop};

/// Events implemented by hand: not registered in the process-wide registry,
/// so they can collide in builder tests without touching `validate()`.
macro_rules! hand_event {
    ($ty:ident, $name:literal) => {
        #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
        struct $ty;

        impl Event for $ty {
            const NAME: &'static str = $name;
            const VERSION: u32 = 1;

            fn decode(version: u32, payload: &str) -> Result<Self, DecodeError> {
                codec::decode_exact::<Self>(version, payload)
            }
        }
    };
}

hand_event!(PairA, "pair");
hand_event!(PairB, "pair");
hand_event!(PairC, "pair");

fn name_of<T>() -> &'static str {
    std::any::type_name::<T>()
}

fn keys(registry: &Registry) -> Vec<(&'static str, u32, &'static str, Vec<u32>)> {
    registry
        .events()
        .map(|e: &RegisteredEvent| {
            (
                e.key.name,
                e.key.version,
                e.key.type_name(),
                e.decodable_versions.clone(),
            )
        })
        .collect()
}

fn aggregates(registry: &Registry) -> Vec<(&'static str, &'static str, usize)> {
    registry
        .aggregates()
        .map(|a| (a.name, (a.type_name)(), a.events.len()))
        .collect()
}

fn errors_of(result: Result<Registry, RegistryErrors>) -> Vec<RegistryError> {
    match result {
        Ok(registry) => panic!("expected registry errors, got {registry:?}"),
        Err(RegistryErrors(errors)) => errors,
    }
}

fn dup_event_error() -> RegistryError {
    RegistryError::DuplicateEvent {
        name: "dup",
        version: 1,
        first: name_of::<DupA>(),
        second: name_of::<DupB>(),
    }
}

fn twin_error() -> RegistryError {
    RegistryError::DuplicateAggregate {
        name: "twin",
        first: name_of::<TwinA>(),
        second: name_of::<TwinB>(),
    }
}

// ---------------------------------------------------------------------------
// The process-wide registry.
// ---------------------------------------------------------------------------

#[test]
fn validate_reports_every_deliberate_duplicate_and_nothing_else() {
    let errors = errors_of(registry::validate());
    assert!(
        errors.contains(&dup_event_error()),
        "missing the duplicate event in {errors:?}"
    );
    assert!(
        errors.contains(&twin_error()),
        "missing the duplicate aggregate in {errors:?}"
    );
    assert_eq!(errors.len(), 2, "only the deliberate mistakes: {errors:?}");
    assert!(matches!(
        &errors[..],
        [
            RegistryError::DuplicateEvent { .. },
            RegistryError::DuplicateAggregate { .. }
        ]
    ));

    let message = registry::validate().unwrap_err().to_string();
    assert!(
        message.starts_with("2 problem(s) in the event registry; "),
        "{message}"
    );
    assert!(message.contains("event `dup` version 1 is claimed by both"));
    assert!(message.contains("aggregate name `twin` is used by both"));
}

#[test]
fn validate_is_the_same_every_time() {
    assert_eq!(
        registry::validate().unwrap_err(),
        registry::validate().unwrap_err()
    );
    assert_eq!(
        es_core::Registry::from_inventory().unwrap_err(),
        registry::validate().unwrap_err()
    );
}

// ---------------------------------------------------------------------------
// The explicit builder.
// ---------------------------------------------------------------------------

#[test]
fn a_clean_set_validates() {
    let registry = Registry::builder()
        .aggregate::<Shop>()
        .event::<Note>()
        .build()
        .unwrap();
    assert_eq!(
        keys(&registry),
        [
            ("note", 1, name_of::<Note>(), vec![1]),
            ("order-placed", 2, name_of::<OrderPlaced>(), vec![1, 2]),
            ("order-shipped", 1, name_of::<OrderShipped>(), vec![1]),
        ]
    );
    assert_eq!(aggregates(&registry), [("shop", name_of::<Shop>(), 2)]);

    // The same type registered twice, or as an event and through its
    // aggregate, is one registration.
    let again = Registry::builder()
        .event::<OrderPlaced>()
        .aggregate::<Shop>()
        .aggregate::<Shop>()
        .event::<Note>()
        .event::<Note>()
        .registration(EventRegistration::of::<Note>())
        .build()
        .unwrap();
    assert_eq!(keys(&again), keys(&registry));
    assert_eq!(aggregates(&again), aggregates(&registry));

    assert_eq!(Registry::builder().build().unwrap().events().count(), 0);
}

#[test]
fn decodes_every_version_of_an_upcast_chain() {
    let registry = Registry::builder()
        .aggregate::<Shop>()
        .event::<Note>()
        .build()
        .unwrap();
    for (name, version, expected) in [
        ("order-placed", 1, true),
        ("order-placed", 2, true),
        ("order-placed", 0, false),
        ("order-placed", 3, false),
        ("order-shipped", 1, true),
        ("order-shipped", 2, false),
        ("note", 1, true),
        ("dup", 1, false),
        ("Order-Placed", 1, false),
        ("", 1, false),
    ] {
        assert_eq!(
            registry.decodes(name, version),
            expected,
            "decodes({name:?}, {version})"
        );
    }
    // What `decodes` promises does decode.
    let v1 = OrderPlaced::decode(1, r#"{"sku":"x"}"#).unwrap();
    assert_eq!(v1.quantity, 1);
    assert_eq!(OrderPlaced::decodable_versions(), [1, 2]);
    assert_eq!(OrderPlacedV1::decodable_versions(), [1]);
}

#[test]
fn two_event_types_with_one_name_and_version_are_reported() {
    for builder in [
        Registry::builder().event::<DupA>().event::<DupB>(),
        Registry::builder().event::<DupB>().event::<DupA>(),
        Registry::builder().aggregate::<TwinA>().event::<DupB>(),
        Registry::builder()
            .registration(EventRegistration::of::<DupB>())
            .registration(EventRegistration::of::<DupA>())
            .registration(EventRegistration::of::<DupB>()),
    ] {
        assert_eq!(errors_of(builder.build()), [dup_event_error()]);
    }
}

const SAME_NAME_TWICE: &[EventKey] = &[
    EventKey::of::<OrderPlacedV1>(),
    EventKey::of::<OrderShipped>(),
    EventKey::of::<OrderPlaced>(),
];

#[test]
fn an_aggregate_listing_one_event_name_twice_is_reported() {
    let bad = AggregateRegistration {
        name: "bad-shop",
        type_name: name_of::<Shop>,
        events: SAME_NAME_TWICE,
    };
    let errors = errors_of(Registry::builder().aggregate_registration(bad).build());
    assert_eq!(
        errors,
        [RegistryError::DuplicateInAggregate {
            aggregate: "bad-shop",
            name: "order-placed",
            first: name_of::<OrderPlacedV1>(),
            second: name_of::<OrderPlaced>(),
        }]
    );
}

#[test]
fn two_aggregate_types_with_one_name_are_reported() {
    let errors = errors_of(
        Registry::builder()
            .aggregate::<TwinB>()
            .aggregate::<TwinA>()
            .build(),
    );
    assert_eq!(errors, [twin_error()]);

    // By hand: another type claiming "shop".
    let impostor = AggregateRegistration {
        name: "shop",
        type_name: name_of::<Note>,
        events: <shop::ShopEvent as EventSet>::EVENTS,
    };
    let errors = errors_of(
        Registry::builder()
            .aggregate::<Shop>()
            .aggregate_registration(impostor)
            .build(),
    );
    assert_eq!(errors.len(), 1);
    match &errors[0] {
        RegistryError::DuplicateAggregate {
            name,
            first,
            second,
        } => {
            assert_eq!(*name, "shop");
            let mut types = [*first, *second];
            types.sort_unstable();
            let mut expected = [name_of::<Note>(), name_of::<Shop>()];
            expected.sort_unstable();
            assert_eq!(types, expected);
        }
        other => panic!("expected a duplicate aggregate, got {other:?}"),
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = AggregateRegistration {
        name: "bad-shop",
        type_name: name_of::<Shop>,
        events: SAME_NAME_TWICE,
    };
    let errors = errors_of(
        Registry::builder()
            .aggregate::<Shop>()
            .aggregate::<TwinA>()
            .aggregate::<TwinB>()
            .event::<DupB>()
            .aggregate_registration(bad)
            .build(),
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.contains(&dup_event_error()));
    assert!(errors.contains(&twin_error()));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, RegistryError::DuplicateInAggregate { .. }))
    );
}

#[test]
fn building_is_deterministic() {
    let forward = Registry::builder()
        .aggregate::<Shop>()
        .event::<Note>()
        .event::<OrderPlacedV1>()
        .event::<DupA>()
        .aggregate::<TwinA>()
        .event::<PairA>();
    let once = forward.clone().build().unwrap();
    let twice = forward.build().unwrap();
    assert_eq!(keys(&once), keys(&twice));
    assert_eq!(aggregates(&once), aggregates(&twice));

    // Any registration order gives the same registry, sorted by name and version.
    let backward = Registry::builder()
        .event::<PairA>()
        .aggregate::<TwinA>()
        .event::<DupA>()
        .event::<OrderPlacedV1>()
        .event::<Note>()
        .aggregate::<Shop>()
        .build()
        .unwrap();
    assert_eq!(keys(&backward), keys(&once));
    assert_eq!(aggregates(&backward), aggregates(&once));
    let order: Vec<_> = once.events().map(|e| (e.key.name, e.key.version)).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted);
    assert_eq!(
        aggregates(&once).iter().map(|a| a.0).collect::<Vec<_>>(),
        ["shop", "twin"]
    );
    // The v1 link registered on its own is its own entry, decoding only v1.
    assert!(
        keys(&once)
            .iter()
            .any(|k| k.0 == "order-placed" && k.1 == 1 && k.3 == [1])
    );
}

#[test]
fn errors_of_the_same_input_are_the_same() {
    let builder = Registry::builder()
        .event::<PairA>()
        .event::<PairB>()
        .event::<DupA>()
        .event::<DupB>()
        .aggregate::<TwinA>()
        .aggregate::<TwinB>();
    assert_eq!(
        builder.clone().build().unwrap_err(),
        builder.build().unwrap_err()
    );
}

#[test]
fn errors_do_not_depend_on_registration_order() {
    let forward = Registry::builder()
        .event::<DupA>()
        .event::<DupB>()
        .event::<PairA>()
        .event::<PairB>()
        .event::<PairC>()
        .build();
    let backward = Registry::builder()
        .event::<PairC>()
        .event::<PairB>()
        .event::<PairA>()
        .event::<DupB>()
        .event::<DupA>()
        .build();
    assert_eq!(errors_of(forward), errors_of(backward));
}
