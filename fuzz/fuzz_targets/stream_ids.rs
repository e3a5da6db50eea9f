//! `es_fuzz_targets::stream_ids` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| es_fuzz_targets::stream_ids(data));
