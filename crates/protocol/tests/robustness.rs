//! Arbitrary and mutated bytes never make a decoder panic, and the framer keeps its
//! memory bound and gives the same answers whatever the chunking.

mod common;

use proptest::prelude::*;
use pushwarden_protocol::{
    fuzzing, handshake, json, msgpack, DecodedMessage, MessageReader, Protocol, ProtocolError,
};

use common::{chunks, hub_message, json_value, msgpack_value};

const MAX: usize = 512;

/// What a reader yields for a stream split as given: messages and errors, up to the first
/// fatal error. Checks the buffer bound after every drain.
fn outcomes(protocol: Protocol, pieces: &[&[u8]]) -> Vec<Result<DecodedMessage, ProtocolError>> {
    let mut reader = MessageReader::new(protocol, MAX);
    let mut out = Vec::new();
    for piece in pieces {
        reader.push(piece);
        loop {
            match reader.next() {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => break,
                Err(e @ ProtocolError::UnknownMessageType(_)) => out.push(Err(e)),
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
        assert!(
            reader.buffered_len() <= MAX + 5,
            "buffered {}",
            reader.buffered_len()
        );
    }
    out
}

/// Valid encodings with a few bytes overwritten: these reach much deeper into the decoders
/// than uniformly random bytes.
fn mutated(valid: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = valid;
    if bytes.is_empty() {
        return bytes;
    }
    for &(pos, value) in edits {
        let len = bytes.len();
        bytes[pos % len] = value;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzzing::handshake(&data);
        fuzzing::json(&data);
        fuzzing::msgpack(&data);
        fuzzing::reader(&data);
        fuzzing::negotiate(&data);
    }

    #[test]
    fn mutated_msgpack_never_panics(
        msg in hub_message(msgpack_value()),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut body = Vec::new();
        msgpack::encode_body(&msg, &mut body);
        let bytes = mutated(body, &edits);
        fuzzing::msgpack(&bytes);
        let mut framed = Vec::new();
        msgpack::write_varint(bytes.len(), &mut framed);
        framed.extend_from_slice(&bytes);
        fuzzing::reader(&[0x00].iter().chain(&framed).copied().collect::<Vec<u8>>());
    }

    #[test]
    fn mutated_json_never_panics(
        msg in hub_message(json_value()),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut record = Vec::new();
        json::encode(&msg, &mut record);
        record.pop();
        let bytes = mutated(record, &edits);
        fuzzing::json(&bytes);
        fuzzing::handshake(&bytes);
    }

    #[test]
    fn mutated_handshake_never_panics(
        protocol in "json|messagepack|[a-z]{0,12}",
        version in any::<u32>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        max in 0usize..64,
    ) {
        let bytes = mutated(handshake::encode_request(&protocol, version), &edits);
        match handshake::parse_request(&bytes, max) {
            Ok(None) => prop_assert!(bytes.len() <= max),
            Ok(Some((_, used))) => prop_assert!(used <= bytes.len() && used <= max + 1),
            Err(_) => {}
        }
    }

    #[test]
    fn chunking_does_not_change_outcomes(
        data in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            let whole = outcomes(protocol, &[&data]);
            let split = outcomes(protocol, &chunks(&data, &cuts));
            prop_assert_eq!(whole, split);
        }
    }

    #[test]
    fn chunking_valid_streams_with_garbage(
        msgs in prop::collection::vec(hub_message(msgpack_value()), 0..4),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            msgpack::encode(m, &mut stream);
        }
        stream.extend_from_slice(&garbage);
        let whole = outcomes(Protocol::MessagePack, &[&stream]);
        let split = outcomes(Protocol::MessagePack, &chunks(&stream, &cuts));
        prop_assert_eq!(whole, split);
    }
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let mut deep = vec![0x92, 0x02];
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    deep.push(0xc0);
    assert!(msgpack::decode(&deep).is_err());
    let mut json_deep = br#"{"type":2,"invocationId":"1","item":"#.to_vec();
    json_deep.extend(std::iter::repeat_n(b'[', 100_000));
    assert!(json::decode(&json_deep).is_err());
}
