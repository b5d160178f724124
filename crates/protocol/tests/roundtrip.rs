//! Every message type survives encode -> frame -> decode in both protocols, however the
//! bytes are split between pushes.

mod common;

use proptest::prelude::*;
use pushwarden_protocol::{json, msgpack, DecodedMessage, HubMessage, MessageReader, Protocol};

use common::{chunks, hub_message, json_value, msgpack_value};

const MAX: usize = 1 << 20;

fn read_all(protocol: Protocol, pieces: &[&[u8]]) -> Vec<DecodedMessage> {
    let mut reader = MessageReader::new(protocol, MAX);
    let mut out = Vec::new();
    for piece in pieces {
        reader.push(piece);
        while let Some(message) = reader.next().expect("valid stream") {
            out.push(message);
        }
    }
    assert_eq!(reader.buffered_len(), 0);
    out
}

proptest! {
    #[test]
    fn json_round_trip(msg in hub_message(json_value())) {
        let mut out = Vec::new();
        json::encode(&msg, &mut out);
        prop_assert_eq!(out.iter().filter(|&&b| b == 0x1e).count(), 1);
        prop_assert_eq!(out.last(), Some(&0x1e));
        prop_assert_eq!(json::decode(&out[..out.len() - 1]).unwrap(), msg);
    }

    #[test]
    fn msgpack_round_trip(msg in hub_message(msgpack_value())) {
        let mut body = Vec::new();
        msgpack::encode_body(&msg, &mut body);
        prop_assert_eq!(msgpack::decode(&body).unwrap(), msg.clone());
        let mut framed = Vec::new();
        msgpack::encode(&msg, &mut framed);
        let mut prefix = Vec::new();
        msgpack::write_varint(body.len(), &mut prefix);
        prop_assert_eq!(&framed[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&framed[prefix.len()..], &body[..]);
    }

    #[test]
    fn json_stream_any_chunking(
        msgs in prop::collection::vec(hub_message(json_value()), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            json::encode(m, &mut stream);
        }
        let expected: Vec<DecodedMessage> = msgs.into_iter().map(DecodedMessage::Json).collect();
        prop_assert_eq!(&read_all(Protocol::Json, &[&stream]), &expected);
        prop_assert_eq!(&read_all(Protocol::Json, &chunks(&stream, &cuts)), &expected);
    }

    #[test]
    fn msgpack_stream_any_chunking(
        msgs in prop::collection::vec(hub_message(msgpack_value()), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            msgpack::encode(m, &mut stream);
        }
        let expected: Vec<DecodedMessage> =
            msgs.into_iter().map(DecodedMessage::MessagePack).collect();
        prop_assert_eq!(&read_all(Protocol::MessagePack, &[&stream]), &expected);
        prop_assert_eq!(&read_all(Protocol::MessagePack, &chunks(&stream, &cuts)), &expected);
    }

    #[test]
    fn decoded_message_reencodes_identically(msg in hub_message(msgpack_value())) {
        let mut direct = Vec::new();
        msgpack::encode(&msg, &mut direct);
        let mut via = Vec::new();
        DecodedMessage::MessagePack(msg).encode(&mut via);
        prop_assert_eq!(direct, via);
    }
}

#[test]
fn ping_helpers() {
    let mut out = Vec::new();
    msgpack::encode(&HubMessage::Ping, &mut out);
    json::encode(&HubMessage::Ping, &mut out);
    assert_eq!(out, b"\x02\x91\x06{\"type\":6}\x1e");
}
