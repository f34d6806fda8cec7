//! libFuzzer target: `drover::fuzzing::sls_pipeline` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::sls_pipeline(data));
