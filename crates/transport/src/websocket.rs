//! The WebSocket transport.
//!
//! One task per connection does everything: it waits on the socket and on the outbox at once,
//! so an idle connection is one parked task, one small read buffer and the session. Frames
//! queued together are coalesced into one WebSocket message (SignalR allows several hub
//! messages per transport message), so a burst costs one write.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use http::StatusCode;
use pushwarden_protocol::TransferFormat;

use crate::dispatch::{claim_transport, plain};
use crate::endpoint::{ConnectionInfo, Endpoint, Session, TransportKind};
use crate::outbox::Drained;
use crate::registry::Entry;
use crate::Transport;

/// How a WebSocket ended.
enum Ending {
    /// Closed on purpose by either side.
    Closed,
    /// The socket failed or vanished without a close handshake.
    Lost,
}

fn configure<E: Endpoint>(transport: &Transport<E>, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    let o = &transport.options;
    upgrade
        .read_buffer_size(o.websocket_read_buffer)
        // Write straight through: the outbox already batches.
        .write_buffer_size(0)
        .max_write_buffer_size(o.max_batch_bytes * 4)
        .max_message_size(o.websocket_max_message)
        .max_frame_size(o.websocket_max_message)
}

/// A WebSocket with no `id`: a new connection, negotiation skipped (Bitwarden's clients).
pub(crate) fn accept_new<E: Endpoint>(
    transport: Arc<Transport<E>>,
    upgrade: WebSocketUpgrade,
    principal: E::Principal,
) -> Response {
    configure(&transport, upgrade).on_upgrade(move |socket| async move {
        let session = transport.endpoint.open(
            &principal,
            ConnectionInfo {
                connection_id: None,
                stateful_reconnect: false,
            },
        );
        drop(principal);
        session.transport_started(TransportKind::WebSockets);
        run(socket, &*session, &transport.options).await;
        session.outbox().close(None, true);
        session.closed();
    })
}

/// A WebSocket for a negotiated connection: its first transport, or a stateful reconnect.
pub(crate) fn accept_existing<E: Endpoint>(
    transport: Arc<Transport<E>>,
    upgrade: WebSocketUpgrade,
    entry: Arc<Entry<E>>,
) -> Response {
    let first = match claim_transport(&entry, TransportKind::WebSockets) {
        Ok(first) => first,
        Err((status, message)) => return plain(status, message),
    };
    let resuming = !first;
    {
        let st = entry.state.lock();
        if st.attached {
            return plain(
                StatusCode::CONFLICT,
                "Connection already has an active WebSocket.",
            );
        }
        if resuming && !entry.stateful {
            return plain(StatusCode::CONFLICT, "Connection already has a WebSocket.");
        }
    }
    configure(&transport, upgrade)
        .on_upgrade(move |socket| async move {
            {
                let mut st = entry.state.lock();
                if st.attached || st.terminated {
                    // Lost a race with another WebSocket for the same connection.
                    return;
                }
                st.attached = true;
            }
            if resuming {
                entry.session.transport_resumed();
            } else {
                entry.session.transport_started(TransportKind::WebSockets);
            }
            let ending = run(socket, &*entry.session, &transport.options).await;
            let keep =
                matches!(ending, Ending::Lost) && entry.stateful && entry.session.transport_lost();
            if keep {
                let mut st = entry.state.lock();
                st.attached = false;
                st.detached_since = std::time::Instant::now();
            } else {
                entry.state.lock().terminated = true;
                transport.registry.remove(&entry);
            }
        })
        .into_response()
}

async fn run<S: Session + ?Sized>(
    mut socket: WebSocket,
    session: &S,
    options: &crate::TransportOptions,
) -> Ending {
    let outbox = session.outbox();
    let mut frames: Vec<Bytes> = Vec::new();
    // After a read error the socket may still take the session's Close message.
    let mut reading = true;
    loop {
        tokio::select! {
            drained = outbox.drain(&mut frames, options.max_batch_bytes) => {
                let (format, closing) = match drained {
                    Drained::Frames(f) => (f, false),
                    Drained::Closed(f) => (f, true),
                };
                if !frames.is_empty() {
                    let Some(message) = coalesce(&mut frames, format) else {
                        tracing::error!("non-UTF-8 frame queued for a text connection");
                        return Ending::Closed;
                    };
                    match tokio::time::timeout(options.send_timeout, socket.send(message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Ending::Lost,
                        Err(_) => {
                            metrics::counter!("pushwarden_transport_send_timeouts_total").increment(1);
                            tracing::info!("closing a WebSocket whose client does not read");
                            return Ending::Lost;
                        }
                    }
                }
                if closing {
                    let close = Message::Close(Some(CloseFrame { code: 1000, reason: Utf8Bytes::from_static("") }));
                    let _ = tokio::time::timeout(options.send_timeout, socket.send(close)).await;
                    return Ending::Closed;
                }
            }
            incoming = socket.recv(), if reading => match incoming {
                Some(Ok(Message::Binary(data))) => session.receive(&data),
                Some(Ok(Message::Text(text))) => session.receive(text.as_bytes()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    // Let tungstenite send the close reply it queued.
                    let _ = tokio::time::timeout(options.send_timeout, socket.flush()).await;
                    return Ending::Closed;
                }
                Some(Err(error)) => match client_fault(error) {
                    Some(reason) if !outbox.is_closing() => {
                        reading = false;
                        session.transport_failed(&reason);
                    }
                    _ => return Ending::Lost,
                },
                None => return Ending::Lost,
            },
        }
    }
}

/// The reason to give the client when a read failed because of what it sent (an oversized
/// or malformed frame); `None` when the connection itself failed.
fn client_fault(error: axum::Error) -> Option<String> {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => None,
        e @ (tungstenite::Error::Capacity(_)
        | tungstenite::Error::Protocol(_)
        | tungstenite::Error::Utf8(_)) => Some(format!("WebSocket: {e}")),
        _ => None,
    }
}

/// Turns the drained frames into one WebSocket message.
fn coalesce(frames: &mut Vec<Bytes>, format: TransferFormat) -> Option<Message> {
    let bytes = if frames.len() == 1 {
        frames.pop().unwrap_or_default()
    } else {
        let total = frames.iter().map(Bytes::len).sum();
        let mut joined = BytesMut::with_capacity(total);
        for f in frames.drain(..) {
            joined.extend_from_slice(&f);
        }
        joined.freeze()
    };
    frames.clear();
    Some(match format {
        TransferFormat::Binary => Message::Binary(bytes),
        TransferFormat::Text => Message::Text(Utf8Bytes::try_from(bytes).ok()?),
    })
}
