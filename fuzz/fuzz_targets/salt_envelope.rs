//! libFuzzer target: `drover::fuzzing::salt_envelope` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::salt_envelope(data));
