//! libFuzzer target: `drover::fuzzing::config_parse` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::config_parse(data));
