//! `POST {hub}?id=`: client-to-server bytes for the SSE and long-polling transports.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::dispatch::plain;
use crate::endpoint::{Endpoint, Session, TransportKind};
use crate::registry::Entry;
use crate::Transport;

pub(crate) async fn send<E: Endpoint>(
    transport: Arc<Transport<E>>,
    entry: Arc<Entry<E>>,
    request: Request,
) -> Response {
    {
        let st = entry.state.lock();
        if st.transport == Some(TransportKind::WebSockets) {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST requests are not allowed for WebSocket connections.",
            );
        }
        if st.terminated {
            return plain(StatusCode::NOT_FOUND, "No Connection with that ID");
        }
    }
    if entry.posting.swap(true, Ordering::AcqRel) {
        return plain(StatusCode::CONFLICT, "Another send request is in progress.");
    }
    let _release = ReleaseOnDrop(&entry.posting);
    let limit = if entry.session.handshake_done() {
        transport.options.max_post_body
    } else {
        transport.options.max_post_body_before_handshake
    };
    // A connection that ends (reaped, deleted, closed) abandons the read at once, so a peer
    // that stalls mid-body holds nothing past its connection's life.
    let body = tokio::select! {
        body = axum::body::to_bytes(request.into_body(), limit) => body,
        () = entry.ended() => {
            return plain(StatusCode::NOT_FOUND, "No Connection with that ID");
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "The request body could not be read, took too long or is too large.",
            )
        }
    };
    entry.session.receive(&body);
    StatusCode::OK.into_response()
}

struct ReleaseOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
