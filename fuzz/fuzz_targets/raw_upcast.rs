//! `es_fuzz_targets::raw_upcast` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| es_fuzz_targets::raw_upcast(data));
