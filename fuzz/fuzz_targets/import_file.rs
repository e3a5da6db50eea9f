//! `es_fuzz_targets::import_file` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| es_fuzz_targets::import_file(data));
