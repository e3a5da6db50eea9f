//! `es_fuzz_targets::http_request` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| es_fuzz_targets::http_request(data));
