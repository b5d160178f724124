//! `sse`: Server-Sent Events. The handshake is posted first, so the first event of the stream
//! is its response: it must arrive at once. A proxy that buffers (or compresses) the stream
//! holds it back.

use std::time::Instant;

use http::Method;
use pushwarden_protocol::handshake;

use super::{negotiate, unexpected};
use crate::net::{seconds, Net, NoAnswer};
use crate::origin::Origin;
use crate::verdict::{Check, Problem};

const ID: &str = "sse";

pub(super) async fn check(net: &Net) -> Check {
    let url = match negotiate::connection_url(net, ID).await {
        Ok(url) => url,
        Err(check) => return check,
    };
    let posted = net
        .fetch(
            Method::POST,
            url.clone(),
            &[("content-type", "text/plain;charset=UTF-8")],
            Some(handshake::encode_request("json", 1)),
            net.timeout,
        )
        .await;
    match posted {
        Err(e) => {
            return Check::fail(
                ID,
                format!("posting the handshake: {e}"),
                Some(Problem::Unreachable),
            )
        }
        Ok(answer) if answer.status.as_u16() != 200 => {
            return unexpected(
                ID,
                "posting the handshake",
                &answer,
                Problem::RouteAnonymousHub,
            )
        }
        Ok(_) => {}
    }
    let started = Instant::now();
    let deadline = net.timeout;
    let stream = async {
        let response = net
            .send(
                Method::GET,
                url,
                &[
                    ("accept", "text/event-stream"),
                    // As browsers do: a proxy that compresses the stream shows itself.
                    ("accept-encoding", "gzip, deflate, br"),
                    ("cache-control", "no-cache"),
                ],
                None,
                deadline,
            )
            .await
            .map_err(|e| match e {
                // negotiate and the handshake POST just went through the same proxy, so silence
                // here is the proxy holding the response: nginx under TLS buffers the status line
                // and headers together with the body.
                NoAnswer::Timeout(_) => Check::fail(
                    ID,
                    format!(
                        "no response to the event stream, not even its headers, within {} \
                         (negotiate and the handshake went through): the proxy buffers the event stream",
                        seconds(deadline)
                    ),
                    Some(Problem::Buffering),
                ),
                e => Check::fail(ID, format!("event stream: {e}"), Some(Problem::Unreachable)),
            })?;
        let headers_after = started.elapsed();
        net.note_headers(response.headers());
        if response.status().as_u16() != 200
            || !response
                .headers()
                .contains_key(crate::origin::MARKER_HEADER)
        {
            let answer = net.read(response).await.map_err(|e| {
                Check::fail(ID, format!("event stream: {e}"), Some(Problem::Unreachable))
            })?;
            let what = if answer.origin() == Origin::Pushwarden {
                "event stream refused"
            } else {
                "event stream"
            };
            return Err(unexpected(ID, what, &answer, Problem::RouteAnonymousHub));
        }
        if let Some(encoding) = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return Err(Check::fail(
                ID,
                format!("the proxy compresses the event stream ({encoding}), which holds events back until a block fills"),
                Some(Problem::Buffering),
            ));
        }
        let mut response = response;
        let mut received = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => received.extend_from_slice(&chunk),
                Ok(None) => {
                    return Err(Check::fail(
                        ID,
                        "the event stream ended before its first event",
                        None,
                    ))
                }
                Err(e) => {
                    return Err(Check::fail(
                        ID,
                        format!("the event stream broke before its first event: {e}"),
                        None,
                    ))
                }
            }
            if let Some(event) = first_event(&received) {
                return Ok((headers_after, event));
            }
            if received.len() > 64 * 1024 {
                return Err(Check::fail(ID, "no event in the first 64 KiB", None));
            }
        }
    };
    match tokio::time::timeout(deadline, stream).await {
        Err(_) => Check::fail(
            ID,
            format!(
                "the first event did not arrive within {}: the proxy buffers the event stream",
                seconds(deadline)
            ),
            Some(Problem::Buffering),
        ),
        Ok(Err(check)) => check,
        Ok(Ok((_, event))) if !event.starts_with("{}") => Check::fail(
            ID,
            format!("the first event is not the handshake response: {event}"),
            None,
        ),
        Ok(Ok((headers_after, _))) => Check::pass(
            ID,
            format!(
                "the first event (the handshake response) arrived after {} (headers after {})",
                seconds(started.elapsed()),
                seconds(headers_after)
            ),
        ),
    }
}

/// The data of the first complete event (`data:` lines up to an empty line), if any.
fn first_event(stream: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stream).replace("\r\n", "\n");
    let complete = &text[..text.rfind("\n\n")?];
    // Comment-only blocks (a `:` preamble) are not events.
    complete.split("\n\n").find_map(|block| {
        let data: Vec<&str> = block
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|value| value.strip_prefix(' ').unwrap_or(value))
            .collect();
        (!data.is_empty()).then(|| data.join("\n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_skips_comments() {
        assert_eq!(first_event(b":\r\n"), None);
        assert_eq!(first_event(b":\r\n\r\n"), None);
        assert_eq!(
            first_event(b":\r\n\r\ndata: {}\x1e\r\n\r\n"),
            Some("{}\x1e".into())
        );
        assert_eq!(
            first_event(b":\r\ndata: {}\x1e\r\n\r\n"),
            Some("{}\x1e".into())
        );
        assert_eq!(first_event(b"data: {}\x1e\r\n"), None);
    }
}
