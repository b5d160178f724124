//! What a transport needs from the application above it (the hub).
//!
//! The transports move bytes; they do not know SignalR messages, users or groups. An
//! [`Endpoint`] authenticates requests and opens a [`Session`] per logical connection; the
//! session consumes the bytes the client sends and fills its [`Outbox`] with what to send back.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use crate::outbox::Outbox;

/// The transport a connection uses, as SignalR names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    WebSockets,
    ServerSentEvents,
    LongPolling,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::WebSockets => "WebSockets",
            TransportKind::ServerSentEvents => "ServerSentEvents",
            TransportKind::LongPolling => "LongPolling",
        }
    }

    /// Whether the transport can carry binary frames (MessagePack).
    pub fn supports_binary(self) -> bool {
        !matches!(self, TransportKind::ServerSentEvents)
    }

    /// Long polling keeps itself alive: every poll proves the client is there, so the hub sends
    /// no Ping over it and does not time the client out (the transport reaps it instead).
    pub fn has_inherent_keep_alive(self) -> bool {
        matches!(self, TransportKind::LongPolling)
    }
}

/// The parts of an HTTP request an endpoint authenticates.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub peer: Option<SocketAddr>,
}

/// A refused request: an HTTP status and a message, answered as a JSON body.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: String,
}

impl Rejection {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Facts about a new connection that the session may need.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// Negotiate's `connectionId`; none for a WebSocket opened without negotiate (nobody can
    /// address it by id, so none is made).
    pub connection_id: Option<Arc<str>>,
    /// Stateful reconnect was granted at negotiate.
    pub stateful_reconnect: bool,
}

/// The application behind a set of transport routes.
pub trait Endpoint: Send + Sync + 'static {
    /// Who made a request.
    type Principal: Send + Sync + 'static;
    type Session: Session;

    /// Authenticates a request (negotiate, connect, poll, send).
    fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> impl Future<Output = Result<Self::Principal, Rejection>> + Send;

    /// Whether a follow-up request (poll, send, reconnect) comes from the principal that opened
    /// the connection.
    fn same_principal(&self, opened_by: &Self::Principal, request: &Self::Principal) -> bool;

    /// Whether clients may ask for stateful reconnect at negotiate.
    fn allows_stateful_reconnect(&self) -> bool;

    /// Opens a logical connection for `principal`.
    fn open(&self, principal: &Self::Principal, info: ConnectionInfo) -> Arc<Self::Session>;
}

/// One logical connection, as the application sees it.
pub trait Session: Send + Sync + 'static {
    fn outbox(&self) -> &Outbox;

    /// A transport started carrying this connection.
    fn transport_started(&self, kind: TransportKind);

    /// Bytes from the client: one WebSocket message or one POST body.
    fn receive(&self, data: &[u8]);

    /// The client has completed its handshake; until then its POST bodies are held to
    /// [`crate::TransportOptions::max_post_body_before_handshake`].
    fn handshake_done(&self) -> bool {
        true
    }

    /// The transport could not read what the client sent (an oversized or malformed WebSocket
    /// frame). The session should close with `error` as its reason; the transport still
    /// writes what the session queues.
    fn transport_failed(&self, error: &str);

    /// The transport was lost without a close. Return true to keep the connection for a
    /// stateful reconnect; the session keeps queueing (and retaining) frames meanwhile.
    fn transport_lost(&self) -> bool;

    /// A new WebSocket took over after [`Session::transport_lost`] returned true.
    fn transport_resumed(&self);

    /// The connection ended for good. Called exactly once.
    fn closed(&self);
}
