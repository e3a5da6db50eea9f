//! RELIABILITY T14 in every `cargo test`: each fuzz target over its seeds
//! (`fuzz/seeds/<target>/`) and the inputs the fuzzers found crashing
//! (`fuzz/regressions/<target>/`, each a regression test), then over
//! generated inputs; and the sealed value's authentication: no byte of it
//! can change and still open.

// Test bodies unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use es_fuzz_targets::{SEALED_PLAIN, TARGETS, sealing};
use proptest::prelude::*;

/// `PROPTEST_CASES` when set (the long tier raises it), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The files of `fuzz/<dir>/<target>/`, if any.
fn inputs(dir: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    found.sort();
    found
}

#[test]
fn t14_every_target_takes_its_seeds_and_regressions() {
    let mut seen = 0;
    for (name, target) in TARGETS {
        let seeds = inputs("seeds", name);
        assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ has no seed");
        for (path, bytes) in seeds.iter().chain(&inputs("regressions", name)) {
            eprintln!("{name}: {}", path.display());
            target(bytes);
            seen += 1;
        }
    }
    assert!(seen >= TARGETS.len());
}

#[test]
fn t14_the_import_seeds_are_imported() {
    let seeds = inputs("seeds", "import_file");
    assert_eq!(seeds.len(), 2);
    for (path, bytes) in seeds {
        assert!(
            es_fuzz_targets::import_file_imported(&bytes),
            "{} is not imported",
            path.display()
        );
    }
}

/// A JSON-ish alphabet, so that generated inputs get past the parser.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"null".to_vec()),
        Just(b"\"$personal\"".to_vec()),
        Just(b"\"$sealed\"".to_vec()),
        Just(b"\"name\"".to_vec()),
        Just(b"\"title\"".to_vec()),
        Just(b"\"body\"".to_vec()),
        Just(b"\"reason\"".to_vec()),
        Just(b"\"by\"".to_vec()),
        Just(b"\"email\"".to_vec()),
        Just(b"\"resolution\"".to_vec()),
        Just(b"\"version\"".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"1e999".to_vec()),
        Just("\"\u{202e}\u{0}\"".as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    (any::<u8>(), prop::collection::vec(pieces, 0..24)).prop_map(|(first, pieces)| {
        let mut bytes = vec![first];
        bytes.extend(pieces.concat());
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    #[test]
    fn t14_targets_take_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        for (name, target) in TARGETS {
            if *name != "http_request" {
                target(&data);
            }
        }
    }

    #[test]
    fn t14_targets_take_json_shaped_input(data in jsonish()) {
        for (name, target) in TARGETS {
            if *name != "http_request" {
                target(&data);
            }
        }
    }
}

proptest! {
    // Each case is a request through the service and an append or two.
    #![proptest_config(ProptestConfig::with_cases(cases(300)))]

    #[test]
    fn t14_the_service_answers_any_body(data in jsonish()) {
        es_fuzz_targets::http_request(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    /// The sealed payload opens to what was sealed; with any one byte of
    /// its sealed value changed, it does not open.
    #[test]
    fn t14_no_altered_sealed_value_opens(at in any::<prop::sample::Index>(), to in 1..=255u8) {
        let (keys, stream, id, sealed) = sealing();
        let opened = keys.open(sealed, stream, *id).unwrap().unwrap();
        let plain: serde_json::Value = serde_json::from_str(SEALED_PLAIN).unwrap();
        let opened: serde_json::Value = serde_json::from_str(&opened).unwrap();
        prop_assert_eq!(&opened["title"], &plain["title"]);
        prop_assert_eq!(&opened["customer_email"]["$personal"], &plain["customer_email"]["$personal"]);
        // The sealed value: the string after `"$sealed":"`.
        let start = sealed.find("\"$sealed\":\"").unwrap() + "\"$sealed\":\"".len();
        let end = start + sealed[start..].find('"').unwrap();
        let mut altered = sealed.clone().into_bytes();
        let i = start + at.index(end - start);
        altered[i] = altered[i].wrapping_add(to);
        let Ok(altered) = String::from_utf8(altered) else { return Ok(()) };
        let reopened = keys.open(&altered, stream, *id);
        prop_assert!(
            !matches!(&reopened, Ok(Some(text)) if text.contains("ada@example.com")),
            "an altered sealed value opened: {:?}", reopened
        );
    }
}

/// An export line of one of three streams (or an invalid one), any
/// version, one of a few ids, one of two aggregate types.
fn export_line() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["ticket-a", "ticket-b", "ticket-c", ""]),
        0..6u64,
        0..10u128,
        prop::sample::select(vec!["ticket", "lead"]),
    )
        .prop_map(|(stream, version, id, aggregate_type)| {
            serde_json::json!({
                "stream": stream,
                "aggregate_type": aggregate_type,
                "version": version,
                "event_id": es_core::Uuid::from_u128(id),
                "name": "ticket-opened",
                "schema_version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
                "payload": {"title": "Printer"},
            })
            .to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    /// Export files of well-formed lines, most of them refused by the
    /// check (a gap, an id twice, a stream of two types), some accepted:
    /// an accepted one imports whole, and again as a repeat.
    #[test]
    fn t14_checked_export_files_import_whole(
        first in any::<u8>(),
        lines in prop::collection::vec(export_line(), 0..8),
    ) {
        let mut file = vec![first];
        file.extend(lines.join("\n").into_bytes());
        es_fuzz_targets::import_file(&file);
    }
}
