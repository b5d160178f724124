//! The Server-Sent Events transport (server to client; the client sends with POST).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, StatusCode};

use crate::dispatch::{claim_transport, plain};
use crate::endpoint::{Endpoint, Session, TransportKind};
use crate::outbox::Drained;
use crate::registry::Entry;
use crate::Transport;

pub(crate) fn stream<E: Endpoint>(transport: Arc<Transport<E>>, entry: Arc<Entry<E>>) -> Response {
    match claim_transport(&transport.registry, &entry, TransportKind::ServerSentEvents) {
        Ok(true) => {}
        // One event stream per connection, for its whole life.
        Ok(false) => {
            return plain(
                StatusCode::CONFLICT,
                "Connection already has an event stream.",
            )
        }
        Err((status, message)) => return plain(status, message),
    }
    entry.state.lock().attached = true;
    entry
        .session
        .transport_started(TransportKind::ServerSentEvents);

    let guard = EndOnDrop { transport, entry };
    // A comment first: some browsers fire `open` only once bytes arrive.
    let preamble = futures_util::stream::once(async {
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b":\r\n"))
    });
    let events = futures_util::stream::unfold(
        (guard, Vec::new(), false),
        |(guard, mut frames, done)| async move {
            if done {
                return None;
            }
            let max = guard.transport.options.max_batch_bytes;
            let drained = guard.entry.session.outbox().drain(&mut frames, max).await;
            let closing = matches!(drained, Drained::Closed(_));
            if frames.is_empty() && closing {
                return None;
            }
            let mut out = BytesMut::new();
            for frame in frames.drain(..) {
                write_event(&frame, &mut out);
            }
            Some((Ok(out.freeze()), (guard, frames, closing)))
        },
    );
    let body = Body::from_stream(futures_util::StreamExt::chain(preamble, events));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache,no-store"),
            (header::PRAGMA, "no-cache"),
            (header::CONTENT_ENCODING, "identity"),
            // Ask nginx not to buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// One SSE event: every line of the payload prefixed with `data: `, then an empty line.
fn write_event(payload: &[u8], out: &mut BytesMut) {
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Ends the connection when the response body is dropped: the client went away, or the
/// stream finished after the connection closed.
struct EndOnDrop<E: Endpoint> {
    transport: Arc<Transport<E>>,
    entry: Arc<Entry<E>>,
}

impl<E: Endpoint> Drop for EndOnDrop<E> {
    fn drop(&mut self) {
        {
            let mut st = self.entry.state.lock();
            st.attached = false;
            st.terminated = true;
        }
        self.transport.registry.remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_framing_splits_lines() {
        let mut out = BytesMut::new();
        write_event(b"{\"type\":6}\x1e", &mut out);
        assert_eq!(&out[..], b"data: {\"type\":6}\x1e\r\n\r\n");
        out.clear();
        write_event(b"a\r\nb", &mut out);
        assert_eq!(&out[..], b"data: a\r\ndata: b\r\n\r\n");
    }
}
