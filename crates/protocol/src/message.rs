//! The hub messages themselves, independent of how they are encoded.
//!
//! Both protocols share these types; only the argument values differ
//! (`serde_json::Value` for JSON, `rmpv::Value` for MessagePack), hence the parameter `V`.

/// Message headers: string pairs in the order received. Receivers may ignore them.
pub type Headers = Vec<(String, String)>;

/// A call of a hub method (or of a client method, when the server calls the client).
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation<V> {
    /// Optional headers.
    pub headers: Headers,
    /// `None` means "non-blocking": the callee must not send a Completion.
    pub invocation_id: Option<String>,
    /// The method name (case-sensitive).
    pub target: String,
    /// Positional arguments.
    pub arguments: Vec<V>,
    /// Ids of the upload streams the caller will feed with StreamItem messages.
    pub stream_ids: Vec<String>,
}

/// The outcome carried by a Completion.
#[derive(Clone, Debug, PartialEq)]
pub enum CompletionResult<V> {
    /// The method returned nothing (or a stream finished).
    Void,
    /// The method returned a value (which may be null).
    Value(V),
    /// The method failed with this message.
    Error(String),
}

/// One SignalR hub message. Type numbers follow the protocol (see [`HubMessage::type_id`]).
#[derive(Clone, Debug, PartialEq)]
pub enum HubMessage<V> {
    /// Type 1: a method call.
    Invocation(Invocation<V>),
    /// Type 2: one item of a stream.
    StreamItem {
        /// Optional headers.
        headers: Headers,
        /// The stream's invocation id (or upload stream id).
        invocation_id: String,
        /// The item.
        item: V,
    },
    /// Type 3: the end of a call or stream.
    Completion {
        /// Optional headers.
        headers: Headers,
        /// The invocation being completed.
        invocation_id: String,
        /// Result, error or nothing.
        result: CompletionResult<V>,
    },
    /// Type 4: a call of a streaming method.
    StreamInvocation(Invocation<V>),
    /// Type 5: the caller no longer wants the stream.
    CancelInvocation {
        /// Optional headers.
        headers: Headers,
        /// The stream to cancel.
        invocation_id: String,
    },
    /// Type 6: keep-alive.
    Ping,
    /// Type 7: the sender is closing the connection.
    Close {
        /// Why, if this is an error.
        error: Option<String>,
        /// Whether a client with automatic reconnect may try again.
        allow_reconnect: bool,
    },
    /// Type 8: stateful reconnect, "I have processed messages up to this id".
    Ack {
        /// Highest processed sequence id.
        sequence_id: u64,
    },
    /// Type 9: stateful reconnect, "my next message has this id".
    Sequence {
        /// Sequence id of the next message the sender will send.
        sequence_id: u64,
    },
}

/// Message type numbers, shared by both encodings.
pub(crate) mod type_ids {
    pub const INVOCATION: u8 = 1;
    pub const STREAM_ITEM: u8 = 2;
    pub const COMPLETION: u8 = 3;
    pub const STREAM_INVOCATION: u8 = 4;
    pub const CANCEL_INVOCATION: u8 = 5;
    pub const PING: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const ACK: u8 = 8;
    pub const SEQUENCE: u8 = 9;
}

impl<V> HubMessage<V> {
    /// Whether the message counts for stateful reconnect: only these get sequence ids,
    /// are buffered for replay and are acknowledged. Ping, Close, Ack and Sequence are not.
    pub fn is_trackable(&self) -> bool {
        matches!(
            self,
            HubMessage::Invocation(_)
                | HubMessage::StreamItem { .. }
                | HubMessage::Completion { .. }
                | HubMessage::StreamInvocation(_)
                | HubMessage::CancelInvocation { .. }
        )
    }

    /// The protocol's numeric message type (`type` in JSON, first array element in MessagePack).
    pub fn type_id(&self) -> u8 {
        use type_ids::*;
        match self {
            HubMessage::Invocation(_) => INVOCATION,
            HubMessage::StreamItem { .. } => STREAM_ITEM,
            HubMessage::Completion { .. } => COMPLETION,
            HubMessage::StreamInvocation(_) => STREAM_INVOCATION,
            HubMessage::CancelInvocation { .. } => CANCEL_INVOCATION,
            HubMessage::Ping => PING,
            HubMessage::Close { .. } => CLOSE,
            HubMessage::Ack { .. } => ACK,
            HubMessage::Sequence { .. } => SEQUENCE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackable_messages_are_the_five_from_the_spec() {
        let inv = Invocation::<()> {
            headers: vec![],
            invocation_id: None,
            target: "t".into(),
            arguments: vec![],
            stream_ids: vec![],
        };
        let all: Vec<HubMessage<()>> = vec![
            HubMessage::Invocation(inv.clone()),
            HubMessage::StreamItem {
                headers: vec![],
                invocation_id: "1".into(),
                item: (),
            },
            HubMessage::Completion {
                headers: vec![],
                invocation_id: "1".into(),
                result: CompletionResult::Void,
            },
            HubMessage::StreamInvocation(inv),
            HubMessage::CancelInvocation {
                headers: vec![],
                invocation_id: "1".into(),
            },
            HubMessage::Ping,
            HubMessage::Close {
                error: None,
                allow_reconnect: false,
            },
            HubMessage::Ack { sequence_id: 1 },
            HubMessage::Sequence { sequence_id: 1 },
        ];
        let ids: Vec<u8> = all.iter().map(HubMessage::type_id).collect();
        assert_eq!(ids, (1..=9).collect::<Vec<u8>>());
        let trackable: Vec<bool> = all.iter().map(HubMessage::is_trackable).collect();
        assert_eq!(
            trackable,
            [true, true, true, true, true, false, false, false, false]
        );
    }
}
