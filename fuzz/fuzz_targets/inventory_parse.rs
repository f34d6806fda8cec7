//! libFuzzer target: `drover::fuzzing::inventory_parse` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::inventory_parse(data));
