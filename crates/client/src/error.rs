//! What can go wrong while connecting or talking to a hub.

use pushwarden_protocol::ProtocolError;

/// Errors of [`crate::HubClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub URL cannot be used.
    #[error("invalid hub URL: {0}")]
    InvalidUrl(String),
    /// Something this client does not implement (e.g. TLS).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Connecting the TCP socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The negotiate HTTP request failed.
    #[error("negotiate request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server's negotiate response refused or could not be used.
    #[error("negotiate failed: {0}")]
    Negotiate(String),
    /// WebSocket-level failure (upgrade refused, connection reset, ...). Boxed because
    /// tungstenite's error is large and this keeps every `Result` small.
    #[error("websocket error: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server answered the handshake with an error.
    #[error("handshake rejected: {0}")]
    Handshake(String),
    /// The server sent bytes that are not valid SignalR.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A message was given in the other protocol than the connection uses.
    #[error("message is not in the connection's protocol")]
    WrongProtocol,
    /// The connection closed before the handshake completed.
    #[error("connection closed during the handshake")]
    ClosedDuringHandshake,
    /// The server did not complete the handshake in time.
    #[error("timed out waiting for the handshake response")]
    HandshakeTimeout,
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(error))
    }
}
