//! libFuzzer target: `drover::fuzzing::ssh_transport` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::ssh_transport(data));
