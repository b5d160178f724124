//! Fuzzes `pushwarden_transport::fuzzing::upgrade`: the bytes are read as an HTTP/1.1 request
//! head (as hyper parses one), turned into an `http::Request`, and run through the WebSocket
//! upgrade checks; the bearer token lookup reads the same headers and query.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = head.parse(data) else {
        return;
    };
    let (Some(method), Some(path), Some(version)) = (head.method, head.path, head.version) else {
        return;
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .version(if version == 1 {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_10
        });
    for header in head.headers.iter() {
        request = request.header(header.name, header.value);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let _ = pushwarden_auth::token_from_request(request.headers(), request.uri().query());
    pushwarden_transport::fuzzing::upgrade(request);
});
