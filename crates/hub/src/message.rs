//! Hub messages encoded for the wire, once per protocol.
//!
//! A notification to 10,000 connections is serialized twice (JSON and MessagePack), not
//! 10,000 times: every connection gets a clone of the same reference-counted bytes.

use bytes::Bytes;
use pushwarden_protocol::{json, msgpack, HubMessage, Invocation, Protocol};

/// One message, pre-encoded in every hub protocol.
#[derive(Clone, Debug)]
pub struct SerializedMessage {
    json: Bytes,
    msgpack: Bytes,
}

impl SerializedMessage {
    /// A non-blocking invocation of `target` on the client. The arguments are given per
    /// protocol because their shape may differ (MessagePack carries timestamps natively,
    /// JSON carries strings; key casing may differ too).
    pub fn invocation(
        target: &str,
        json_arguments: Vec<serde_json::Value>,
        msgpack_arguments: Vec<rmpv::Value>,
    ) -> Self {
        Self::from_messages(
            &HubMessage::Invocation(Invocation {
                headers: Vec::new(),
                invocation_id: None,
                target: target.to_owned(),
                arguments: json_arguments,
                stream_ids: Vec::new(),
            }),
            &HubMessage::Invocation(Invocation {
                headers: Vec::new(),
                invocation_id: None,
                target: target.to_owned(),
                arguments: msgpack_arguments,
                stream_ids: Vec::new(),
            }),
        )
    }

    pub fn from_messages(
        json_message: &HubMessage<serde_json::Value>,
        msgpack_message: &HubMessage<rmpv::Value>,
    ) -> Self {
        let mut j = Vec::new();
        json::encode(json_message, &mut j);
        let mut m = Vec::new();
        msgpack::encode(msgpack_message, &mut m);
        Self {
            json: j.into(),
            msgpack: m.into(),
        }
    }

    /// The bytes for a connection speaking `protocol`.
    pub fn bytes(&self, protocol: Protocol) -> &Bytes {
        match protocol {
            Protocol::Json => &self.json,
            Protocol::MessagePack => &self.msgpack,
        }
    }
}

/// Encodes a message that carries no argument values (Ping, Close, Ack, Sequence, errors).
pub(crate) fn encode_control(protocol: Protocol, message: Control<'_>) -> Bytes {
    let mut out = Vec::new();
    match protocol {
        Protocol::Json => json::encode(&message.to_message::<serde_json::Value>(), &mut out),
        Protocol::MessagePack => msgpack::encode(&message.to_message::<rmpv::Value>(), &mut out),
    }
    out.into()
}

/// Messages the hub itself sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control<'a> {
    Ping,
    Close {
        error: Option<&'a str>,
        allow_reconnect: bool,
    },
    Ack(u64),
    Sequence(u64),
    /// A Completion carrying an error, answering a client's invocation.
    CompletionError {
        invocation_id: &'a str,
        error: &'a str,
    },
}

impl Control<'_> {
    /// Whether the frame counts in stateful reconnect's sequence (gets a sequence id, is kept
    /// until acknowledged): a Completion does; Ping, Close, Ack and Sequence do not.
    pub(crate) fn is_trackable(self) -> bool {
        matches!(self, Control::CompletionError { .. })
    }

    fn to_message<V>(self) -> HubMessage<V> {
        match self {
            Control::Ping => HubMessage::Ping,
            Control::Close {
                error,
                allow_reconnect,
            } => HubMessage::Close {
                error: error.map(str::to_owned),
                allow_reconnect,
            },
            Control::Ack(sequence_id) => HubMessage::Ack { sequence_id },
            Control::Sequence(sequence_id) => HubMessage::Sequence { sequence_id },
            Control::CompletionError {
                invocation_id,
                error,
            } => HubMessage::Completion {
                headers: Vec::new(),
                invocation_id: invocation_id.to_owned(),
                result: pushwarden_protocol::CompletionResult::Error(error.to_owned()),
            },
        }
    }
}
