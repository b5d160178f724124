//! `idle.websocket` and `idle.long_polling`: connections held for `--idle`, past the 60 s read
//! timeout proxies commonly have.
//!
//! pushwarden pings a WebSocket every 15 s, so only a proxy timeout shorter than that cuts one.
//! A long poll is different: pushwarden holds it until something arrives or its long-poll
//! timeout (90 s by default) passes, and a proxy whose read timeout is shorter answers it
//! itself (nginx: 504). Both run at once, so the pair takes `--idle`.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pushwarden_protocol::{msgpack, HubMessage};
use tokio_tungstenite::tungstenite::Message;

use super::long_polling::LongPoll;
use super::websocket::{self, CLIENT_PING};
use super::ANONYMOUS_TOKEN;
use crate::net::{seconds, Net, NoAnswer};
use crate::origin::Origin;
use crate::verdict::{Check, Problem};

const WEBSOCKET: &str = "idle.websocket";
const LONG_POLLING: &str = "idle.long_polling";

pub(super) async fn run(net: &Net, idle: Duration) -> Vec<Check> {
    if idle.is_zero() {
        return [WEBSOCKET, LONG_POLLING]
            .into_iter()
            .map(|id| Check::warn(id, "skipped (--idle 0s)", None))
            .collect();
    }
    let (ws, lp) = tokio::join!(websocket_held(net, idle), long_poll_held(net, idle));
    vec![ws, lp]
}

async fn websocket_held(net: &Net, idle: Duration) -> Check {
    let url = net
        .target
        .hub("anonymous-hub", &format!("Token={ANONYMOUS_TOKEN}"));
    let mut socket = match websocket::open(net, &url).await {
        Ok(socket) => socket,
        Err(failure) => {
            let mut check = failure.into_check(WEBSOCKET);
            check.detail = format!(
                "could not open (see websocket.anonymous_hub): {}",
                check.detail
            );
            return check;
        }
    };
    let started = Instant::now();
    let end = tokio::time::Instant::now() + idle;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + CLIENT_PING, CLIENT_PING);
    let mut ping_frame = Vec::new();
    msgpack::encode(&HubMessage::Ping, &mut ping_frame);
    let mut received = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = ping.tick() => {
                if let Err(e) = socket.send(Message::binary(ping_frame.clone())).await {
                    return cut(started, format!("sending a ping failed: {e}"));
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(close))) => {
                    let why = close
                        .map(|c| format!(" ({} {})", u16::from(c.code), c.reason))
                        .unwrap_or_default();
                    return cut(started, format!("closed{why}"));
                }
                Some(Ok(_)) => received += 1,
                Some(Err(e)) => return cut(started, e.to_string()),
                None => return cut(started, "the connection ended".into()),
            },
        }
    }
    let _ = socket.close(None).await;
    let heard = match received {
        0 => String::new(),
        1 => " (1 message from pushwarden on the way)".to_owned(),
        n => format!(" ({n} messages from pushwarden on the way, its pings)"),
    };
    Check::pass(
        WEBSOCKET,
        format!("held {} and still open{heard}", seconds(idle)),
    )
}

fn cut(started: Instant, why: String) -> Check {
    Check::fail(
        WEBSOCKET,
        format!(
            "the WebSocket was cut after {}: {why}; the proxy's read timeout is shorter than pushwarden's 15 s pings",
            seconds(started.elapsed())
        ),
        Some(Problem::ReadTimeout),
    )
}

async fn long_poll_held(net: &Net, idle: Duration) -> Check {
    let poll = match LongPoll::open(net, LONG_POLLING).await {
        Ok(poll) => poll,
        Err(mut check) => {
            check.detail = format!("could not open (see long_polling): {}", check.detail);
            return check;
        }
    };
    let check = hold_polls(net, &poll, idle).await;
    poll.close(net).await;
    check
}

/// Polls until `idle` has passed; pushwarden answering a poll (its long-poll timeout) is fine,
/// anyone else answering or the connection breaking is the proxy's timeout.
async fn hold_polls(net: &Net, poll: &LongPoll, idle: Duration) -> Check {
    let started = tokio::time::Instant::now();
    let end = started + idle;
    let mut answered_by_pushwarden = Vec::new();
    let mut ping = tokio::time::interval_at(started + CLIENT_PING, CLIENT_PING);
    let ping_body = b"{\"type\":6}\x1e".to_vec();
    loop {
        let poll_started = tokio::time::Instant::now();
        let remaining = end.saturating_duration_since(poll_started);
        if remaining.is_zero() {
            break;
        }
        // Slightly past the end, so a poll still open at the end is told from one cut there.
        let request = poll.poll(net, remaining + Duration::from_millis(200));
        tokio::pin!(request);
        let outcome = loop {
            tokio::select! {
                outcome = &mut request => break outcome,
                _ = ping.tick() => {
                    // The hub closes a client it has not heard from in its client timeout.
                    let _ = poll.post(net, ping_body.clone()).await;
                }
            }
        };
        let held = poll_started.elapsed();
        match outcome {
            Err(NoAnswer::Timeout(_)) => break,
            Err(e) => {
                return Check::fail(
                    LONG_POLLING,
                    format!(
                        "a long poll was cut after {}: {e}; the proxy's read timeout is shorter than pushwarden's long-poll timeout",
                        seconds(held)
                    ),
                    Some(Problem::ReadTimeout),
                )
            }
            Ok(answer) if answer.origin() == Origin::Pushwarden && answer.status.is_success() => {
                answered_by_pushwarden.push(held);
            }
            Ok(answer) if answer.origin() == Origin::Pushwarden => {
                return Check::fail(
                    LONG_POLLING,
                    format!("a long poll ended after {}: {}", seconds(held), answer.describe()),
                    None,
                )
            }
            Ok(answer) => {
                return Check::fail(
                    LONG_POLLING,
                    format!(
                        "a long poll was answered {} after {}: the proxy's read timeout is shorter than pushwarden's long-poll timeout (PUSHWARDEN_LONG_POLL_TIMEOUT, 90 s by default)",
                        answer.describe(),
                        seconds(held)
                    ),
                    Some(Problem::ReadTimeout),
                )
            }
        }
    }
    let answered = if answered_by_pushwarden.is_empty() {
        String::new()
    } else {
        let times: Vec<String> = answered_by_pushwarden.iter().map(|d| seconds(*d)).collect();
        format!(
            "; pushwarden answered polls after {} (its long-poll timeout)",
            times.join(", ")
        )
    };
    Check::pass(
        LONG_POLLING,
        format!(
            "long polls held for {} were not cut{answered}",
            seconds(idle)
        ),
    )
}
