//! libFuzzer target: `drover::fuzzing::netconf_framing` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::netconf_framing(data));
