//! The WebSocket transport.
//!
//! One task per connection does everything: it waits on the socket and on the outbox at once,
//! so an idle connection is one parked task, one small read buffer and the session. Frames
//! queued together are coalesced into one WebSocket message (SignalR allows several hub
//! messages per transport message), so a burst costs one write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use pushwarden_protocol::TransferFormat;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::dispatch::{claim_transport, plain};
use crate::endpoint::{ConnectionInfo, Endpoint, Session, TransportKind};
use crate::outbox::Drained;
use crate::registry::Entry;
use crate::upgrade::{PendingSocket, Socket, Upgrade};
use crate::{Transport, TransportOptions};

/// How a WebSocket ended.
enum Ending {
    /// Closed on purpose by either side.
    Closed,
    /// The socket failed or vanished without a close handshake.
    Lost,
}

fn config(options: &TransportOptions) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(options.websocket_read_buffer)
        // Write straight through: the outbox already batches.
        .write_buffer_size(0)
        .max_write_buffer_size(options.max_batch_bytes * 4)
        .max_message_size(Some(options.websocket_max_message))
        .max_frame_size(Some(options.websocket_max_message))
}

/// A WebSocket with no `id`: a new connection, negotiation skipped (Bitwarden's clients).
pub(crate) fn accept_new<E: Endpoint>(
    transport: Arc<Transport<E>>,
    upgrade: Upgrade,
    principal: E::Principal,
) -> Response {
    let (response, pending) = upgrade.accept(config(&transport.options));
    let session = transport.endpoint.open(
        &principal,
        ConnectionInfo {
            connection_id: None,
            stateful_reconnect: false,
        },
    );
    // One flat task per connection, alive as long as the connection: its size is what every
    // idle connection pays, so it holds only what it needs (see `upgrade`).
    tokio::spawn(serve_new(pending, transport, session));
    response
}

async fn serve_new<E: Endpoint>(
    pending: PendingSocket,
    transport: Arc<Transport<E>>,
    session: Arc<E::Session>,
) {
    // `let else`, not `if let`: the temporaries of an `if let` scrutinee would stay alive
    // (and take room in the task) for the whole connection.
    let Some(mut socket) = pending.open().await else {
        session.outbox().close(None, true);
        session.closed();
        return;
    };
    session.transport_started(TransportKind::WebSockets);
    run(&mut socket, &*session, &transport.options).await;
    session.outbox().close(None, true);
    session.closed();
}

/// A WebSocket for a negotiated connection: its first transport, or a stateful reconnect.
pub(crate) fn accept_existing<E: Endpoint>(
    transport: Arc<Transport<E>>,
    upgrade: Upgrade,
    entry: Arc<Entry<E>>,
) -> Response {
    let first = match claim_transport(&transport.registry, &entry, TransportKind::WebSockets) {
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
    let (response, pending) = upgrade.accept(config(&transport.options));
    tokio::spawn(serve_existing(pending, transport, entry, resuming));
    response
}

async fn serve_existing<E: Endpoint>(
    pending: PendingSocket,
    transport: Arc<Transport<E>>,
    entry: Arc<Entry<E>>,
    resuming: bool,
) {
    let Some(mut socket) = pending.open().await else {
        return;
    };
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
    let ending = run(&mut socket, &*entry.session, &transport.options).await;
    let keep = matches!(ending, Ending::Lost) && entry.stateful && entry.session.transport_lost();
    if keep {
        let mut st = entry.state.lock();
        st.attached = false;
        st.detached_since = std::time::Instant::now();
    } else {
        entry.state.lock().terminated = true;
        transport.registry.remove(&entry);
    }
}

/// What the loop does after waking up.
enum Step {
    /// Write this message, then go on (or close, after the last frames).
    Write(Message, bool),
    /// The client closed: let tungstenite send its close reply, then end.
    AnswerClose,
}

/// Serves one WebSocket until it ends. Takes the socket by reference: an async fn keeps its
/// arguments and their moved copies both in its state (rust-lang/rust#62958).
async fn run<S: Session + ?Sized>(
    socket: &mut Socket,
    session: &S,
    options: &TransportOptions,
) -> Ending {
    let outbox = session.outbox();
    let mut frames: Vec<Bytes> = Vec::new();
    // After a read error the socket may still take the session's Close message.
    let mut reading = true;
    loop {
        // An idle connection's task is parked in this select, so its state is what every idle
        // connection costs. Nothing is awaited inside it; writes happen below, boxed, so that
        // their timers take no room here.
        let step = tokio::select! {
            // Outgoing first: when a wake-up is for a notification (the common case) the
            // socket is not polled for reading at all.
            biased;
            drained = outbox.drain(&mut frames, options.max_batch_bytes) => {
                let (format, closing) = match drained {
                    Drained::Frames(f) => (f, false),
                    Drained::Closed(f) => (f, true),
                };
                if frames.is_empty() {
                    Step::Write(close_message(), true)
                } else {
                    let Some(message) = coalesce(&mut frames, format) else {
                        tracing::error!("non-UTF-8 frame queued for a text connection");
                        return Ending::Closed;
                    };
                    Step::Write(message, closing)
                }
            }
            incoming = socket.next(), if reading => match incoming {
                Some(Ok(Message::Binary(data))) => {
                    session.receive(&data);
                    continue;
                }
                Some(Ok(Message::Text(text))) => {
                    session.receive(text.as_bytes());
                    continue;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) => Step::AnswerClose,
                Some(Err(error)) => match client_fault(error) {
                    Some(reason) if !outbox.is_closing() => {
                        reading = false;
                        session.transport_failed(&reason);
                        continue;
                    }
                    _ => return Ending::Lost,
                },
                None => return Ending::Lost,
            },
        };
        match step {
            Step::Write(message, closing) => {
                let is_close = matches!(message, Message::Close(_));
                if let Err(ending) = send(socket, message, options).await {
                    return ending;
                }
                if is_close {
                    return Ending::Closed;
                }
                if closing {
                    let _ = send(socket, close_message(), options).await;
                    return Ending::Closed;
                }
            }
            Step::AnswerClose => {
                let _ = flush(socket, options).await;
                return Ending::Closed;
            }
        }
    }
}

fn close_message() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    }))
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Writes one message, giving up after the send timeout (the client is not reading).
fn send<'a>(
    socket: &'a mut Socket,
    message: Message,
    options: &TransportOptions,
) -> Boxed<'a, Result<(), Ending>> {
    let limit = options.send_timeout;
    Box::pin(async move {
        match tokio::time::timeout(limit, socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::Lost),
            Err(_) => {
                metrics::counter!("pushwarden_transport_send_timeouts_total").increment(1);
                tracing::info!("closing a WebSocket whose client does not read");
                Err(Ending::Lost)
            }
        }
    })
}

fn flush<'a>(socket: &'a mut Socket, options: &TransportOptions) -> Boxed<'a, ()> {
    let limit = options.send_timeout;
    Box::pin(async move {
        let _ = tokio::time::timeout(limit, socket.flush()).await;
    })
}

/// The reason to give the client when a read failed because of what it sent (an oversized
/// or malformed frame); `None` when the connection itself failed.
fn client_fault(error: tungstenite::Error) -> Option<String> {
    use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
    match error {
        tungstenite::Error::Protocol(ResetWithoutClosingHandshake) => None,
        e @ (tungstenite::Error::Capacity(_)
        | tungstenite::Error::Protocol(_)
        | tungstenite::Error::Utf8(_)) => Some(format!("WebSocket: {e}")),
        _ => None,
    }
}

/// Turns the drained frames into one WebSocket message.
/// Empties `frames` and gives its memory back: the connection may now idle for hours.
fn coalesce(frames: &mut Vec<Bytes>, format: TransferFormat) -> Option<Message> {
    let mut frames = std::mem::take(frames);
    let bytes = if frames.len() == 1 {
        frames.pop().unwrap_or_default()
    } else {
        let total = frames.iter().map(Bytes::len).sum();
        let mut joined = BytesMut::with_capacity(total);
        for f in &frames {
            joined.extend_from_slice(f);
        }
        joined.freeze()
    };
    Some(match format {
        TransferFormat::Binary => Message::Binary(bytes),
        TransferFormat::Text => Message::Text(Utf8Bytes::try_from(bytes).ok()?),
    })
}
