//! `websocket.anonymous_hub` and `websocket.hub`: the upgrade goes through the proxy with
//! negotiation skipped and the MessagePack handshake completes, as the official clients connect.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pushwarden_protocol::handshake;
use tokio_tungstenite::tungstenite::Message;

use super::{unexpected, ANONYMOUS_TOKEN};
use crate::net::{seconds, Net, Socket, UpgradeRefused};
use crate::origin::{Answer, Origin, MARKER_HEADER};
use crate::verdict::{Check, Problem};

const ANONYMOUS: &str = "websocket.anonymous_hub";
const HUB: &str = "websocket.hub";

pub(super) async fn anonymous_hub(net: &Net) -> Check {
    let url = net
        .target
        .hub("anonymous-hub", &format!("Token={ANONYMOUS_TOKEN}"));
    let started = Instant::now();
    match open_marked(net, &url).await {
        Ok((mut socket, false)) => {
            let _ = socket.close(None).await;
            not_pushwarden(ANONYMOUS, Problem::RouteAnonymousHub)
        }
        Ok((mut socket, true)) => {
            let _ = socket.close(None).await;
            Check::pass(
                ANONYMOUS,
                format!(
                    "upgraded and completed the MessagePack handshake in {}",
                    seconds(started.elapsed())
                ),
            )
        }
        Err(Failure::Refused(UpgradeRefused::Answer(answer))) => {
            refused(ANONYMOUS, &answer, Problem::RouteAnonymousHub)
        }
        Err(failure) => failure.into_check(ANONYMOUS),
    }
}

pub(super) async fn hub(net: &Net, token: Option<&str>) -> Check {
    let query = token
        .map(|t| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("access_token", t)
                .finish()
        })
        .unwrap_or_default();
    let url = net.target.hub("hub", &query);
    let started = Instant::now();
    match open_marked(net, &url).await {
        Ok((mut socket, false)) => {
            let _ = socket.close(None).await;
            not_pushwarden(HUB, Problem::RouteHub)
        }
        Ok((mut socket, true)) => {
            let _ = socket.close(None).await;
            Check::pass(
                HUB,
                format!(
                    "upgraded and completed the MessagePack handshake with the token in {}",
                    seconds(started.elapsed())
                ),
            )
        }
        Err(Failure::Refused(UpgradeRefused::Answer(answer))) => {
            if answer.origin() == Origin::Pushwarden && answer.status.as_u16() == 401 {
                if token.is_none() {
                    return Check::pass(
                        HUB,
                        "the upgrade reached pushwarden, which asks for a token (401); give --token to complete the handshake too",
                    );
                }
                return Check::fail(
                    HUB,
                    format!(
                        "pushwarden refused the token: {} (is it a current user access token for this vault?)",
                        answer.describe()
                    ),
                    None,
                );
            }
            refused(HUB, &answer, Problem::RouteHub)
        }
        Err(failure) => failure.into_check(HUB),
    }
}

/// Why a hub connection did not open.
pub(crate) enum Failure {
    Refused(UpgradeRefused),
    /// Upgraded, but the handshake did not complete.
    Handshake(String),
}

impl Failure {
    /// The verdict of a check that could not connect.
    pub(crate) fn into_check(self, id: &'static str) -> Check {
        match self {
            Failure::Refused(UpgradeRefused::Answer(answer)) => unexpected(
                id,
                "the upgrade was refused",
                &answer,
                Problem::RouteAnonymousHub,
            ),
            Failure::Refused(UpgradeRefused::NoAnswer(e)) => {
                Check::fail(id, format!("no WebSocket: {e}"), Some(Problem::Unreachable))
            }
            Failure::Handshake(e) => Check::fail(
                id,
                format!("upgraded, but the SignalR handshake did not complete: {e}"),
                None,
            ),
        }
    }
}

/// Upgrade and handshake.
pub(crate) async fn open(net: &Net, url: &url::Url) -> Result<Socket, Failure> {
    open_marked(net, url).await.map(|(socket, _)| socket)
}

/// Upgrade and handshake; also whether the upgrade answer carried pushwarden's marker.
async fn open_marked(net: &Net, url: &url::Url) -> Result<(Socket, bool), Failure> {
    let (mut socket, headers) = net.websocket(url).await.map_err(Failure::Refused)?;
    let marked = headers.contains_key(MARKER_HEADER);
    match tokio::time::timeout(net.timeout, handshake(&mut socket)).await {
        Err(_) => Err(Failure::Handshake(format!(
            "no handshake response within {}",
            seconds(net.timeout)
        ))),
        Ok(Err(e)) => Err(Failure::Handshake(e)),
        Ok(Ok(())) => Ok((socket, marked)),
    }
}

/// A hub that answered like SignalR but without pushwarden's marker: most likely the vault
/// server's own hub (Vaultwarden serves one), because the proxy sends the path there.
fn not_pushwarden(id: &'static str, route: Problem) -> Check {
    Check::warn(
        id,
        "upgraded and completed the handshake, but the answer lacks pushwarden's x-pushwarden header: another SignalR server (the vault server's own hub?) answers this path",
        Some(route),
    )
}

/// A refused upgrade: pushwarden's 400 for a request without upgrade headers means the proxy
/// dropped them; anything not from pushwarden means the path is not routed there.
fn refused(id: &'static str, answer: &Answer, route: Problem) -> Check {
    let body = answer.body_text();
    let lost_upgrade = answer.origin() == Origin::Pushwarden
        && answer.status.as_u16() == 400
        && (body.contains("Connection ID required")
            || body.contains("Connection` header")
            || body.contains("HTTP/1.1"));
    if lost_upgrade {
        return Check::fail(
            id,
            format!(
                "the request reached pushwarden without its Upgrade/Connection headers: {}",
                answer.describe()
            ),
            Some(Problem::UpgradeHeaders),
        );
    }
    if answer.origin() == Origin::Pushwarden && answer.status.as_u16() == 429 {
        return Check::warn(
            id,
            format!(
                "pushwarden's per-address rate limit answered: {} (behind a proxy, is it in PUSHWARDEN_TRUSTED_PROXIES?)",
                answer.describe()
            ),
            None,
        );
    }
    unexpected(id, "the upgrade was refused", answer, route)
}

/// Sends the MessagePack handshake request and waits for the response.
async fn handshake(socket: &mut Socket) -> Result<(), String> {
    let request = handshake::encode_request("messagepack", 1);
    let text = String::from_utf8(request).map_err(|e| e.to_string())?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| e.to_string())?;
    let mut buffer = Vec::new();
    loop {
        let frame = match socket.next().await {
            None => return Err("the connection closed".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) => frame,
        };
        match frame {
            Message::Text(text) => buffer.extend_from_slice(text.as_bytes()),
            Message::Binary(bytes) => buffer.extend_from_slice(&bytes),
            Message::Close(close) => {
                return Err(format!(
                    "closed by the other side{}",
                    close
                        .map(|c| format!(" ({} {})", u16::from(c.code), c.reason))
                        .unwrap_or_default()
                ))
            }
            _ => continue,
        }
        match handshake::parse_response(&buffer) {
            Ok(Some((response, _))) => {
                return match response.error {
                    None => Ok(()),
                    Some(error) => Err(format!("pushwarden answered the handshake: {error}")),
                }
            }
            Ok(None) if buffer.len() > 4096 => {
                return Err("a handshake response without an end".into())
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// How long after the last hub ping a connection is kept alive by sending our own; pushwarden
/// closes a client it has not heard from in its client timeout (30 s by default).
pub(crate) const CLIENT_PING: Duration = Duration::from_secs(10);
