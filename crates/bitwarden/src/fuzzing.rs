//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the crate's proptests: the
//! request bodies an outsider can send, run through the same parsing and checks as their
//! handlers, with the outcome ignored. The property under test is "never panics"; where a
//! body is accepted, what the handler builds from it must hold up too (a `/send` yields a hub
//! message every client can decode).

use http::{header, HeaderMap, HeaderValue};
use pushwarden_protocol::{MessageReader, Protocol};

use crate::device_push::{
    parse_object, parse_registration, parse_send, parse_update, relayed_registration,
    relayed_target, required_string,
};
use crate::notification::Notification;
use crate::relay::{Caller, TokenRequest};

/// The installation a relayed request comes from in [`relay`].
const INSTALLATION: &str = "bbbbbbbb-3333-4c4c-8d8d-000000000003";

/// A `POST /send` body, as `send::deliver` takes it: the envelope, its route and hub message
/// (both protocols), and the device target and push message.
pub fn send(data: &[u8]) {
    let Ok(notification) = Notification::parse(data) else {
        return;
    };
    if let Ok(route) = notification.route() {
        let message = notification.message(route.target);
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            let mut reader = MessageReader::new(protocol, 16 << 20);
            reader.push(message.bytes(protocol));
            assert!(
                matches!(reader.next(), Ok(Some(_))),
                "a /send the server accepted gave a {protocol:?} hub message that does not decode"
            );
        }
    }
    let _ = notification.device_target();
    let _ = notification.push_message();
}

/// The relay's request bodies. The first byte picks the request (it is one endpoint per
/// model on the wire), the rest is the body:
///
/// | byte % 6 | request |
/// |---|---|
/// | 0 | `/push/register`, as the local server and as an installation |
/// | 1 | `/push/delete` (`{id}`) |
/// | 2 | `/push/add-organization` and `/push/delete-organization` |
/// | 3 | `/push/send`, as the local server and as an installation |
/// | 4 | `/connect/token` form body |
/// | 5 | `/connect/token` with HTTP Basic: the first line is the `Authorization` value |
pub fn relay(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let installation = Caller::Installation(INSTALLATION.to_owned());
    match kind % 6 {
        0 => {
            if let Ok(device) = parse_registration(body) {
                let _ = relayed_registration(&Caller::Local, device.clone());
                let _ = relayed_registration(&installation, device);
            }
        }
        1 => {
            let _ = parse_object(body).and_then(|m| required_string(&m, "id"));
        }
        2 => {
            if let Ok((devices, organization)) = parse_update(body) {
                let _: Vec<String> = devices.iter().map(|d| installation.prefix(d)).collect();
                let _ = installation.prefix(&organization);
            }
        }
        3 => {
            if let Ok((target, _message)) = parse_send(body) {
                let _ = relayed_target(&Caller::Local, target.clone());
                let _ = relayed_target(&installation, target);
            }
        }
        4 => token(&HeaderMap::new(), body),
        _ => {
            let (line, form) = match body.iter().position(|&b| b == b'\n') {
                Some(end) => (&body[..end], &body[end + 1..]),
                None => (body, &[][..]),
            };
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(line) {
                headers.insert(header::AUTHORIZATION, value);
            }
            token(&headers, form);
        }
    }
}

/// What `/connect/token` reads before it looks anything up: grant, credentials, scope.
fn token(headers: &HeaderMap, body: &[u8]) {
    if let Ok(request) = TokenRequest::parse(headers, body) {
        let _ = request.check_scope();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every input of the committed corpora (seeds, and any crash kept as a regression).
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut inputs = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("the fuzz corpus") {
            inputs.push(std::fs::read(entry.expect("entry").path()).expect("input"));
        }
        assert!(!inputs.is_empty(), "{} is empty", dir.display());
        inputs
    }

    #[test]
    fn the_fuzz_corpora_run_clean() {
        for input in corpus("send") {
            send(&input);
        }
        for input in corpus("relay") {
            relay(&input);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            send(&data);
            relay(&data);
        }
    }
}
