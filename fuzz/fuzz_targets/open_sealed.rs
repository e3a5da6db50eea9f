//! `es_fuzz_targets::open_sealed` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| es_fuzz_targets::open_sealed(data));
