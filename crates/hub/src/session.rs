//! One client connection as the hub sees it: handshake, incoming hub messages, keep-alive
//! timers, stateful-reconnect sequence numbers, and delivery into its outbox.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use pushwarden_protocol::{
    handshake, DecodedMessage, HubMessage, MessageReader, Protocol, ProtocolError,
};
use pushwarden_transport::{Outbox, PushError, Session, TransportKind};

use crate::hub::{Hub, Membership};
use crate::identity::Identity;
use crate::message::{encode_control, Control, SerializedMessage};

/// Newest hub protocol version we speak (2 adds stateful reconnect), for JSON and MessagePack.
const MAX_PROTOCOL_VERSION: u32 = 2;

enum Phase {
    /// Collecting the handshake request.
    Handshake(Vec<u8>),
    Open(Box<OpenState>),
    Closed,
}

struct OpenState {
    reader: MessageReader,
    /// Highest client sequence id processed (stateful reconnect).
    received: u64,
    /// Sequence id of the last trackable message read, which may be a duplicate after a
    /// reconnect.
    current: u64,
    /// After a reconnect nothing is processed until the client's Sequence message.
    awaiting_sequence: bool,
    /// Highest sequence id we told the client we received.
    acked: u64,
}

pub struct HubSession {
    pub(crate) id: u64,
    /// This session, for registering itself in the hub's user and group maps.
    me: std::sync::Weak<HubSession>,
    /// Serializes joining and leaving the hub's maps (see `Hub::joined`).
    pub(crate) membership: Mutex<Membership>,
    connection_id: Option<Arc<str>>,
    hub: Arc<Hub>,
    pub(crate) identity: Identity,
    outbox: Outbox,
    phase: Mutex<Phase>,
    /// 0 = handshake not done, else 1 + protocol index.
    protocol: AtomicU8,
    /// 0 = not started, else 1 + transport index.
    transport: AtomicU8,
    stateful_offered: bool,
    stateful: AtomicBool,
    pub(crate) opened_at: u64,
    /// Hub clock (ms) of the last bytes from the client.
    last_received: AtomicU64,
    /// Hub clock (ms) of the last frame queued to the client.
    last_sent: AtomicU64,
}

impl HubSession {
    pub(crate) fn new(
        id: u64,
        connection_id: Option<Arc<str>>,
        hub: Arc<Hub>,
        identity: Identity,
        stateful_offered: bool,
    ) -> Arc<Self> {
        let now = hub.now_ms();
        let outbox = Outbox::new(hub.outbox_limits());
        Arc::new_cyclic(|me| Self {
            id,
            me: me.clone(),
            membership: Mutex::new(Membership::default()),
            connection_id,
            hub,
            identity,
            outbox,
            phase: Mutex::new(Phase::Handshake(Vec::new())),
            protocol: AtomicU8::new(0),
            transport: AtomicU8::new(0),
            stateful_offered,
            stateful: AtomicBool::new(false),
            opened_at: now,
            last_received: AtomicU64::new(now),
            last_sent: AtomicU64::new(now),
        })
    }

    /// Negotiate's connection id, when the connection was negotiated.
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    /// The hub protocol chosen at handshake, if it is done.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.protocol.load(Ordering::Acquire) {
            1 => Some(Protocol::Json),
            2 => Some(Protocol::MessagePack),
            _ => None,
        }
    }

    pub fn transport(&self) -> Option<TransportKind> {
        match self.transport.load(Ordering::Acquire) {
            1 => Some(TransportKind::WebSockets),
            2 => Some(TransportKind::ServerSentEvents),
            3 => Some(TransportKind::LongPolling),
            _ => None,
        }
    }

    /// Queues a message for the client. Returns whether it was queued. A full queue closes the
    /// connection: a client that does not read must not make the server buffer without bound.
    pub fn deliver(&self, message: &SerializedMessage) -> bool {
        let Some(protocol) = self.protocol() else {
            return false;
        };
        self.push(message.bytes(protocol).clone(), true)
    }

    fn push(&self, bytes: Bytes, tracked: bool) -> bool {
        match self.outbox.push(bytes, tracked) {
            Ok(()) => {
                self.last_sent.store(self.hub.now_ms(), Ordering::Relaxed);
                true
            }
            Err(PushError::Closed) => false,
            Err(PushError::Overflow) => {
                self.hub.metrics().queue_overflow();
                tracing::warn!(
                    hub = self.hub.name(),
                    connection = self.id,
                    queued_bytes = self.outbox.queued_bytes(),
                    "closing a connection whose client does not keep up"
                );
                self.close(
                    Some("Outgoing message queue full: the client is not reading."),
                    true,
                    true,
                );
                false
            }
        }
    }

    fn push_control(&self, protocol: Protocol, control: Control<'_>) {
        // A Completion counts in stateful reconnect's sequence; Ping, Ack and Sequence do not.
        let tracked = matches!(control, Control::CompletionError { .. });
        self.push(encode_control(protocol, control), tracked);
    }

    /// Closes the connection, telling the client why when the handshake is done.
    pub fn close(&self, error: Option<&str>, allow_reconnect: bool, discard_queued: bool) {
        let last = self.protocol().map(|p| {
            encode_control(
                p,
                Control::Close {
                    error,
                    allow_reconnect,
                },
            )
        });
        self.outbox.close(last, discard_queued);
    }

    /// Called by the hub's timer. `now` is the hub clock in milliseconds.
    pub(crate) fn tick(&self, now: u64) {
        if self.outbox.is_closing() {
            return;
        }
        let options = self.hub.options();
        let Some(protocol) = self.protocol() else {
            if now.saturating_sub(self.opened_at) > options.handshake_timeout.as_millis() as u64 {
                self.hub.metrics().handshake_failed("timeout");
                self.close(None, false, true);
            }
            return;
        };
        let inherent = self
            .transport()
            .is_some_and(TransportKind::has_inherent_keep_alive);
        if !inherent {
            let silent = now.saturating_sub(self.last_received.load(Ordering::Relaxed));
            if silent > options.client_timeout.as_millis() as u64 {
                self.hub.metrics().client_timeout();
                self.close(
                    Some("Client timeout elapsed without receiving a message from the client."),
                    true,
                    true,
                );
                return;
            }
            let quiet = now.saturating_sub(self.last_sent.load(Ordering::Relaxed));
            if quiet >= options.keep_alive_interval.as_millis() as u64 {
                self.push(self.hub.ping_frame(protocol).clone(), false);
            }
        }
        if self.stateful.load(Ordering::Relaxed) {
            let ack = {
                let mut phase = self.phase.lock();
                match &mut *phase {
                    Phase::Open(open) if open.received > open.acked => {
                        open.acked = open.received;
                        Some(open.received)
                    }
                    _ => None,
                }
            };
            if let Some(id) = ack {
                self.push_control(protocol, Control::Ack(id));
            }
        }
    }

    fn process_handshake(&self, buffer: &[u8]) -> Result<Option<(Box<OpenState>, usize)>, String> {
        let max = self.hub.options().max_message_size;
        let (request, consumed) = match handshake::parse_request(buffer, max) {
            Ok(None) => return Ok(None),
            Ok(Some(parsed)) => parsed,
            Err(e) => return Err(e.to_string()),
        };
        let Some(protocol) = Protocol::from_name(&request.protocol) else {
            return Err(format!(
                "The protocol '{}' is not supported.",
                request.protocol
            ));
        };
        if request.version > MAX_PROTOCOL_VERSION {
            return Err(format!(
                "The server does not support version {} of the '{}' protocol.",
                request.version, request.protocol
            ));
        }
        if protocol == Protocol::MessagePack
            && self.transport().is_some_and(|t| !t.supports_binary())
        {
            return Err(format!(
                "Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.",
                request.protocol
            ));
        }
        // Stateful reconnect needs both: granted at negotiate, and a version-2 handshake.
        let stateful = self.stateful_offered && request.version >= 2;
        self.outbox.set_format(protocol.transfer_format());
        self.outbox.set_retain(stateful);
        self.stateful.store(stateful, Ordering::Relaxed);
        self.protocol.store(
            match protocol {
                Protocol::Json => 1,
                Protocol::MessagePack => 2,
            },
            Ordering::Release,
        );
        self.push(Bytes::from(handshake::encode_response(None)), false);
        let open = Box::new(OpenState {
            reader: MessageReader::new(protocol, max),
            received: 0,
            current: 0,
            awaiting_sequence: false,
            acked: 0,
        });
        Ok(Some((open, consumed)))
    }

    /// Handles every complete message buffered in `open`.
    fn process_messages(&self, open: &mut OpenState, protocol: Protocol) -> Result<(), String> {
        loop {
            let message = match open.reader.next() {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(ProtocolError::UnknownMessageType(t)) => {
                    // Newer clients may send types we do not know; the spec says to ignore them.
                    tracing::debug!(message_type = t, "ignoring unknown message type");
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            match message {
                DecodedMessage::Json(m) => self.handle(open, protocol, m)?,
                DecodedMessage::MessagePack(m) => self.handle(open, protocol, m)?,
            }
        }
    }

    fn handle<V>(
        &self,
        open: &mut OpenState,
        protocol: Protocol,
        message: HubMessage<V>,
    ) -> Result<(), String> {
        self.hub.metrics().message_received(message.type_id());
        if open.awaiting_sequence {
            if let HubMessage::Sequence { sequence_id } = message {
                if sequence_id > open.received + 1 {
                    return Err(
                        "Sequence ID greater than amount of messages we've received.".into(),
                    );
                }
                open.current = sequence_id.saturating_sub(1);
                open.awaiting_sequence = false;
            }
            return Ok(());
        }
        if message.is_trackable() && self.stateful.load(Ordering::Relaxed) {
            open.current += 1;
            if open.current <= open.received {
                return Ok(()); // already processed before the reconnect
            }
            open.received = open.current;
        }
        match message {
            HubMessage::Ping => {}
            HubMessage::Close { .. } => {
                // The client is leaving; nothing more to send it.
                self.outbox.close(None, true);
            }
            HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
                // Bitwarden's hubs define no client-callable methods: answer as ASP.NET Core
                // does for an unknown method, unless the client asked for no answer.
                if let Some(id) = inv.invocation_id.as_deref() {
                    let error = format!("Unknown hub method '{}'", inv.target);
                    self.push_control(
                        protocol,
                        Control::CompletionError {
                            invocation_id: id,
                            error: &error,
                        },
                    );
                }
            }
            HubMessage::Ack { sequence_id } => self.outbox.ack(sequence_id),
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

    fn fail(&self, reason: &'static str, message: &str) {
        tracing::debug!(
            hub = self.hub.name(),
            connection = self.id,
            reason,
            message,
            "closing connection"
        );
        self.close(
            Some(&format!("Connection closed with an error. {message}")),
            false,
            false,
        );
    }
}

impl Session for HubSession {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn transport_started(&self, kind: TransportKind) {
        let v = match kind {
            TransportKind::WebSockets => 1,
            TransportKind::ServerSentEvents => 2,
            TransportKind::LongPolling => 3,
        };
        self.transport.store(v, Ordering::Release);
    }

    fn receive(&self, data: &[u8]) {
        self.last_received
            .store(self.hub.now_ms(), Ordering::Relaxed);
        if self.receive_locked(data) {
            // Joined outside the phase lock: the hub's maps are never locked inside it.
            if let Some(me) = self.me.upgrade() {
                self.hub.joined(&me);
            }
        }
    }

    fn transport_failed(&self, error: &str) {
        self.hub.metrics().protocol_error();
        self.fail("transport", error);
    }

    fn transport_lost(&self) -> bool {
        self.stateful.load(Ordering::Relaxed) && !self.outbox.is_closing()
    }

    fn transport_resumed(&self) {
        let Some(protocol) = self.protocol() else {
            return;
        };
        if let Phase::Open(open) = &mut *self.phase.lock() {
            open.awaiting_sequence = true;
        }
        self.outbox
            .rewind(|first| encode_control(protocol, Control::Sequence(first)));
        self.hub.metrics().reconnected();
    }

    fn closed(&self) {
        *self.phase.lock() = Phase::Closed;
        self.hub.left(self);
    }
}

impl HubSession {
    /// Handles received bytes under the phase lock. Returns true when the handshake just
    /// completed, so that the caller joins the hub's user and group maps.
    fn receive_locked(&self, data: &[u8]) -> bool {
        let mut phase = self.phase.lock();
        let mut handshake_done = false;
        match &mut *phase {
            Phase::Closed => {}
            Phase::Handshake(buffer) => {
                buffer.extend_from_slice(data);
                match self.process_handshake(buffer) {
                    Ok(None) => {}
                    Ok(Some((mut open, consumed))) => {
                        let rest = buffer.split_off(consumed.min(buffer.len()));
                        let protocol = self.protocol();
                        handshake_done = true;
                        let result = match protocol {
                            Some(p) if !rest.is_empty() => {
                                open.reader.push(&rest);
                                self.process_messages(&mut open, p)
                            }
                            _ => Ok(()),
                        };
                        *phase = Phase::Open(open);
                        if let Err(e) = result {
                            *phase = Phase::Closed;
                            drop(phase);
                            self.hub.metrics().protocol_error();
                            self.fail("protocol", &e);
                        }
                    }
                    Err(error) => {
                        *phase = Phase::Closed;
                        drop(phase);
                        self.hub.metrics().handshake_failed("invalid");
                        tracing::debug!(hub = self.hub.name(), %error, "handshake refused");
                        self.push(Bytes::from(handshake::encode_response(Some(&error))), false);
                        self.outbox.close(None, false);
                    }
                }
            }
            Phase::Open(open) => {
                let Some(protocol) = self.protocol() else {
                    return false;
                };
                open.reader.push(data);
                if let Err(e) = self.process_messages(open, protocol) {
                    *phase = Phase::Closed;
                    drop(phase);
                    self.hub.metrics().protocol_error();
                    self.fail("protocol", &e);
                }
            }
        }
        handshake_done
    }
}
