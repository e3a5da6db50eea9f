//! RELIABILITY T14: arbitrary bytes and strings into every decode and
//! validation path never panic, and every refusal is a typed error whose
//! kind matches the input. Also S2's JSON depth limit: a payload nested
//! 10,000 deep is an error, not a stack overflow.

// Helpers and property bodies unwrap as `#[test]` functions do: a failure
// there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use es_core::codec;
use es_core::name::NameError;
use es_core::prelude::*;
use es_core::store::backend::check_append;
use es_core::{
    DecodeError, Error, Limits, MAX_STREAM_ID_LEN, NewEvent, StreamIdError, StreamWrite,
    TimestampError, Uuid,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Events with an upcast chain that has a gap: v1 -> v2 -> v4 (no v3).
// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "placed", version = 1)]
struct PlacedV1 {
    sku: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "placed", version = 2, upcast_from = PlacedV1)]
struct PlacedV2 {
    sku: String,
    qty: u32,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "placed", version = 4, upcast_from = PlacedV2)]
struct Placed {
    sku: String,
    qty: u32,
    note: Option<String>,
}

impl From<PlacedV1> for PlacedV2 {
    fn from(v1: PlacedV1) -> Self {
        PlacedV2 {
            sku: v1.sku,
            qty: 1,
        }
    }
}

impl From<PlacedV2> for Placed {
    fn from(v2: PlacedV2) -> Self {
        Placed {
            sku: v2.sku,
            qty: v2.qty,
            note: None,
        }
    }
}

/// Any JSON at all.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "blob")]
struct Blob {
    data: serde_json::Value,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contact")]
struct Contact {
    email: Personal<String>,
}

#[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(name = "depot", events(Placed, Blob, Contact), snapshot(every = 10))]
struct Depot {
    last: serde_json::Value,
    placed: u32,
}

impl Apply<Placed> for Depot {
    fn apply(&mut self, e: &Placed) {
        self.placed += e.qty;
    }
}

impl Apply<Blob> for Depot {
    fn apply(&mut self, e: &Blob) {
        self.last = e.data.clone();
    }
}

impl Apply<Contact> for Depot {
    fn apply(&mut self, e: &Contact) {
        self.last = serde_json::Value::Bool(e.email.is_forgotten());
    }
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// Text of any length up to a bit over the stream id limit, any characters.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
        proptest::collection::vec(prop_oneof![Just('x'), Just('é'), Just('\0')], 250..262)
            .prop_map(|c| c.into_iter().collect()),
        "[a-z0-9-]{0,20}",
    ]
}

/// Arbitrary text (payloads are text: see `Payload`), or text that is almost JSON.
fn any_payload() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        any::<String>(),
        r#"\{("[a-z$]{0,8}": ?("[^"\\]{0,8}"|-?[0-9]{1,4}|true|false|null|\[\]|\{\}),? ?){0,4}\}"#,
        r#"\{"sku": ?"[a-z]{0,4}"(, ?"qty": ?-?[0-9]{1,12})?(, ?"note": ?(null|"x"|1))?\}"#,
        r#"\{"data": ?.{0,12}\}"#,
        r#"\{"email": ?("[a-z@.]{0,8}"|\{"\$forgotten": ?(true|false|1)\})\}"#,
        Just("null".to_owned()),
    ]
}

fn any_version() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..6, any::<u32>()]
}

// ---------------------------------------------------------------------------
// Stream ids.
// ---------------------------------------------------------------------------

/// What `StreamId::new` must answer, from the documented rules.
fn expected_stream_id(text: &str) -> Result<(), StreamIdError> {
    if text.is_empty() {
        return Err(StreamIdError::Empty);
    }
    if text.len() > MAX_STREAM_ID_LEN {
        return Err(StreamIdError::TooLong { len: text.len() });
    }
    match text.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, found)) => Err(StreamIdError::ControlCharacter { found, at }),
        None => Ok(()),
    }
}

proptest! {
    #[test]
    fn t14_stream_id_new(text in any_text()) {
        let expected = expected_stream_id(&text);
        match StreamId::new(&text) {
            Ok(id) => {
                prop_assert_eq!(expected, Ok(()));
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert_eq!(id.to_string(), text.clone());
                // Through serde, as a store reads it back.
                let json = serde_json::to_vec(&id).unwrap();
                prop_assert_eq!(serde_json::from_slice::<StreamId>(&json).unwrap(), id);
            }
            Err(error) => {
                prop_assert_eq!(Err(error.clone()), expected);
                prop_assert!(!error.to_string().is_empty());
                prop_assert!(serde_json::from_str::<StreamId>(
                    &serde_json::to_string(&text).unwrap()
                ).is_err());
            }
        }
        prop_assert_eq!(StreamId::validate(&text), expected_stream_id(&text));
        prop_assert_eq!(StreamId::try_from(text.as_str()).is_ok(), expected_stream_id(&text).is_ok());
    }

    #[test]
    fn t14_stream_id_from_arbitrary_json(bytes in any_payload()) {
        if let Ok(id) = serde_json::from_str::<StreamId>(&bytes) {
            prop_assert_eq!(expected_stream_id(id.as_str()), Ok(()));
        }
    }
}

// ---------------------------------------------------------------------------
// Metadata.
// ---------------------------------------------------------------------------

fn metadata_json() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("actor"),
        Just("command"),
        Just("reason"),
        Just("command_id"),
        Just("correlation_id"),
        Just("causation_id"),
        Just("extra"),
        Just("other"),
    ];
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("1".to_owned()),
        Just("-0.0".to_owned()),
        Just("1e400".to_owned()),
        Just(r#""0190c4e5-6a4d-7b1e-8a2c-3d4e5f6a7b8c""#.to_owned()),
        Just(r#"{"k": [1, "two", {"x": null}]}"#.to_owned()),
        Just(r#"{"k": 18446744073709551616}"#.to_owned()),
        "\"[^\"\\\\]{0,12}\"",
        "\\[[0-9, ]{0,8}\\]",
    ];
    proptest::collection::vec((key, value), 0..5).prop_map(|fields| {
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    })
}

proptest! {
    #[test]
    fn t14_metadata_from_json(bytes in prop_oneof![any_payload(), metadata_json()]) {
        match Metadata::from_json(&bytes) {
            Ok(meta) => {
                // What was read is stored again the same way.
                match meta.to_json() {
                    None => prop_assert!(meta.is_empty()),
                    Some(json) => {
                        let again = Metadata::from_json(&json);
                        prop_assert!(again.is_ok(), "{:?} from {:?}", again, json);
                        prop_assert_eq!(again.unwrap(), meta);
                    }
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------
// Timestamps.
// ---------------------------------------------------------------------------

/// The last microsecond RFC 3339 can show (9999-12-31T23:59:59.999999Z).
const LAST_DISPLAYABLE: i64 = 253_402_300_800_000_000 - 1;

fn rfc3339ish() -> impl Strategy<Value = String> {
    prop_oneof![
        any_text(),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|\\+00:00|\\+01:00)?",
        "(19[7-9][0-9]|2[0-9]{3}|9999)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,9})?Z",
    ]
}

proptest! {
    #[test]
    fn t14_timestamp_parse(text in rfc3339ish()) {
        match text.parse::<Timestamp>() {
            Ok(t) => {
                prop_assert!((0..=LAST_DISPLAYABLE).contains(&t.as_unix_micros()), "{}", t.as_unix_micros());
                let shown = t.to_string();
                prop_assert_eq!(shown.parse::<Timestamp>(), Ok(t));
                let json = serde_json::to_string(&t).unwrap();
                prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
            }
            Err(error) => {
                let _: &TimestampError = &error;
                prop_assert!(error.to_string().starts_with("not an RFC 3339 time"));
                prop_assert!(serde_json::from_str::<Timestamp>(
                    &serde_json::to_string(&text).unwrap()
                ).is_err());
            }
        }
    }

    #[test]
    fn t14_timestamp_round_trips_in_the_displayable_range(micros in 0..=LAST_DISPLAYABLE) {
        let t = Timestamp::from_unix_micros(micros);
        prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        prop_assert_eq!(Timestamp::from(t.to_system_time()), t);
    }

    #[test]
    fn t14_timestamp_before_the_epoch_displays(micros in i64::MIN..0) {
        let t = Timestamp::from_unix_micros(micros);
        prop_assert!(!t.to_string().is_empty());
        let debug = format!("{t:?}");
        prop_assert!(!debug.is_empty());
        prop_assert!(serde_json::to_vec(&t).is_ok());
        prop_assert_eq!(Timestamp::from(t.to_system_time()), t);
    }
}

#[test]
fn timestamp_before_the_epoch_round_trips_through_serde() {
    let t = Timestamp::from_unix_micros(-5);
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(
        serde_json::from_str::<Timestamp>(&json).ok(),
        Some(t),
        "{json}"
    );
}

#[test]
fn t14_timestamp_after_year_9999_does_not_panic() {
    for micros in [LAST_DISPLAYABLE + 1, i64::MAX] {
        let t = Timestamp::from_unix_micros(micros);
        // A store reading a damaged `recorded_at` gets such a value.
        let shown = std::panic::catch_unwind(|| format!("{t:?}"));
        assert!(shown.is_ok(), "Debug of {micros} µs panicked");
        let json = std::panic::catch_unwind(|| serde_json::to_vec(&t).is_ok());
        assert!(json.is_ok(), "serializing {micros} µs panicked");
    }
}

// ---------------------------------------------------------------------------
// Personal data.
// ---------------------------------------------------------------------------

proptest! {
    #[test]
    fn t14_personal_from_arbitrary_json(bytes in any_payload()) {
        let decoded = serde_json::from_str::<Personal<String>>(&bytes);
        if let Ok(s) = serde_json::from_str::<String>(&bytes) {
            prop_assert_eq!(decoded.as_ref().ok(), Some(&Personal::Known(s)));
        }
        match decoded {
            Ok(Personal::Known(_)) => {}
            Ok(Personal::Forgotten) => {
                let value: serde_json::Value = serde_json::from_str(&bytes).unwrap();
                prop_assert_eq!(&value["$forgotten"], &serde_json::Value::Bool(true));
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn t14_personal_round_trips(value in any::<String>(), forgotten in any::<bool>()) {
        let personal = if forgotten { Personal::Forgotten } else { Personal::known(value) };
        let json = serde_json::to_vec(&personal).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Personal<String>>(&json).unwrap(), personal);
    }
}

#[test]
fn a_forgotten_marker_must_be_true() {
    let error = serde_json::from_str::<Personal<String>>(r#"{"$forgotten":false}"#).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`$forgotten` marker must be `true`")
    );
    assert!(serde_json::from_str::<Personal<String>>(r#"{"$forgotten":1}"#).is_err());
    assert!(serde_json::from_str::<Personal<String>>("{}").is_err());
    assert!(serde_json::from_str::<Personal<String>>("").is_err());
}

// ---------------------------------------------------------------------------
// Event decoding: one event's upcast chain, and an aggregate's event set.
// ---------------------------------------------------------------------------

/// Checks `Placed::decode(version, payload)` against the chain v1 -> v2 -> v4.
fn check_placed(version: u32, payload: &str) -> Result<(), TestCaseError> {
    let decoded = Placed::decode(version, payload);
    match version {
        1 => match serde_json::from_str::<PlacedV1>(payload) {
            Ok(v1) => prop_assert_eq!(decoded.unwrap(), Placed::from(PlacedV2::from(v1))),
            Err(_) => prop_assert!(
                matches!(
                    decoded,
                    Err(DecodeError::Payload {
                        name: "placed",
                        version: 1,
                        ..
                    })
                ),
                "{:?}",
                decoded
            ),
        },
        2 => match serde_json::from_str::<PlacedV2>(payload) {
            Ok(v2) => prop_assert_eq!(decoded.unwrap(), Placed::from(v2)),
            Err(_) => prop_assert!(
                matches!(
                    decoded,
                    Err(DecodeError::Payload {
                        name: "placed",
                        version: 2,
                        ..
                    })
                ),
                "{:?}",
                decoded
            ),
        },
        4 => match serde_json::from_str::<Placed>(payload) {
            Ok(v4) => prop_assert_eq!(decoded.unwrap(), v4),
            Err(_) => prop_assert!(
                matches!(
                    decoded,
                    Err(DecodeError::Payload {
                        name: "placed",
                        version: 4,
                        ..
                    })
                ),
                "{:?}",
                decoded
            ),
        },
        0 | 3 => prop_assert!(
            matches!(decoded, Err(DecodeError::UnknownVersion { name: "placed", version: v }) if v == version),
            "{:?}",
            decoded
        ),
        _ => prop_assert!(
            matches!(decoded, Err(DecodeError::VersionTooNew { name: "placed", version: v, known: 4 }) if v == version),
            "{:?}",
            decoded
        ),
    }
    Ok(())
}

proptest! {
    #[test]
    fn t14_event_decode_walks_the_upcast_chain(version in any_version(), payload in any_payload()) {
        check_placed(version, &payload)?;
        prop_assert_eq!(Placed::decodable_versions(), vec![1, 2, 4]);
    }

    #[test]
    fn t14_event_set_decode(
        name in prop_oneof![Just("placed".to_owned()), Just("blob".to_owned()), Just("contact".to_owned()), any_text()],
        version in any_version(),
        payload in any_payload(),
    ) {
        let decoded = DepotEvent::decode(&name, version, &payload);
        match name.as_str() {
            "placed" => {
                check_placed(version, &payload)?;
                match (decoded, Placed::decode(version, &payload)) {
                    (Ok(DepotEvent::Placed(a)), Ok(b)) => prop_assert_eq!(a, b),
                    (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => prop_assert!(false, "event set {:?} but event {:?}", a, b),
                }
            }
            "blob" | "contact" => match (version, decoded) {
                (1, Ok(event)) => {
                    prop_assert_eq!(event.name(), name.as_str());
                    prop_assert_eq!(event.version(), 1);
                    // What decodes encodes, and decodes to the same event again.
                    let bytes = event.encode().unwrap();
                    prop_assert_eq!(DepotEvent::decode(&name, 1, bytes.as_str()).unwrap(), event);
                }
                (1, Err(error)) => prop_assert!(matches!(error, DecodeError::Payload { version: 1, .. }), "{:?}", error),
                (0, Err(error)) => prop_assert!(matches!(error, DecodeError::UnknownVersion { version: 0, .. }), "{:?}", error),
                (v, Err(error)) => prop_assert!(
                    matches!(error, DecodeError::VersionTooNew { version, known: 1, .. } if version == v),
                    "{:?}",
                    error
                ),
                (v, Ok(event)) => prop_assert!(false, "decoded version {} as {:?}", v, event),
            },
            _ => match decoded {
                Err(DecodeError::UnknownEvent { name: n, version: v }) => {
                    prop_assert_eq!(n, name);
                    prop_assert_eq!(v, version);
                }
                other => prop_assert!(false, "expected an unknown event, got {:?}", other),
            },
        }
    }

    #[test]
    fn t14_snapshot_decode(bytes in any_payload()) {
        match codec::decode_snapshot::<Depot>(bytes.as_bytes()) {
            Ok(depot) => {
                let again = codec::encode_snapshot(&depot).unwrap();
                let twice = codec::decode_snapshot::<Depot>(&again).unwrap();
                prop_assert_eq!((twice.last, twice.placed), (depot.last, depot.placed));
            }
            Err(error) => prop_assert!(
                matches!(error, DecodeError::Snapshot { aggregate: "depot", .. }),
                "{:?}",
                error
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Append validation.
// ---------------------------------------------------------------------------

fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("t".to_owned()),
        2 => Just("u".to_owned()),
        1 => Just(String::new()),
        1 => Just("a\u{7f}b".to_owned()),
        1 => Just("x".repeat(17)),
        1 => Just("é".repeat(64)),
        1 => Just("x".repeat(129)),
        1 => "\\PC{0,20}",
        1 => any::<String>(),
    ]
}

fn new_event() -> impl Strategy<Value = NewEvent> {
    (
        prop_oneof![
            (0u128..4).prop_map(Uuid::from_u128),
            any::<u128>().prop_map(Uuid::from_u128)
        ],
        name_text(),
        name_text(),
        any::<u32>(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80)
                .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            "[a-z\"{}:,é]{0,80}",
            Just("x".repeat(1 << 20)),
            Just("x".repeat((1 << 20) + 1)),
        ],
        prop_oneof![
            Just(Metadata::new()),
            "\\PC{0,90}".prop_map(|a| Metadata::new().actor(a)),
            Just(Metadata::new().with("big", "x".repeat(64 << 10))),
        ],
    )
        .prop_map(
            |(id, aggregate, name, version, payload, metadata)| NewEvent {
                event_id: id,
                aggregate_type: aggregate.into(),
                name: name.into(),
                schema_version: version,
                payload: payload.into(),
                occurred_at: None,
                metadata,
            },
        )
}

fn stream_write() -> impl Strategy<Value = StreamWrite> {
    (
        prop_oneof![Just("s-1"), Just("s-2"), Just("s-3")],
        prop_oneof![
            Just(ExpectedVersion::Any),
            Just(ExpectedVersion::NoStream),
            Just(ExpectedVersion::StreamExists),
            any::<u64>().prop_map(ExpectedVersion::Exact),
        ],
        proptest::collection::vec(new_event(), 0..4),
    )
        .prop_map(|(stream, expected, events)| {
            StreamWrite::new(StreamId::new(stream).unwrap(), expected, events)
        })
}

fn small_limits() -> Limits {
    Limits {
        max_payload_bytes: 64,
        max_metadata_bytes: 64,
        max_events_per_append: 6,
        max_append_bytes: 200,
    }
}

/// Every rule the writes break, as the error `check_append` would give:
/// `Err(Limit { what })`, `Err(InvalidEvent { reason })` or
/// `Err(InvalidName { reason })` (as its text).
fn broken_rules(limits: &Limits, writes: &[StreamWrite]) -> HashSet<&'static str> {
    let mut broken = HashSet::new();
    let events: Vec<&NewEvent> = writes.iter().flat_map(|w| &w.events).collect();
    if events.len() > limits.max_events_per_append {
        broken.insert("events in one append");
    }
    let streams: HashSet<_> = writes.iter().map(|w| &w.stream).collect();
    if streams.len() < writes.len() {
        broken.insert("the same stream appears twice in one append");
    }
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    if ids.len() < events.len() {
        broken.insert("the same event id appears twice in one append");
    }
    let mut total = 0;
    for write in writes {
        for event in &write.events {
            for name in [&event.name, &event.aggregate_type] {
                // The name rule restated: ASCII letters, digits, `-`, `_`
                // and `.`, starting with a letter, at most 128 bytes.
                let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
                if name.is_empty() {
                    broken.insert("empty");
                } else if name.len() > 128 {
                    broken.insert("too long");
                } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    broken.insert("bad start");
                } else if !name.chars().all(allowed) {
                    broken.insert("bad character");
                }
            }
            if event.aggregate_type != write.events[0].aggregate_type {
                broken.insert("events of one stream write must share one aggregate type");
            }
            if event.payload.len() > limits.max_payload_bytes {
                broken.insert("event payload bytes");
            }
            let meta = event.metadata.to_json().map_or(0, |m| m.len());
            if meta > limits.max_metadata_bytes {
                broken.insert("event metadata bytes");
            }
            total += event.payload.len() + meta;
        }
    }
    if total > limits.max_append_bytes {
        broken.insert("bytes in one append");
    }
    broken
}

fn check_limits(limits: &Limits, writes: &[StreamWrite]) -> Result<(), TestCaseError> {
    let broken = broken_rules(limits, writes);
    match check_append(limits, writes.to_vec()) {
        Ok(checked) => {
            prop_assert!(broken.is_empty(), "accepted, but breaks {:?}", broken);
            // The metadata is serialized once, in its stored form.
            for (write, stored) in writes.iter().zip(&checked.metadata) {
                let expected: Vec<_> = write.events.iter().map(|e| e.metadata.to_json()).collect();
                prop_assert_eq!(&expected, stored);
            }
        }
        Err(Error::Limit(limit)) => {
            prop_assert!(
                broken.contains(limit.what),
                "{:?} not in {:?}",
                limit,
                broken
            );
            prop_assert!(limit.size > limit.limit);
        }
        Err(Error::InvalidEvent { reason, .. }) => {
            prop_assert!(broken.contains(reason), "{:?} not in {:?}", reason, broken);
        }
        Err(Error::InvalidName { reason, .. }) => {
            let rule = match reason {
                NameError::Empty => "empty",
                NameError::TooLong { .. } => "too long",
                NameError::InvalidStart => "bad start",
                _ => "bad character",
            };
            prop_assert!(broken.contains(rule), "{:?} not in {:?}", reason, broken);
        }
        Err(other) => prop_assert!(false, "unexpected error kind {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn t14_limits_check(writes in proptest::collection::vec(stream_write(), 0..4)) {
        check_limits(&Limits::default(), &writes)?;
        check_limits(&small_limits(), &writes)?;
    }
}

#[test]
fn limits_at_the_limit_and_one_over() {
    let limits = small_limits();
    let stream = StreamId::new("s-1").unwrap();
    let write = |payload: usize, name: usize| {
        vec![StreamWrite::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![NewEvent::new("t", "n".repeat(name), 1, "x".repeat(payload))],
        )]
    };
    assert!(check_append(&limits, write(64, 128)).is_ok());
    assert!(matches!(
        check_append(&limits, write(65, 16)),
        Err(Error::Limit(l)) if (l.what, l.size, l.limit) == ("event payload bytes", 65, 64)
    ));
    assert!(matches!(
        check_append(&limits, write(64, 129)),
        Err(Error::InvalidName {
            reason: NameError::TooLong { len: 129 },
            ..
        })
    ));
    assert!(check_append(&Limits::default(), vec![]).is_ok());
}

// ---------------------------------------------------------------------------
// Deep JSON (RELIABILITY S2: depth is capped by serde_json's limit of 128).
// ---------------------------------------------------------------------------

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    let open = r#"{"a":"#.repeat(depth);
    let close = "}".repeat(depth);
    format!("{open}1{close}")
}

#[test]
fn t14_deeply_nested_json_is_an_error_not_a_stack_overflow() {
    for deep in [nested_arrays(10_000), nested_objects(10_000)] {
        let payload = format!(r#"{{"data":{deep}}}"#);
        assert!(matches!(
            Blob::decode(1, &payload),
            Err(DecodeError::Payload {
                name: "blob",
                version: 1,
                ..
            })
        ));
        assert!(matches!(
            DepotEvent::decode("blob", 1, &payload),
            Err(DecodeError::Payload { name: "blob", .. })
        ));
        assert!(matches!(
            DepotEvent::decode("placed", 1, &deep),
            Err(DecodeError::Payload {
                name: "placed",
                version: 1,
                ..
            })
        ));
        let contact = format!(r#"{{"email":{deep}}}"#);
        assert!(DepotEvent::decode("contact", 1, &contact).is_err());
        assert!(serde_json::from_str::<Personal<serde_json::Value>>(&deep).is_err());
        let meta = format!(r#"{{"extra":{{"k":{deep}}}}}"#);
        assert!(Metadata::from_json(meta.as_bytes()).is_err());
        let snapshot = format!(r#"{{"last":{deep},"placed":0}}"#);
        assert!(matches!(
            codec::decode_snapshot::<Depot>(snapshot.as_bytes()),
            Err(DecodeError::Snapshot {
                aggregate: "depot",
                ..
            })
        ));
    }
}

#[test]
fn moderately_nested_json_still_decodes() {
    let payload = format!(r#"{{"data":{}}}"#, nested_arrays(100));
    let blob = Blob::decode(1, &payload).unwrap();
    assert!(blob.data.is_array());
    let payload = format!(r#"{{"data":{}}}"#, nested_arrays(129));
    assert!(Blob::decode(1, &payload).is_err(), "depth 129 is rejected");
}
