//! libFuzzer target: `drover::fuzzing::target_parse` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::target_parse(data));
