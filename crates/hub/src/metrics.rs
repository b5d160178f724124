//! The hub's Prometheus metrics, labelled by hub name.

use std::sync::atomic::{AtomicI64, Ordering};

use pushwarden_protocol::Protocol;
use pushwarden_transport::TransportKind;

/// Transports a connection is counted under, `None` (not known) included.
const TRANSPORTS: [Option<TransportKind>; 4] = [
    Some(TransportKind::WebSockets),
    Some(TransportKind::ServerSentEvents),
    Some(TransportKind::LongPolling),
    None,
];
const PROTOCOLS: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

/// Open connections of one transport and hub protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionTally {
    pub transport: &'static str,
    pub protocol: &'static str,
    pub open: i64,
}

pub(crate) struct HubMetrics {
    hub: &'static str,
    /// Open connections per transport and protocol, the same figures as the
    /// `pushwarden_connections` gauge, readable in process: eight counters per hub, nothing
    /// per connection.
    open: [AtomicI64; TRANSPORTS.len() * PROTOCOLS.len()],
}

fn slot(transport: Option<TransportKind>, protocol: Protocol) -> usize {
    let t = TRANSPORTS
        .iter()
        .position(|&k| k == transport)
        .unwrap_or(TRANSPORTS.len() - 1);
    let p = PROTOCOLS.iter().position(|&k| k == protocol).unwrap_or(0);
    t * PROTOCOLS.len() + p
}

impl HubMetrics {
    pub fn new(hub: &'static str) -> Self {
        Self {
            hub,
            open: Default::default(),
        }
    }

    /// Open connections by transport and protocol (only those with any).
    pub fn open_connections(&self) -> Vec<ConnectionTally> {
        let mut tallies = Vec::new();
        for transport in TRANSPORTS {
            for protocol in PROTOCOLS {
                let open = self.open[slot(transport, protocol)].load(Ordering::Relaxed);
                if open != 0 {
                    tallies.push(ConnectionTally {
                        transport: transport_label(transport),
                        protocol: protocol.name(),
                        open,
                    });
                }
            }
        }
        tallies
    }

    pub fn connection_opened(&self, transport: Option<TransportKind>, protocol: Protocol) {
        self.open[slot(transport, protocol)].fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("pushwarden_connections", "hub" => self.hub, "transport" => transport_label(transport), "protocol" => protocol.name()).increment(1.0);
        metrics::counter!("pushwarden_connections_opened_total", "hub" => self.hub).increment(1);
    }

    pub fn connection_closed(&self, transport: Option<TransportKind>, protocol: Protocol) {
        self.open[slot(transport, protocol)].fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("pushwarden_connections", "hub" => self.hub, "transport" => transport_label(transport), "protocol" => protocol.name()).decrement(1.0);
    }

    pub fn handshake_failed(&self, reason: &'static str) {
        metrics::counter!("pushwarden_handshake_failures_total", "hub" => self.hub, "reason" => reason).increment(1);
    }

    pub fn protocol_error(&self) {
        metrics::counter!("pushwarden_protocol_errors_total", "hub" => self.hub).increment(1);
    }

    pub fn client_timeout(&self) {
        metrics::counter!("pushwarden_client_timeouts_total", "hub" => self.hub).increment(1);
    }

    pub fn queue_overflow(&self) {
        metrics::counter!("pushwarden_queue_overflows_total", "hub" => self.hub).increment(1);
    }

    pub fn reconnected(&self) {
        metrics::counter!("pushwarden_stateful_reconnects_total", "hub" => self.hub).increment(1);
    }

    pub fn message_received(&self, message_type: u8) {
        metrics::counter!("pushwarden_messages_received_total", "hub" => self.hub, "type" => message_type_label(message_type)).increment(1);
    }

    pub fn messages_sent(&self, target: &'static str, count: usize) {
        metrics::counter!("pushwarden_messages_sent_total", "hub" => self.hub, "target" => target)
            .increment(count as u64);
    }
}

fn transport_label(transport: Option<TransportKind>) -> &'static str {
    transport.map_or("unknown", TransportKind::as_str)
}

fn message_type_label(message_type: u8) -> &'static str {
    match message_type {
        1 => "invocation",
        2 => "stream_item",
        3 => "completion",
        4 => "stream_invocation",
        5 => "cancel_invocation",
        6 => "ping",
        7 => "close",
        8 => "ack",
        9 => "sequence",
        _ => "other",
    }
}
