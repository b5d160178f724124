//! Fuzzes `pushwarden_protocol::fuzzing::negotiate` (the negotiate query and response), and the
//! bearer token lookup that reads `access_token` from the same query.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pushwarden_protocol::fuzzing::negotiate(data);
    let query = String::from_utf8_lossy(data);
    let _ = pushwarden_auth::token_from_request(&http::HeaderMap::new(), Some(&query));
});
