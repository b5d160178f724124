//! The long-polling transport (server to client; the client sends with POST).

use std::sync::Arc;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{header, StatusCode};

use crate::dispatch::{claim_transport, plain};
use crate::endpoint::{Endpoint, Session, TransportKind};
use crate::outbox::Drained;
use crate::registry::Entry;
use crate::Transport;

pub(crate) async fn poll<E: Endpoint>(
    transport: Arc<Transport<E>>,
    entry: Arc<Entry<E>>,
) -> Response {
    let first = match claim_transport(&transport.registry, &entry, TransportKind::LongPolling) {
        Ok(first) => first,
        Err((status, message)) => {
            // A poll after the connection ended learns so with 204 and stops polling.
            return if entry.state.lock().terminated {
                no_content()
            } else {
                plain(status, message)
            };
        }
    };
    if first {
        // The first poll only finishes setting up the connection; the JS client requires an
        // immediate 200 here.
        entry.session.transport_started(TransportKind::LongPolling);
        entry.state.lock().detached_since = Instant::now();
        return StatusCode::OK.into_response();
    }

    let generation = {
        let mut st = entry.state.lock();
        if st.terminated {
            return no_content();
        }
        st.poll_generation += 1;
        st.attached = true;
        st.poll_generation
    };
    // A newer poll supersedes the one that may still be waiting.
    entry.poll_cancel.notify_waiters();
    // Also when the client goes away mid-poll and this future is dropped.
    let detach = DetachOnDrop {
        entry: &entry,
        generation,
    };

    let mut frames = Vec::new();
    let outcome = tokio::select! {
        drained = entry.session.outbox().drain(&mut frames, transport.options.max_batch_bytes) => Some(drained),
        _ = wait_superseded(&entry, generation) => None,
        _ = tokio::time::sleep(transport.options.long_poll_timeout) => Some(Drained::Frames(pushwarden_protocol::TransferFormat::Binary)),
    };

    drop(detach);
    let mut st = entry.state.lock();
    match outcome {
        None => no_content(),
        Some(Drained::Frames(_)) => data(frames),
        Some(Drained::Closed(_)) => {
            st.terminated = true;
            drop(st);
            if frames.is_empty() {
                transport.registry.remove(&entry);
                no_content()
            } else {
                // Deliver the last frames (the Close message); the entry stays until reaped so
                // that the next poll gets 204 rather than 404.
                entry.close_session();
                data(frames)
            }
        }
    }
}

/// Marks the connection as between polls when a poll ends, however it ends, so that the
/// reaper can end a connection whose client stopped polling.
struct DetachOnDrop<'a, E: Endpoint> {
    entry: &'a Entry<E>,
    generation: u64,
}

impl<E: Endpoint> Drop for DetachOnDrop<'_, E> {
    fn drop(&mut self) {
        let mut st = self.entry.state.lock();
        if st.poll_generation == self.generation {
            st.attached = false;
            st.detached_since = Instant::now();
        }
    }
}

async fn wait_superseded<E: Endpoint>(entry: &Entry<E>, generation: u64) {
    loop {
        let notified = entry.poll_cancel.notified();
        tokio::pin!(notified);
        // Register before looking, so that a notification between the look and the wait counts.
        notified.as_mut().enable();
        {
            let st = entry.state.lock();
            if st.poll_generation != generation || st.terminated {
                return;
            }
        }
        notified.await;
    }
}

/// `DELETE {hub}?id=`: the client ends a long-polling connection.
pub(crate) fn delete<E: Endpoint>(transport: Arc<Transport<E>>, entry: Arc<Entry<E>>) -> Response {
    {
        let mut st = entry.state.lock();
        if st.transport != Some(TransportKind::LongPolling) {
            return plain(
                StatusCode::BAD_REQUEST,
                "Cannot terminate this connection using the DELETE endpoint.",
            );
        }
        st.terminated = true;
    }
    entry.poll_cancel.notify_waiters();
    transport.registry.remove(&entry);
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "text/plain")],
        "",
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn data(frames: Vec<Bytes>) -> Response {
    let body = if frames.len() == 1 {
        frames.into_iter().next().unwrap_or_default()
    } else {
        let mut joined = BytesMut::new();
        for f in frames {
            joined.extend_from_slice(&f);
        }
        joined.freeze()
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response()
}
