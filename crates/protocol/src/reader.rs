//! Splitting a byte stream into hub messages.
//!
//! Transports deliver bytes in arbitrary pieces: one WebSocket frame may hold several
//! messages, and one message may span several HTTP POST bodies. [`MessageReader`] buffers
//! what it is given and hands out whole messages, rejecting any message larger than the
//! configured maximum as soon as that is known (a MessagePack length prefix is checked
//! before a single body byte is buffered for it).

use crate::varint::read_varint;
use crate::{json, msgpack, HubMessage, Protocol, ProtocolError, RECORD_SEPARATOR};

/// A message decoded by a [`MessageReader`], in the value type of its protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodedMessage {
    /// From the JSON protocol.
    Json(HubMessage<serde_json::Value>),
    /// From the MessagePack protocol.
    MessagePack(HubMessage<rmpv::Value>),
}

impl DecodedMessage {
    /// The protocol's numeric message type.
    pub fn type_id(&self) -> u8 {
        match self {
            DecodedMessage::Json(m) => m.type_id(),
            DecodedMessage::MessagePack(m) => m.type_id(),
        }
    }

    /// Whether the message counts for stateful reconnect (see [`HubMessage::is_trackable`]).
    pub fn is_trackable(&self) -> bool {
        match self {
            DecodedMessage::Json(m) => m.is_trackable(),
            DecodedMessage::MessagePack(m) => m.is_trackable(),
        }
    }

    /// The protocol the message was decoded with.
    pub fn protocol(&self) -> Protocol {
        match self {
            DecodedMessage::Json(_) => Protocol::Json,
            DecodedMessage::MessagePack(_) => Protocol::MessagePack,
        }
    }

    /// Appends the message in its protocol's wire form (framing included).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DecodedMessage::Json(m) => json::encode(m, out),
            DecodedMessage::MessagePack(m) => msgpack::encode(m, out),
        }
    }
}

/// Incremental framer: splits a byte stream into messages of one protocol, enforcing a
/// maximum message size.
///
/// Memory: after [`MessageReader::next`] has returned `Ok(None)`, at most
/// `max_message_size + 5` bytes stay buffered, so the buffer is bounded by that plus whatever
/// the caller pushes before draining again.
#[derive(Debug)]
pub struct MessageReader {
    protocol: Protocol,
    max_message_size: usize,
    buffer: Vec<u8>,
    /// Start of the unread bytes in `buffer`; consumed bytes are dropped lazily on `push`
    /// so that draining many small messages does not shift the buffer every time.
    start: usize,
    /// JSON only: how far past `start` we already know there is no separator, so that a
    /// record arriving in many pieces is scanned once, not once per piece.
    scanned: usize,
}

impl MessageReader {
    /// A reader for `protocol` that rejects messages whose body (JSON record without its
    /// separator, MessagePack body without its prefix) exceeds `max_message_size` bytes.
    pub fn new(protocol: Protocol, max_message_size: usize) -> Self {
        MessageReader {
            protocol,
            max_message_size,
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
        }
    }

    /// The protocol this reader decodes.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Append bytes received from the transport.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// Next complete message. `Ok(None)` = need more bytes. `Err` = malformed or too large
    /// (the connection should be closed). After [`ProtocolError::UnknownMessageType`] the
    /// offending message has been consumed, so reading may go on if the caller chooses to
    /// ignore such messages.
    // Not an Iterator: "need more bytes" and "failed" must stay distinguishable.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<DecodedMessage>, ProtocolError> {
        let next = match self.protocol {
            Protocol::Json => self.next_json(),
            Protocol::MessagePack => self.next_msgpack(),
        };
        if self.start == self.buffer.len() && self.buffer.capacity() > 0 {
            // Everything read: give the buffer back. A server holds one reader per idle
            // connection, and between pings there is nothing to keep.
            self.buffer = Vec::new();
            self.start = 0;
            self.scanned = 0;
        }
        next
    }

    fn next_json(&mut self) -> Result<Option<DecodedMessage>, ProtocolError> {
        let unread = &self.buffer[self.start..];
        let from = self.scanned.min(unread.len());
        let Some(offset) = unread[from..].iter().position(|&b| b == RECORD_SEPARATOR) else {
            self.scanned = unread.len();
            if unread.len() > self.max_message_size {
                return Err(ProtocolError::MessageTooLarge {
                    max: self.max_message_size,
                });
            }
            return Ok(None);
        };
        let end = from + offset;
        if end > self.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                max: self.max_message_size,
            });
        }
        let record = &unread[..end];
        let decoded = json::decode(record);
        self.start += end + 1;
        self.scanned = 0;
        decoded.map(|m| Some(DecodedMessage::Json(m)))
    }

    fn next_msgpack(&mut self) -> Result<Option<DecodedMessage>, ProtocolError> {
        let unread = &self.buffer[self.start..];
        let Some((body_len, prefix_len)) = read_varint(unread)? else {
            return Ok(None);
        };
        if body_len > self.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                max: self.max_message_size,
            });
        }
        let Some(body) = unread.get(prefix_len..prefix_len + body_len) else {
            return Ok(None);
        };
        let decoded = msgpack::decode(body);
        self.start += prefix_len + body_len;
        decoded.map(|m| Some(DecodedMessage::MessagePack(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reader: &mut MessageReader) -> Vec<Result<DecodedMessage, ProtocolError>> {
        let mut out = Vec::new();
        loop {
            match reader.next() {
                Ok(None) => return out,
                Ok(Some(m)) => out.push(Ok(m)),
                Err(e) => {
                    let fatal = !matches!(e, ProtocolError::UnknownMessageType(_));
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    #[test]
    fn json_several_records_per_push() {
        let mut reader = MessageReader::new(Protocol::Json, 1024);
        reader.push(b"{\"type\":6}\x1e{\"type\":99}\x1e{\"type\":6}\x1e{\"ty");
        let got = drain(&mut reader);
        assert_eq!(got.len(), 3);
        assert!(matches!(got[0], Ok(DecodedMessage::Json(HubMessage::Ping))));
        assert_eq!(got[1], Err(ProtocolError::UnknownMessageType(99)));
        assert!(matches!(got[2], Ok(DecodedMessage::Json(HubMessage::Ping))));
        assert_eq!(reader.buffered_len(), 4);
        reader.push(b"pe\":6}\x1e");
        assert_eq!(drain(&mut reader).len(), 1);
        assert_eq!(reader.buffered_len(), 0);
    }

    #[test]
    fn json_too_large_without_separator() {
        let mut reader = MessageReader::new(Protocol::Json, 8);
        reader.push(b"{\"type\":");
        assert_eq!(reader.next(), Ok(None));
        reader.push(b"6");
        assert_eq!(
            reader.next(),
            Err(ProtocolError::MessageTooLarge { max: 8 })
        );
    }

    #[test]
    fn json_record_at_exact_limit() {
        let mut reader = MessageReader::new(Protocol::Json, 10);
        reader.push(b"{\"type\":6}\x1e");
        assert!(matches!(reader.next(), Ok(Some(_))));
        let mut reader = MessageReader::new(Protocol::Json, 9);
        reader.push(b"{\"type\":6}\x1e");
        assert!(reader.next().is_err());
    }

    #[test]
    fn msgpack_prefix_checked_before_body() {
        let mut reader = MessageReader::new(Protocol::MessagePack, 32 * 1024);
        // Claims a ~2 GB body; rejected with 5 bytes buffered.
        reader.push(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        assert_eq!(
            reader.next(),
            Err(ProtocolError::MessageTooLarge { max: 32 * 1024 })
        );
        let mut reader = MessageReader::new(Protocol::MessagePack, 32);
        reader.push(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(reader.next(), Err(ProtocolError::InvalidLengthPrefix));
    }

    #[test]
    fn msgpack_byte_by_byte() {
        let mut reader = MessageReader::new(Protocol::MessagePack, 32);
        let stream = [0x02, 0x91, 0x06, 0x03, 0x92, 0x08, 0x01];
        let mut got = Vec::new();
        for byte in stream {
            reader.push(&[byte]);
            got.extend(drain(&mut reader));
        }
        assert_eq!(
            got,
            vec![
                Ok(DecodedMessage::MessagePack(HubMessage::Ping)),
                Ok(DecodedMessage::MessagePack(HubMessage::Ack {
                    sequence_id: 1
                })),
            ]
        );
    }

    #[test]
    fn empty_msgpack_body_is_an_error_not_a_stall() {
        let mut reader = MessageReader::new(Protocol::MessagePack, 32);
        reader.push(&[0x00, 0x02, 0x91, 0x06]);
        assert!(matches!(reader.next(), Err(ProtocolError::Malformed(_))));
        assert!(matches!(reader.next(), Ok(Some(_))));
    }
}
