//! Fuzzes `pushwarden_bitwarden::fuzzing::send`: a `POST /send` body, parsed and routed as the
//! handler does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pushwarden_bitwarden::fuzzing::send(data));
