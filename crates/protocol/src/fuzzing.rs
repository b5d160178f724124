//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the in-crate proptests.
//!
//! Each function runs a decoder on arbitrary bytes and ignores the outcome: the property
//! under test is "never panics, never allocates without bound". Where a message decodes,
//! it is also encoded again, so the encoders are exercised on every shape the decoders
//! accept.

use crate::negotiate::{self, NegotiateResponse};
use crate::{handshake, json, msgpack, MessageReader, Protocol};

/// Size limit used by the fuzzing entry points (the ASP.NET Core default of 32 KB).
pub const MAX_MESSAGE_SIZE: usize = 32 * 1024;

/// Handshake request and response parsers.
pub fn handshake(data: &[u8]) {
    let _ = handshake::parse_request(data, MAX_MESSAGE_SIZE);
    let _ = handshake::parse_response(data);
}

/// JSON record decoder; decoded messages are re-encoded and must decode again.
pub fn json(data: &[u8]) {
    if let Ok(message) = json::decode(data) {
        let mut out = Vec::new();
        json::encode(&message, &mut out);
        let record = out.strip_suffix(&[crate::RECORD_SEPARATOR]).unwrap_or(&out);
        assert!(
            json::decode(record).is_ok(),
            "re-encoded JSON message failed to decode"
        );
    }
}

/// MessagePack body decoder; re-encoding a decoded message must be stable.
pub fn msgpack(data: &[u8]) {
    if let Ok(message) = msgpack::decode(data) {
        let mut first = Vec::new();
        msgpack::encode_body(&message, &mut first);
        match msgpack::decode(&first) {
            Ok(again) => {
                let mut second = Vec::new();
                msgpack::encode_body(&again, &mut second);
                assert_eq!(first, second, "MessagePack re-encoding is not stable");
            }
            Err(e) => panic!("re-encoded MessagePack message failed to decode: {e}"),
        }
    }
}

/// [`MessageReader`] for both protocols. The first byte picks a chunk size, so the fuzzer
/// also explores how messages are split across pushes.
pub fn reader(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first & 0x3f) + 1;
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let mut reader = MessageReader::new(protocol, 256);
        'feed: for piece in rest.chunks(chunk) {
            reader.push(piece);
            loop {
                match reader.next() {
                    Ok(Some(message)) => {
                        let mut out = Vec::new();
                        message.encode(&mut out);
                    }
                    Ok(None) => break,
                    Err(crate::ProtocolError::UnknownMessageType(_)) => {}
                    Err(_) => break 'feed,
                }
            }
            assert!(
                reader.buffered_len() <= 256 + 5,
                "reader kept too many bytes"
            );
        }
    }
}

/// The negotiate query (`negotiateVersion`, and the `id`, `access_token` and
/// `useStatefulReconnect` parameters the transports read from the same query), and, client side,
/// the negotiate response body: a response that parses must write and parse back unchanged, and
/// an error response must carry its message through.
pub fn negotiate(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let _ = negotiate::requested_version(Some(&query));
    for name in [
        "negotiateVersion",
        "id",
        "access_token",
        "useStatefulReconnect",
    ] {
        let _ = negotiate::query_param(Some(&query), name);
    }
    if let Ok(response) = NegotiateResponse::parse(data) {
        assert_eq!(
            NegotiateResponse::parse(&response.to_json()).as_ref(),
            Ok(&response),
            "a negotiate response did not survive writing and parsing again"
        );
    }
    assert_eq!(
        NegotiateResponse::parse(&negotiate::error_response(&query)),
        Err(negotiate::NegotiateError::Server(query.into_owned())),
        "an error response lost its message"
    );
}
