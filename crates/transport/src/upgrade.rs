//! The HTTP/1.1 WebSocket upgrade (RFC 6455 §4.2), done here rather than through axum's
//! `WebSocketUpgrade` so that the task that then carries the connection for its whole life is
//! as small as we can make it: it holds the upgrade, then the socket, then our loop, and
//! nothing else. With tens of thousands of idle connections every byte of it counts.

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::dispatch::plain;

/// A server-side WebSocket over an upgraded HTTP connection.
pub(crate) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A request that asked for a WebSocket and may get one.
pub(crate) struct Upgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

/// Whether the request asks to become a WebSocket at all (then [`Upgrade::from_parts`] says
/// whether it may).
pub(crate) fn is_requested(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

impl Upgrade {
    /// Checks the handshake headers; a bad one is answered 400 (or 426 for another version).
    pub(crate) fn from_parts(parts: &mut Parts) -> Result<Self, Box<Response>> {
        if parts.method != Method::GET || parts.version != Version::HTTP_11 {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "WebSocket upgrades need an HTTP/1.1 GET request.",
            )));
        }
        let connection_upgrade = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        if !connection_upgrade {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "`Connection` header did not include `upgrade`.",
            )));
        }
        let version_13 = parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        if !version_13 {
            let mut response = plain(
                StatusCode::UPGRADE_REQUIRED,
                "Only WebSocket version 13 is supported.",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return Err(Box::new(response));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header is missing.",
            )));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| {
            Box::new(plain(
                StatusCode::BAD_REQUEST,
                "Invalid `Sec-WebSocket-Key`.",
            ))
        })?;
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "This connection cannot be upgraded.",
            )));
        };
        Ok(Self { on_upgrade, accept })
    }

    /// Answers 101; the returned future resolves to the socket once the client has it (the
    /// caller spawns the task that awaits it).
    pub(crate) fn accept(self, config: WebSocketConfig) -> (Response, PendingSocket) {
        let response = (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response();
        let pending = PendingSocket {
            on_upgrade: self.on_upgrade,
            config,
        };
        (response, pending)
    }
}

/// A WebSocket whose 101 answer is on its way.
pub(crate) struct PendingSocket {
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
}

impl PendingSocket {
    /// The socket, once the HTTP connection is handed over; `None` if it never is.
    pub(crate) async fn open(self) -> Option<Socket> {
        let upgraded = match self.on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade did not complete");
                return None;
            }
        };
        Some(
            WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(self.config),
            )
            .await,
        )
    }
}
