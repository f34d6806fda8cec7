//! libFuzzer target: `drover::fuzzing::netconf_xml` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::netconf_xml(data));
