//! libFuzzer target: `drover::fuzzing::snmp_decode` (see `src/fuzzing.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::snmp_decode(data));
