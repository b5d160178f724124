//! Fuzzes `pushwarden_protocol::fuzzing::json`; the same entry point runs in the crate's proptests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pushwarden_protocol::fuzzing::json(data));
