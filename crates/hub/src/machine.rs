//! The protocol of one connection as a state machine, without I/O.
//!
//! Events go in (bytes received, the timer fired, the transport started, was lost, came back
//! or failed) and [`Action`]s come out (frames to write, acknowledgements to apply, a replay,
//! a close with its reason). The machine reads no clock: every event that depends on time is
//! given the hub clock in milliseconds. It holds no lock, no `Arc`, no outbox and no metrics;
//! [`crate::HubSession`] applies its actions to those. So every rule here (handshake,
//! keep-alive, client timeout, stateful reconnect's Ack and Sequence, unknown methods) is
//! tested by calling it with bytes and times (see the tests at the bottom).
//!
//! Actions are handed to a callback as they happen rather than collected: nothing is
//! allocated per event, and a frame may borrow from the message that caused it.
//!
//! The protocol itself: <https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/docs/specs/HubProtocol.md>.

use pushwarden_protocol::{
    handshake, DecodedMessage, HandshakeError, HubMessage, MessageReader, Protocol, ProtocolError,
};
use pushwarden_transport::TransportKind;

use crate::message::Control;
use crate::options::HubOptions;

/// Newest hub protocol version we speak (2 adds stateful reconnect), for JSON and MessagePack.
const MAX_PROTOCOL_VERSION: u32 = 2;

/// Why a handshake was refused. `Display` is the error the handshake response carries, in
/// ASP.NET Core's words where it has them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    /// The request could not be read (not JSON, a field missing, too large).
    #[error(transparent)]
    Invalid(#[from] HandshakeError),
    /// A hub protocol other than `json` and `messagepack`.
    #[error("The protocol '{0}' is not supported.")]
    UnsupportedProtocol(String),
    /// A version newer than the server speaks (2).
    #[error("The server does not support version {} of the '{}' protocol.", .version, .protocol.name())]
    UnsupportedVersion { protocol: Protocol, version: u32 },
    /// MessagePack over a transport that carries only text (Server-Sent Events).
    #[error("Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.", .0.name())]
    BinaryNotSupported(Protocol),
}

/// How a client broke the protocol after its handshake, or how its transport failed.
/// `Display` is the text after "Connection closed with an error." in the Close message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A message that could not be framed or decoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// After a reconnect, the client announced a first sequence id past the messages we have
    /// processed: messages in between were lost.
    #[error("Sequence ID greater than amount of messages we've received.")]
    SequenceAhead,
    /// The transport could not read what the client sent, for the reason it gives.
    #[error("{0}")]
    Transport(String),
}

/// Why a connection closes. `Display` says it for people; [`CloseReason::close_message`] says
/// what the client is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// No complete handshake within [`HubOptions::handshake_timeout`].
    #[error("The handshake was not completed in time.")]
    HandshakeTimeout,
    /// The handshake was answered with this error.
    #[error("{0}")]
    HandshakeRefused(HandshakeRefusal),
    /// Nothing from the client within [`HubOptions::client_timeout`].
    #[error("Client timeout elapsed without receiving a message from the client.")]
    ClientTimeout,
    /// The outbox overflowed: the client does not read what it is sent.
    #[error("Outgoing message queue full: the client is not reading.")]
    QueueFull,
    /// The client broke the protocol, or its transport failed.
    #[error("Connection closed with an error. {0}")]
    Error(SessionError),
    /// The client sent a Close message.
    #[error("The client closed the connection.")]
    ClientClosed,
    /// The server closes every connection (graceful shutdown).
    #[error("The server is closing the connection.")]
    Shutdown { allow_reconnect: bool },
}

/// What a Close message says: its error text, if any, and whether the client may reconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseMessage {
    pub error: Option<String>,
    pub allow_reconnect: bool,
}

impl CloseReason {
    /// The Close message to send once the handshake is done; `None` when none is sent (a
    /// client that closed itself, or one that never completed its handshake).
    pub fn close_message(&self) -> Option<CloseMessage> {
        let (error, allow_reconnect) = match self {
            CloseReason::HandshakeTimeout
            | CloseReason::HandshakeRefused(_)
            | CloseReason::ClientClosed => return None,
            // A slow or silent client may come back; one that broke the protocol would
            // break it again.
            CloseReason::ClientTimeout | CloseReason::QueueFull => (Some(self.to_string()), true),
            CloseReason::Error(_) => (Some(self.to_string()), false),
            CloseReason::Shutdown { allow_reconnect } => (None, *allow_reconnect),
        };
        Some(CloseMessage {
            error,
            allow_reconnect,
        })
    }

    /// Whether frames still queued are dropped rather than written before closing: nobody
    /// reads them from a client that timed out, does not keep up, or left.
    pub fn discards_queued(&self) -> bool {
        matches!(
            self,
            CloseReason::HandshakeTimeout
                | CloseReason::ClientTimeout
                | CloseReason::QueueFull
                | CloseReason::ClientClosed
        )
    }
}

/// What the session must do, in the order given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action<'a> {
    /// The handshake succeeded: answer it, write frames in `protocol`'s transfer format,
    /// retain tracked frames until acknowledged when `stateful`, and join the hub's user and
    /// group maps.
    Opened { protocol: Protocol, stateful: bool },
    /// A hub message of this type was read (for the metrics).
    Received(u8),
    /// Write this frame.
    Send(Control<'a>),
    /// The client processed our tracked frames up to and including this sequence id.
    Acknowledged(u64),
    /// A new transport took over: write a Sequence message, then every tracked frame the
    /// client has not acknowledged.
    Replay,
    /// Close the connection. The machine ignores every later event.
    Close(CloseReason),
}

enum Phase {
    /// Collecting the handshake request.
    Handshake(Vec<u8>),
    /// Boxed: the handshake phase, and a closed connection, need none of this.
    Open(Box<Open>),
    Closed,
}

struct Open {
    reader: MessageReader,
    /// Stateful reconnect was granted (offered at negotiate, version 2 at handshake).
    stateful: bool,
    /// After a reconnect nothing is processed until the client's Sequence message.
    awaiting_sequence: bool,
    /// Highest client sequence id processed.
    received: u64,
    /// Sequence id of the last trackable message read, which may be a duplicate after a
    /// reconnect.
    current: u64,
    /// Highest sequence id we told the client we received.
    acked: u64,
}

/// The protocol state of one connection. See the module documentation.
pub(crate) struct Machine {
    phase: Phase,
    /// Hub clock (ms): while in the handshake, when the connection opened (the handshake
    /// timeout counts from there); once open, when the client last sent bytes (the client
    /// timeout counts from there). One field for both keeps idle connections small.
    since: u64,
    transport: Option<TransportKind>,
    /// Stateful reconnect was granted at negotiate; the handshake decides whether it is used.
    stateful_offered: bool,
}

impl Machine {
    /// A connection opened at `now`, waiting for its handshake.
    pub(crate) fn new(now: u64, stateful_offered: bool) -> Self {
        Self {
            phase: Phase::Handshake(Vec::new()),
            since: now,
            transport: None,
            stateful_offered,
        }
    }

    /// A transport started carrying the connection.
    pub(crate) fn on_transport_started(&mut self, kind: TransportKind) {
        self.transport = Some(kind);
    }

    /// Bytes from the client, at `now`.
    pub(crate) fn handle_bytes(
        &mut self,
        now: u64,
        data: &[u8],
        options: &HubOptions,
        out: &mut impl FnMut(Action<'_>),
    ) {
        let closing = match &mut self.phase {
            Phase::Closed => return,
            Phase::Handshake(buffer) => {
                buffer.extend_from_slice(data);
                match accept(buffer, self.transport, self.stateful_offered, options) {
                    Ok(None) => return,
                    Err(refusal) => Some(CloseReason::HandshakeRefused(refusal)),
                    Ok(Some((mut open, consumed))) => {
                        // Hub messages may follow the handshake in the same transport frame.
                        if let Some(rest) = buffer.get(consumed..).filter(|r| !r.is_empty()) {
                            open.reader.push(rest);
                        }
                        out(Action::Opened {
                            protocol: open.reader.protocol(),
                            stateful: open.stateful,
                        });
                        self.since = now;
                        let closing = read_messages(&mut open, out);
                        self.phase = Phase::Open(open);
                        closing
                    }
                }
            }
            Phase::Open(open) => {
                self.since = now;
                open.reader.push(data);
                read_messages(open, out)
            }
        };
        if let Some(reason) = closing {
            self.close(reason, out);
        }
    }

    /// The hub's timer fired at `now`. `last_sent` is when the session last queued a frame
    /// (the session keeps it, because fan-out updates it without taking the machine's lock).
    pub(crate) fn handle_timeout(
        &mut self,
        now: u64,
        last_sent: u64,
        options: &HubOptions,
        out: &mut impl FnMut(Action<'_>),
    ) {
        let open = match &mut self.phase {
            Phase::Closed => return,
            Phase::Handshake(_) => {
                if now.saturating_sub(self.since) > millis(options.handshake_timeout) {
                    self.close(CloseReason::HandshakeTimeout, out);
                }
                return;
            }
            Phase::Open(open) => open,
        };
        // Long polling proves the client is there with every poll; the transport reaps it.
        let inherent = self
            .transport
            .is_some_and(TransportKind::has_inherent_keep_alive);
        if !inherent {
            if now.saturating_sub(self.since) > millis(options.client_timeout) {
                self.close(CloseReason::ClientTimeout, out);
                return;
            }
            if now.saturating_sub(last_sent) >= millis(options.keep_alive_interval) {
                out(Action::Send(Control::Ping));
            }
        }
        // Acknowledged on the timer, not per message, as ASP.NET Core does (its Ack timer
        // ticks every second and sends only when there is something new).
        if open.stateful && open.received > open.acked {
            open.acked = open.received;
            out(Action::Send(Control::Ack(open.received)));
        }
    }

    /// The transport was lost without a close. Returns whether the connection waits for a
    /// stateful reconnect.
    pub(crate) fn on_transport_lost(&self) -> bool {
        matches!(&self.phase, Phase::Open(open) if open.stateful)
    }

    /// A new transport took over after [`Machine::on_transport_lost`].
    pub(crate) fn on_transport_resumed(&mut self, out: &mut impl FnMut(Action<'_>)) {
        if let Phase::Open(open) = &mut self.phase {
            // The client replays what we may not have processed, after a Sequence message
            // telling where it starts; nothing else counts until then.
            open.awaiting_sequence = true;
            out(Action::Replay);
        }
    }

    /// The transport could not read what the client sent.
    pub(crate) fn on_transport_failed(&mut self, error: &str, out: &mut impl FnMut(Action<'_>)) {
        if !matches!(self.phase, Phase::Closed) {
            let reason = CloseReason::Error(SessionError::Transport(error.to_owned()));
            self.close(reason, out);
        }
    }

    /// The connection ended for good: drop whatever is buffered.
    pub(crate) fn on_closed(&mut self) {
        self.phase = Phase::Closed;
    }

    fn close(&mut self, reason: CloseReason, out: &mut impl FnMut(Action<'_>)) {
        self.phase = Phase::Closed;
        out(Action::Close(reason));
    }
}

/// Parses the handshake request at the start of `buffer`, for a connection on `transport`.
/// `Ok(None)`: incomplete.
fn accept(
    buffer: &[u8],
    transport: Option<TransportKind>,
    stateful_offered: bool,
    options: &HubOptions,
) -> Result<Option<(Box<Open>, usize)>, HandshakeRefusal> {
    let max = options.max_message_size;
    let Some((request, consumed)) = handshake::parse_request(buffer, max)? else {
        return Ok(None);
    };
    let Some(protocol) = Protocol::from_name(&request.protocol) else {
        return Err(HandshakeRefusal::UnsupportedProtocol(request.protocol));
    };
    if request.version > MAX_PROTOCOL_VERSION {
        return Err(HandshakeRefusal::UnsupportedVersion {
            protocol,
            version: request.version,
        });
    }
    if protocol == Protocol::MessagePack && transport.is_some_and(|t| !t.supports_binary()) {
        return Err(HandshakeRefusal::BinaryNotSupported(protocol));
    }
    let open = Box::new(Open {
        reader: MessageReader::new(protocol, max),
        // Stateful reconnect needs both: granted at negotiate, and a version-2 handshake.
        stateful: stateful_offered && request.version >= 2,
        awaiting_sequence: false,
        received: 0,
        current: 0,
        acked: 0,
    });
    Ok(Some((open, consumed)))
}

/// Handles every complete message buffered in `open`. Returns why to close, if it must.
fn read_messages(open: &mut Open, out: &mut impl FnMut(Action<'_>)) -> Option<CloseReason> {
    loop {
        let result = match open.reader.next() {
            Ok(None) => return None,
            Ok(Some(DecodedMessage::Json(m))) => on_message(open, m, out),
            Ok(Some(DecodedMessage::MessagePack(m))) => on_message(open, m, out),
            Err(ProtocolError::UnknownMessageType(t)) => {
                // The spec says to ignore message types one does not know (newer clients).
                tracing::debug!(message_type = t, "ignoring unknown message type");
                Ok(())
            }
            Err(e) => Err(CloseReason::Error(e.into())),
        };
        if let Err(reason) = result {
            return Some(reason);
        }
    }
}

fn on_message<V>(
    open: &mut Open,
    message: HubMessage<V>,
    out: &mut impl FnMut(Action<'_>),
) -> Result<(), CloseReason> {
    out(Action::Received(message.type_id()));
    if open.awaiting_sequence {
        if let HubMessage::Sequence { sequence_id } = message {
            if sequence_id > open.received + 1 {
                return Err(CloseReason::Error(SessionError::SequenceAhead));
            }
            open.current = sequence_id.saturating_sub(1);
            open.awaiting_sequence = false;
        }
        return Ok(());
    }
    if message.is_trackable() && open.stateful {
        open.current += 1;
        if open.current <= open.received {
            return Ok(()); // already processed before the reconnect
        }
        open.received = open.current;
    }
    match message {
        HubMessage::Ping => {}
        HubMessage::Close { .. } => return Err(CloseReason::ClientClosed),
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            // Bitwarden's hubs define no client-callable methods: answer as ASP.NET Core does
            // for an unknown method, unless the client asked for no answer.
            if let Some(id) = inv.invocation_id.as_deref() {
                let error = format!("Unknown hub method '{}'", inv.target);
                out(Action::Send(Control::CompletionError {
                    invocation_id: id,
                    error: &error,
                }));
            }
        }
        HubMessage::Ack { sequence_id } => out(Action::Acknowledged(sequence_id)),
        HubMessage::Sequence { .. } => {
            // Only meaningful right after a reconnect, handled above.
        }
        HubMessage::StreamItem { .. }
        | HubMessage::Completion { .. }
        | HubMessage::CancelInvocation { .. } => {
            // No streams or client results are in flight on these hubs.
        }
    }
    Ok(())
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pushwarden_protocol::{json, msgpack, Invocation};

    use super::*;

    /// An action, owned, so that a test can collect and compare them.
    #[derive(Debug, PartialEq)]
    enum Out {
        Opened(Protocol, bool),
        Received(u8),
        Ping,
        Ack(u64),
        Completion { id: String, error: String },
        Acknowledged(u64),
        Replay,
        Close(CloseReason),
    }

    fn record(action: Action<'_>) -> Out {
        match action {
            Action::Opened { protocol, stateful } => Out::Opened(protocol, stateful),
            Action::Received(t) => Out::Received(t),
            Action::Send(Control::Ping) => Out::Ping,
            Action::Send(Control::Ack(id)) => Out::Ack(id),
            Action::Send(Control::CompletionError {
                invocation_id,
                error,
            }) => Out::Completion {
                id: invocation_id.to_owned(),
                error: error.to_owned(),
            },
            Action::Send(other) => panic!("the machine never sends {other:?}"),
            Action::Acknowledged(id) => Out::Acknowledged(id),
            Action::Replay => Out::Replay,
            Action::Close(reason) => Out::Close(reason),
        }
    }

    /// ASP.NET Core's defaults: keep-alive 15 s, client timeout 30 s, handshake timeout 15 s.
    fn options() -> HubOptions {
        HubOptions {
            max_message_size: 1024,
            ..HubOptions::default()
        }
    }

    struct Conn {
        machine: Machine,
        options: HubOptions,
    }

    impl Conn {
        /// A connection opened at `now` on `transport`.
        fn new(now: u64, transport: TransportKind, stateful_offered: bool) -> Self {
            let mut machine = Machine::new(now, stateful_offered);
            machine.on_transport_started(transport);
            Self {
                machine,
                options: options(),
            }
        }

        /// A WebSocket connection whose `version` handshake completed at `now`.
        fn open(now: u64, protocol: Protocol, version: u32, stateful_offered: bool) -> Self {
            let mut conn = Self::new(now, TransportKind::WebSockets, stateful_offered);
            let opened = conn.bytes(now, &handshake::encode_request(protocol.name(), version));
            assert_eq!(
                opened,
                [Out::Opened(protocol, stateful_offered && version == 2)]
            );
            conn
        }

        fn bytes(&mut self, now: u64, data: &[u8]) -> Vec<Out> {
            let mut out = Vec::new();
            self.machine
                .handle_bytes(now, data, &self.options, &mut |a| out.push(record(a)));
            out
        }

        fn timer(&mut self, now: u64, last_sent: u64) -> Vec<Out> {
            let mut out = Vec::new();
            self.machine
                .handle_timeout(now, last_sent, &self.options, &mut |a| out.push(record(a)));
            out
        }

        fn resumed(&mut self) -> Vec<Out> {
            let mut out = Vec::new();
            self.machine
                .on_transport_resumed(&mut |a| out.push(record(a)));
            out
        }

        fn failed(&mut self, error: &str) -> Vec<Out> {
            let mut out = Vec::new();
            self.machine
                .on_transport_failed(error, &mut |a| out.push(record(a)));
            out
        }

        /// Nothing the client sends or the timer does has any effect any more.
        fn assert_closed(&mut self) {
            let handshake = handshake::encode_request("json", 1);
            assert_eq!(self.bytes(1_000_000, &handshake), []);
            assert_eq!(self.bytes(1_000_000, &frame(&HubMessage::Ping)), []);
            assert_eq!(self.timer(1_000_000, 0), []);
            assert!(!self.machine.on_transport_lost());
        }
    }

    fn frame(message: &HubMessage<serde_json::Value>) -> Vec<u8> {
        let mut out = Vec::new();
        json::encode(message, &mut out);
        out
    }

    fn frames(messages: &[HubMessage<serde_json::Value>]) -> Vec<u8> {
        messages.iter().flat_map(frame).collect()
    }

    fn invocation<V>(id: Option<&str>, target: &str) -> HubMessage<V> {
        HubMessage::Invocation(Invocation {
            headers: Vec::new(),
            invocation_id: id.map(str::to_owned),
            target: target.to_owned(),
            arguments: Vec::new(),
            stream_ids: Vec::new(),
        })
    }

    fn unknown_method(id: &str, target: &str) -> Out {
        Out::Completion {
            id: id.to_owned(),
            error: format!("Unknown hub method '{target}'"),
        }
    }

    const INVOCATION: u8 = 1;
    const PING: u8 = 6;
    const CLOSE: u8 = 7;
    const ACK: u8 = 8;
    const SEQUENCE: u8 = 9;

    #[test]
    fn the_handshake_opens_and_messages_in_the_same_frame_are_read() {
        let mut conn = Conn::new(0, TransportKind::WebSockets, false);
        let mut data = handshake::encode_request("json", 1);
        data.extend(frame(&HubMessage::Ping));
        assert_eq!(
            conn.bytes(5, &data),
            [Out::Opened(Protocol::Json, false), Out::Received(PING)]
        );
    }

    #[test]
    fn the_handshake_and_messages_may_arrive_in_pieces() {
        let mut conn = Conn::new(0, TransportKind::LongPolling, false);
        let handshake = handshake::encode_request("messagepack", 1);
        let (a, b) = handshake.split_at(7);
        assert_eq!(conn.bytes(1, a), []);
        assert_eq!(
            conn.bytes(2, b),
            [Out::Opened(Protocol::MessagePack, false)]
        );
        let mut ping = Vec::new();
        msgpack::encode(&HubMessage::<rmpv::Value>::Ping, &mut ping);
        let (a, b) = ping.split_at(1);
        assert_eq!(conn.bytes(3, a), []);
        assert_eq!(conn.bytes(4, b), [Out::Received(PING)]);
    }

    #[test]
    fn bad_handshakes_are_refused_with_asp_net_core_texts_then_ignored() {
        let too_long = "{".repeat(2000);
        let cases: [(TransportKind, &[u8], &str); 6] = [
            (
                TransportKind::WebSockets,
                b"{\"protocol\":\"foo\",\"version\":1}\x1e",
                "The protocol 'foo' is not supported.",
            ),
            (
                TransportKind::WebSockets,
                b"{\"protocol\":\"json\",\"version\":99}\x1e",
                "The server does not support version 99 of the 'json' protocol.",
            ),
            (
                TransportKind::ServerSentEvents,
                b"{\"protocol\":\"messagepack\",\"version\":1}\x1e",
                "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format.",
            ),
            (
                TransportKind::WebSockets,
                b"{\"protocol\":\"json\"}\x1e",
                "Missing required property 'version' in the handshake.",
            ),
            (
                TransportKind::WebSockets,
                &[0x02, 0x91, 0x06],
                "Invalid handshake: the first message must be the JSON handshake request",
            ),
            (
                TransportKind::WebSockets,
                too_long.as_bytes(),
                "The handshake exceeded the maximum size of 1024 bytes.",
            ),
        ];
        for (transport, data, text) in cases {
            let mut conn = Conn::new(0, transport, true);
            let out = conn.bytes(1, data);
            let [Out::Close(CloseReason::HandshakeRefused(refusal))] = &out[..] else {
                panic!("{text}: {out:?}");
            };
            assert_eq!(refusal.to_string(), text);
            let reason = CloseReason::HandshakeRefused(refusal.clone());
            // The handshake response carries the error; no Close message follows it, and
            // nothing queued before it is dropped.
            assert_eq!(reason.close_message(), None, "{text}");
            assert!(!reason.discards_queued(), "{text}");
            conn.assert_closed();
        }
    }

    #[test]
    fn a_handshake_not_completed_in_time_is_closed_by_the_given_clock() {
        let mut conn = Conn::new(1_000, TransportKind::WebSockets, false);
        // Part of a handshake does not postpone the timeout.
        assert_eq!(conn.bytes(10_000, b"{\"protocol\""), []);
        assert_eq!(conn.timer(16_000, 0), []);
        assert_eq!(
            conn.timer(16_001, 0),
            [Out::Close(CloseReason::HandshakeTimeout)]
        );
        assert_eq!(CloseReason::HandshakeTimeout.close_message(), None);
        assert!(CloseReason::HandshakeTimeout.discards_queued());
        conn.assert_closed();
    }

    #[test]
    fn a_quiet_connection_is_pinged_by_the_given_clock() {
        let mut conn = Conn::open(0, Protocol::Json, 1, false);
        // Nothing sent since the handshake's answer at 0.
        assert_eq!(conn.timer(14_999, 0), []);
        assert_eq!(conn.timer(15_000, 0), [Out::Ping]);
        // The client keeps talking; what was sent last decides the next Ping.
        assert_eq!(
            conn.bytes(20_000, &frame(&HubMessage::Ping)),
            [Out::Received(PING)]
        );
        assert_eq!(conn.timer(29_999, 15_000), []);
        assert_eq!(conn.timer(30_000, 15_000), [Out::Ping]);
        // A delivery at 40,000 postpones the Ping to 55,000.
        assert_eq!(
            conn.bytes(45_000, &frame(&HubMessage::Ping)),
            [Out::Received(PING)]
        );
        assert_eq!(conn.timer(54_999, 40_000), []);
        assert_eq!(conn.timer(55_000, 40_000), [Out::Ping]);
    }

    #[test]
    fn a_silent_client_times_out_and_what_it_sends_postpones_that() {
        let mut conn = Conn::open(0, Protocol::MessagePack, 1, false);
        let mut ping = Vec::new();
        msgpack::encode(&HubMessage::<rmpv::Value>::Ping, &mut ping);
        assert_eq!(conn.bytes(20_000, &ping), [Out::Received(PING)]);
        // Pings from the server do not keep the client alive.
        assert_eq!(conn.timer(50_000, 49_000), []);
        assert_eq!(
            conn.timer(50_001, 49_000),
            [Out::Close(CloseReason::ClientTimeout)]
        );
        assert_eq!(
            CloseReason::ClientTimeout.close_message(),
            Some(CloseMessage {
                error: Some(
                    "Client timeout elapsed without receiving a message from the client.".into()
                ),
                allow_reconnect: true,
            })
        );
        assert!(CloseReason::ClientTimeout.discards_queued());
        conn.assert_closed();
    }

    #[test]
    fn long_polling_is_neither_pinged_nor_timed_out() {
        let mut conn = Conn::new(0, TransportKind::LongPolling, false);
        let opened = conn.bytes(0, &handshake::encode_request("json", 1));
        assert_eq!(opened, [Out::Opened(Protocol::Json, false)]);
        assert_eq!(conn.timer(10_000_000, 0), []);
    }

    #[test]
    fn stateful_reconnect_needs_the_offer_and_a_version_2_handshake() {
        for (offered, version, stateful) in [
            (true, 2, true),
            (true, 1, false),
            (false, 2, false),
            (false, 1, false),
        ] {
            let mut conn = Conn::new(0, TransportKind::WebSockets, offered);
            assert!(!conn.machine.on_transport_lost(), "not open yet");
            let opened = conn.bytes(0, &handshake::encode_request("json", version));
            assert_eq!(opened, [Out::Opened(Protocol::Json, stateful)]);
            assert_eq!(conn.machine.on_transport_lost(), stateful);
        }
    }

    #[test]
    fn processed_messages_are_acked_on_the_timer_once() {
        let mut conn = Conn::open(0, Protocol::Json, 2, true);
        let two = frames(&[invocation(None, "A"), invocation(None, "B")]);
        assert_eq!(
            conn.bytes(1, &two),
            [Out::Received(INVOCATION), Out::Received(INVOCATION)]
        );
        assert_eq!(conn.timer(2, 2), [Out::Ack(2)]);
        assert_eq!(conn.timer(3, 3), [], "nothing new to acknowledge");
        // Ping, Ack and Sequence do not count.
        let untracked = frames(&[HubMessage::Ping, HubMessage::Ack { sequence_id: 0 }]);
        conn.bytes(4, &untracked);
        assert_eq!(conn.timer(5, 5), []);
        assert_eq!(conn.bytes(6, &frame(&invocation(None, "C"))).len(), 1);
        assert_eq!(conn.timer(7, 7), [Out::Ack(3)]);

        // Without stateful reconnect there is nothing to acknowledge.
        let mut plain = Conn::open(0, Protocol::Json, 2, false);
        plain.bytes(1, &two);
        assert_eq!(plain.timer(2, 2), []);
    }

    #[test]
    fn the_clients_acks_release_our_frames() {
        let mut conn = Conn::open(0, Protocol::Json, 2, true);
        assert_eq!(
            conn.bytes(1, &frame(&HubMessage::Ack { sequence_id: 5 })),
            [Out::Received(ACK), Out::Acknowledged(5)]
        );
    }

    #[test]
    fn after_a_reconnect_the_replay_is_processed_once() {
        let mut conn = Conn::open(0, Protocol::Json, 2, true);
        let first_two = frames(&[invocation(Some("1"), "M"), invocation(Some("2"), "M")]);
        assert_eq!(
            conn.bytes(1, &first_two),
            [
                Out::Received(INVOCATION),
                unknown_method("1", "M"),
                Out::Received(INVOCATION),
                unknown_method("2", "M"),
            ]
        );
        assert!(conn.machine.on_transport_lost());
        assert_eq!(conn.resumed(), [Out::Replay]);
        // Nothing counts before the client's Sequence message.
        assert_eq!(
            conn.bytes(2, &frame(&invocation(Some("early"), "M"))),
            [Out::Received(INVOCATION)]
        );
        // The client replays from 1: messages 1 and 2 were processed already, 3 is new.
        let mut replay = frame(&HubMessage::Sequence { sequence_id: 1 });
        replay.extend(first_two);
        replay.extend(frame(&invocation(Some("3"), "M")));
        assert_eq!(
            conn.bytes(3, &replay),
            [
                Out::Received(SEQUENCE),
                Out::Received(INVOCATION),
                Out::Received(INVOCATION),
                Out::Received(INVOCATION),
                unknown_method("3", "M"),
            ]
        );
        assert_eq!(conn.timer(4, 4), [Out::Ack(3)]);
        // The Sequence may also start right after what we processed.
        assert_eq!(conn.resumed(), [Out::Replay]);
        let mut next = frame(&HubMessage::Sequence { sequence_id: 4 });
        next.extend(frame(&invocation(Some("4"), "M")));
        assert_eq!(
            conn.bytes(5, &next),
            [
                Out::Received(SEQUENCE),
                Out::Received(INVOCATION),
                unknown_method("4", "M"),
            ]
        );
    }

    #[test]
    fn a_sequence_past_what_was_received_closes_with_an_error() {
        let mut conn = Conn::open(0, Protocol::Json, 2, true);
        conn.bytes(1, &frame(&invocation(None, "M")));
        assert_eq!(conn.resumed(), [Out::Replay]);
        let reason = CloseReason::Error(SessionError::SequenceAhead);
        assert_eq!(
            conn.bytes(2, &frame(&HubMessage::Sequence { sequence_id: 3 })),
            [Out::Received(SEQUENCE), Out::Close(reason.clone())]
        );
        assert_eq!(
            reason.close_message(),
            Some(CloseMessage {
                error: Some("Connection closed with an error. Sequence ID greater than amount of messages we've received.".into()),
                allow_reconnect: false,
            })
        );
        assert!(!reason.discards_queued());
        conn.assert_closed();
    }

    #[test]
    fn a_resume_before_the_handshake_replays_nothing() {
        let mut conn = Conn::new(0, TransportKind::WebSockets, true);
        assert_eq!(conn.resumed(), []);
    }

    #[test]
    fn unknown_methods_are_answered_unless_the_call_is_non_blocking() {
        let mut conn = Conn::open(0, Protocol::Json, 1, false);
        let stream = HubMessage::StreamInvocation(Invocation {
            headers: Vec::new(),
            invocation_id: Some("s".into()),
            target: "Stream".into(),
            arguments: Vec::new(),
            stream_ids: Vec::new(),
        });
        let data = frames(&[
            invocation(Some("7"), "Foo"),
            invocation(None, "Bar"),
            stream,
        ]);
        assert_eq!(
            conn.bytes(1, &data),
            [
                Out::Received(INVOCATION),
                unknown_method("7", "Foo"),
                Out::Received(INVOCATION),
                Out::Received(4),
                unknown_method("s", "Stream"),
            ]
        );
        // The answer counts in stateful reconnect's sequence; our own Ping and Ack do not.
        let answer = Control::CompletionError {
            invocation_id: "7",
            error: "e",
        };
        assert!(answer.is_trackable());
        assert!(!Control::Ping.is_trackable());
        assert!(!Control::Ack(1).is_trackable());

        let mut conn = Conn::open(0, Protocol::MessagePack, 1, false);
        let mut data = Vec::new();
        msgpack::encode(&invocation::<rmpv::Value>(Some("9"), "Baz"), &mut data);
        assert_eq!(
            conn.bytes(1, &data),
            [Out::Received(INVOCATION), unknown_method("9", "Baz")]
        );
    }

    #[test]
    fn unknown_message_types_are_skipped() {
        let mut conn = Conn::open(0, Protocol::Json, 1, false);
        let mut data = b"{\"type\":42}\x1e".to_vec();
        data.extend(frame(&HubMessage::Ping));
        assert_eq!(conn.bytes(1, &data), [Out::Received(PING)]);
    }

    #[test]
    fn malformed_or_oversized_messages_close_with_an_error() {
        let oversized = format!("{{\"type\":1,\"target\":\"{}\"}}\x1e", "x".repeat(2000));
        let cases: [(&[u8], &str); 3] = [
            (b"{\"type\":1}\x1e", "Missing required property 'target'."),
            (b"not json\x1e", "Invalid message: "),
            (
                oversized.as_bytes(),
                "The maximum message size of 1024 bytes was exceeded.",
            ),
        ];
        for (data, text) in cases {
            let mut conn = Conn::open(0, Protocol::Json, 1, false);
            let out = conn.bytes(1, data);
            let [Out::Close(reason @ CloseReason::Error(SessionError::Protocol(_)))] = &out[..]
            else {
                panic!("{text}: {out:?}");
            };
            let message = reason.close_message().expect("a Close message");
            let error = message.error.expect("with an error");
            assert!(
                error.starts_with(&format!("Connection closed with an error. {text}")),
                "{error}"
            );
            assert!(!message.allow_reconnect);
            assert!(!reason.discards_queued(), "queued frames are still written");
            conn.assert_closed();
        }
    }

    #[test]
    fn a_client_close_ends_the_connection_without_an_answer() {
        let mut conn = Conn::open(0, Protocol::Json, 1, false);
        let data = frames(&[
            HubMessage::Close {
                error: None,
                allow_reconnect: false,
            },
            invocation(Some("1"), "After"),
        ]);
        assert_eq!(
            conn.bytes(1, &data),
            [Out::Received(CLOSE), Out::Close(CloseReason::ClientClosed)],
            "nothing after the Close is processed"
        );
        assert_eq!(CloseReason::ClientClosed.close_message(), None);
        assert!(CloseReason::ClientClosed.discards_queued());
        conn.assert_closed();
    }

    #[test]
    fn a_transport_failure_closes_with_its_reason_once() {
        let mut conn = Conn::open(0, Protocol::Json, 1, false);
        let reason = CloseReason::Error(SessionError::Transport("Frame too large.".into()));
        assert_eq!(
            conn.failed("Frame too large."),
            [Out::Close(reason.clone())]
        );
        assert_eq!(
            reason.to_string(),
            "Connection closed with an error. Frame too large."
        );
        assert_eq!(conn.failed("again"), []);
        conn.assert_closed();
    }

    #[test]
    fn close_reasons_from_outside_the_machine_say_what_they_did_before() {
        assert_eq!(
            CloseReason::QueueFull.close_message(),
            Some(CloseMessage {
                error: Some("Outgoing message queue full: the client is not reading.".into()),
                allow_reconnect: true,
            })
        );
        assert!(CloseReason::QueueFull.discards_queued());
        for allow_reconnect in [true, false] {
            let shutdown = CloseReason::Shutdown { allow_reconnect };
            assert_eq!(
                shutdown.close_message(),
                Some(CloseMessage {
                    error: None,
                    allow_reconnect,
                })
            );
            assert!(
                !shutdown.discards_queued(),
                "queued frames are still written"
            );
        }
    }

    #[test]
    fn a_closed_connection_drops_its_buffers_and_ignores_everything() {
        let mut conn = Conn::open(0, Protocol::Json, 2, true);
        conn.bytes(1, b"{\"type\":1,");
        conn.machine.on_closed();
        assert_eq!(conn.resumed(), []);
        conn.assert_closed();
    }

    /// Every idle connection holds a machine inline, and an open one a boxed `Open`: they
    /// are part of the memory per connection (see BENCHMARKS.md), so they must not grow.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_state_stays_small() {
        assert!(std::mem::size_of::<Machine>() <= 40);
        assert!(std::mem::size_of::<Open>() <= 88);
        // Unused today, but a timer in milliseconds must not overflow.
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
