//! libFuzzer target: `drover::fuzzing::http_reply` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::http_reply(data));
