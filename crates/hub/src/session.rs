//! One client connection as the hub sees it: the I/O around its `Machine`.
//!
//! The machine decides (handshake, keep-alive, client timeout, stateful reconnect, answers to
//! invocations, when to close and why); this file applies its actions: frames into the
//! outbox, metrics, joining the hub's user and group maps. It also delivers fan-out messages,
//! which need no decision beyond the protocol chosen at handshake, so they take no lock but
//! the outbox's.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use pushwarden_protocol::{handshake, Protocol};
use pushwarden_transport::{Outbox, PushError, Session, TransportKind};

use crate::hub::{Hub, Membership};
use crate::identity::Identity;
use crate::machine::{Action, CloseReason, Machine};
use crate::message::{encode_control, Control, SerializedMessage};

/// The handshake response that accepts a connection (`{}` and the record separator).
const HANDSHAKE_OK: &[u8] = b"{}\x1e";

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
    /// Never locked inside the hub's maps, nor are they locked inside it; the outbox's lock
    /// may be taken inside it.
    machine: Mutex<Machine>,
    /// The protocol chosen at handshake, for readers that take no lock (fan-out):
    /// 0 = handshake not done, else 1 + protocol index.
    protocol: AtomicU8,
    /// The transport, for readers that take no lock (metrics labels):
    /// 0 = not started, else 1 + transport index.
    transport: AtomicU8,
    /// Hub clock (ms) of the last frame queued to the client. Kept outside the machine:
    /// every delivery updates it, and deliveries take no lock but the outbox's.
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
            machine: Mutex::new(Machine::new(now, stateful_offered)),
            protocol: AtomicU8::new(0),
            transport: AtomicU8::new(0),
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
                tracing::warn!(
                    hub = self.hub.name(),
                    connection = self.id,
                    queued_bytes = self.outbox.queued_bytes(),
                    "closing a connection whose client does not keep up"
                );
                self.close(CloseReason::QueueFull);
                false
            }
        }
    }

    /// Closes the connection, telling the client why when the handshake is done and the
    /// reason calls for a Close message.
    ///
    /// Does not go through the machine: this is called while it is locked (a push that
    /// overflows). The machine learns nothing it needs: once the outbox is closing, the
    /// timer leaves the connection alone and whatever else the machine asks for is refused
    /// by the outbox.
    pub fn close(&self, reason: CloseReason) {
        match &reason {
            CloseReason::HandshakeTimeout => self.hub.metrics().handshake_failed("timeout"),
            CloseReason::HandshakeRefused(_) => self.hub.metrics().handshake_failed("invalid"),
            CloseReason::ClientTimeout => self.hub.metrics().client_timeout(),
            CloseReason::QueueFull => self.hub.metrics().queue_overflow(),
            CloseReason::Error(_) => self.hub.metrics().protocol_error(),
            CloseReason::ClientClosed | CloseReason::Shutdown { .. } => {}
        }
        tracing::debug!(
            hub = self.hub.name(),
            connection = self.id,
            %reason,
            "closing connection"
        );
        if let CloseReason::HandshakeRefused(refusal) = &reason {
            let response = handshake::encode_response(Some(&refusal.to_string()));
            self.push(Bytes::from(response), false);
        }
        let last = match (reason.close_message(), self.protocol()) {
            (Some(message), Some(protocol)) => Some(encode_control(
                protocol,
                Control::Close {
                    error: message.error.as_deref(),
                    allow_reconnect: message.allow_reconnect,
                },
            )),
            _ => None,
        };
        self.outbox.close(last, reason.discards_queued());
    }

    /// Called by the hub's timer. `now` is the hub clock in milliseconds.
    pub(crate) fn tick(&self, now: u64) {
        if self.outbox.is_closing() {
            return;
        }
        let last_sent = self.last_sent.load(Ordering::Relaxed);
        self.machine
            .lock()
            .handle_timeout(now, last_sent, self.hub.options(), &mut |action| {
                self.apply(action);
            });
    }

    /// Applies one action of the machine (which may be locked: see the field's comment).
    /// Returns true when the handshake completed, so that the caller joins the hub's maps
    /// once the machine is unlocked.
    fn apply(&self, action: Action<'_>) -> bool {
        match action {
            Action::Opened { protocol, stateful } => {
                self.outbox.set_format(protocol.transfer_format());
                self.outbox.set_retain(stateful);
                self.protocol.store(
                    match protocol {
                        Protocol::Json => 1,
                        Protocol::MessagePack => 2,
                    },
                    Ordering::Release,
                );
                self.push(Bytes::from_static(HANDSHAKE_OK), false);
                return true;
            }
            Action::Received(message_type) => self.hub.metrics().message_received(message_type),
            Action::Send(control) => {
                if let Some(protocol) = self.protocol() {
                    let frame = match control {
                        // Every connection of a protocol shares one encoded Ping.
                        Control::Ping => self.hub.ping_frame(protocol).clone(),
                        other => encode_control(protocol, other),
                    };
                    self.push(frame, control.is_trackable());
                }
            }
            Action::Acknowledged(sequence_id) => self.outbox.ack(sequence_id),
            Action::Replay => {
                if let Some(protocol) = self.protocol() {
                    self.outbox
                        .rewind(|first| encode_control(protocol, Control::Sequence(first)));
                    self.hub.metrics().reconnected();
                }
            }
            Action::Close(reason) => self.close(reason),
        }
        false
    }
}

impl Session for HubSession {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn handshake_done(&self) -> bool {
        self.protocol().is_some()
    }

    fn transport_started(&self, kind: TransportKind) {
        let v = match kind {
            TransportKind::WebSockets => 1,
            TransportKind::ServerSentEvents => 2,
            TransportKind::LongPolling => 3,
        };
        self.transport.store(v, Ordering::Release);
        self.machine.lock().on_transport_started(kind);
    }

    fn receive(&self, data: &[u8]) {
        let mut opened = false;
        self.machine.lock().handle_bytes(
            self.hub.now_ms(),
            data,
            self.hub.options(),
            &mut |action| opened |= self.apply(action),
        );
        if opened {
            // Joined outside the machine's lock: the hub's maps are never locked inside it.
            if let Some(me) = self.me.upgrade() {
                self.hub.joined(&me);
            }
        }
    }

    fn transport_failed(&self, error: &str) {
        self.machine
            .lock()
            .on_transport_failed(error, &mut |action| {
                self.apply(action);
            });
    }

    fn transport_lost(&self) -> bool {
        self.machine.lock().on_transport_lost() && !self.outbox.is_closing()
    }

    fn transport_resumed(&self) {
        self.machine.lock().on_transport_resumed(&mut |action| {
            self.apply(action);
        });
    }

    fn closed(&self) {
        self.machine.lock().on_closed();
        self.hub.left(self);
    }
}

#[cfg(test)]
mod tests {
    //! The session applies what its machine decides; the decisions themselves are tested in
    //! `machine`. No test here awaits, so the hub's timer task never runs: time moves only
    //! when a test calls `tick`.

    use pushwarden_protocol::{json, HubMessage, Invocation, TransferFormat};
    use pushwarden_transport::{ConnectionInfo, Drained, OutboxLimits};

    use super::*;
    use crate::{Audience, HubOptions};

    fn open(hub: &Arc<Hub>, stateful: bool) -> Arc<HubSession> {
        let identity = Identity {
            user_id: Some("user".into()),
            groups: vec!["org".into()],
        };
        let session = hub.open(
            identity,
            ConnectionInfo {
                connection_id: Some("c".into()),
                stateful_reconnect: stateful,
            },
        );
        session.transport_started(TransportKind::WebSockets);
        session
    }

    fn drain(session: &HubSession) -> (Vec<Bytes>, Option<Drained>) {
        let mut out = Vec::new();
        let drained = session.outbox().try_drain(&mut out, usize::MAX);
        (out, drained)
    }

    fn frame(message: &HubMessage<serde_json::Value>) -> Vec<u8> {
        let mut out = Vec::new();
        json::encode(message, &mut out);
        out
    }

    fn control(control: Control<'_>) -> Bytes {
        encode_control(Protocol::Json, control)
    }

    #[tokio::test]
    async fn a_stateful_session_answers_joins_replays_acks_and_times_out() {
        let hub = Hub::new("test", HubOptions::default(), OutboxLimits::default());
        let session = open(&hub, true);
        let message = SerializedMessage::invocation("Hi", Vec::new(), Vec::new());
        assert_eq!(
            hub.send(Audience::User("user"), &message),
            0,
            "not joined yet"
        );

        session.receive(&handshake::encode_request("json", 2));
        assert_eq!(drain(&session).0, [handshake::encode_response(None)]);
        assert_eq!(session.protocol(), Some(Protocol::Json));
        assert_eq!(hub.send(Audience::User("user"), &message), 1);
        assert_eq!(hub.send(Audience::Group("org"), &message), 1);
        let hi = message.bytes(Protocol::Json).clone();
        let (frames, drained) = drain(&session);
        assert_eq!(frames, [hi.clone(), hi.clone()]);
        assert_eq!(drained, Some(Drained::Frames(TransferFormat::Text)));

        // The client acknowledges the first, the transport drops, a new one takes over: the
        // second is written again after a Sequence saying it is number 2.
        session.receive(&frame(&HubMessage::Ack { sequence_id: 1 }));
        assert!(session.transport_lost());
        session.transport_resumed();
        assert_eq!(drain(&session).0, [control(Control::Sequence(2)), hi]);

        // The client's Sequence, then a call of a method the hub does not have.
        let mut data = frame(&HubMessage::Sequence { sequence_id: 1 });
        data.extend(frame(&HubMessage::Invocation(Invocation {
            headers: Vec::new(),
            invocation_id: Some("1".into()),
            target: "M".into(),
            arguments: Vec::new(),
            stream_ids: Vec::new(),
        })));
        session.receive(&data);
        let answer = control(Control::CompletionError {
            invocation_id: "1",
            error: "Unknown hub method 'M'",
        });
        assert_eq!(drain(&session).0, [answer]);

        // The timer acknowledges the call; then the silent client times out.
        session.tick(0);
        assert_eq!(drain(&session).0, [control(Control::Ack(1))]);
        session.tick(60_000);
        let close = control(Control::Close {
            error: Some("Client timeout elapsed without receiving a message from the client."),
            allow_reconnect: true,
        });
        assert_eq!(
            drain(&session),
            (vec![close], Some(Drained::Closed(TransferFormat::Text)))
        );
        assert!(
            !session.transport_lost(),
            "a closing connection is not kept"
        );

        session.closed();
        assert_eq!(hub.send(Audience::User("user"), &message), 0);
        assert_eq!(hub.connection_count(), 0);
    }

    #[tokio::test]
    async fn a_refused_handshake_is_answered_then_closed_without_joining() {
        let hub = Hub::new("test", HubOptions::default(), OutboxLimits::default());
        let session = open(&hub, false);
        session.receive(b"{\"protocol\":\"foo\",\"version\":1}\x1e");
        let response = handshake::encode_response(Some("The protocol 'foo' is not supported."));
        assert_eq!(
            drain(&session),
            (
                vec![Bytes::from(response)],
                Some(Drained::Closed(TransferFormat::Text))
            )
        );
        assert_eq!(session.protocol(), None);
        let message = SerializedMessage::invocation("Hi", Vec::new(), Vec::new());
        assert_eq!(hub.send(Audience::User("user"), &message), 0);
        assert_eq!(hub.send(Audience::All, &message), 0);
    }

    #[tokio::test]
    async fn shutdown_tells_an_open_client_whether_to_reconnect() {
        let hub = Hub::new("test", HubOptions::default(), OutboxLimits::default());
        let session = open(&hub, false);
        session.receive(&handshake::encode_request("json", 1));
        drain(&session);
        hub.close_all(true);
        let close = control(Control::Close {
            error: None,
            allow_reconnect: true,
        });
        assert_eq!(
            drain(&session),
            (vec![close], Some(Drained::Closed(TransferFormat::Text)))
        );
    }

    /// Every connection holds a session: it is part of the memory per idle connection (see
    /// BENCHMARKS.md), so it must not grow.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_session_stays_small() {
        assert!(std::mem::size_of::<HubSession>() <= 272);
    }
}
