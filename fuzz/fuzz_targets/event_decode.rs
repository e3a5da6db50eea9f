//! `es_fuzz_targets::event_decode` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| es_fuzz_targets::event_decode(data));
