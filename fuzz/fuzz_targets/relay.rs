//! Fuzzes `pushwarden_bitwarden::fuzzing::relay`: the `/push/*` request models and the
//! `/connect/token` form; the first byte picks the request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pushwarden_bitwarden::fuzzing::relay(data));
