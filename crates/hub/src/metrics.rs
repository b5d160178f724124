//! The hub's Prometheus metrics, labelled by hub name.

use pushwarden_protocol::Protocol;
use pushwarden_transport::TransportKind;

pub(crate) struct HubMetrics {
    hub: &'static str,
}

impl HubMetrics {
    pub fn new(hub: &'static str) -> Self {
        Self { hub }
    }

    pub fn connection_opened(&self, transport: Option<TransportKind>, protocol: Protocol) {
        metrics::gauge!("pushwarden_connections", "hub" => self.hub, "transport" => transport_label(transport), "protocol" => protocol.name()).increment(1.0);
        metrics::counter!("pushwarden_connections_opened_total", "hub" => self.hub).increment(1);
    }

    pub fn connection_closed(&self, transport: Option<TransportKind>, protocol: Protocol) {
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
