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
    /// A version newer than [`MAX_PROTOCOL_VERSION`].
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

