//! Shared helpers of the integration tests: an in-process server, tokens, hub clients,
//! `/send`, and expectations on what a client receives.
//!
//! Every test binary uses a different subset of these.
#![allow(dead_code)]

pub mod providers;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushwarden::config::{Config, HubConfig, JwtConfig, SendConfig};
use pushwarden::server::Server;
use pushwarden_auth::Minter;
use pushwarden_client::{Arguments, ClientEvent, ConnectOptions, HubClient, Protocol};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "pushwarden-integration-test-secret";
pub const SEND_KEY: &str = "pushwarden-integration-send-key";
pub const INSTALLATION: &str = "bbbbbbbb-3333-4c4c-8d8d-000000000003";

/// How long any single step may take before a test gives up.
pub const STEP: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(150);

/// Waits until `condition` holds, checking every 10 ms for up to [`STEP`]; panics with
/// `what` (and the last value seen) if it never does. Tests wait on conditions, not on time.
pub async fn wait_until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    condition: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let value = probe();
        if condition(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {STEP:?} for {what}; last seen: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `/hub` has exactly `n` connections (closing ones take a moment to leave).
pub async fn wait_for_connections(server: &Server, n: usize) {
    wait_until(
        &format!("{n} connections on /hub"),
        || server.notifications.hub().connection_count(),
        |count| *count == n,
    )
    .await;
}

/// Test defaults: random port, HS256 tokens, a `/send` key, an installation id, and a
/// heartbeat too rare to show up.
pub fn config() -> Config {
    let defaults = Config::default();
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        installation_id: Some(INSTALLATION.into()),
        jwt: JwtConfig {
            hs256_secret: Some(SECRET.into()),
            ..defaults.jwt
        },
        send: SendConfig {
            api_key: Some(SEND_KEY.into()),
        },
        hub: HubConfig {
            heartbeat_interval: Duration::from_secs(3600),
            ..defaults.hub
        },
        shutdown_timeout: Duration::from_secs(2),
        data_dir: fresh_data_dir(),
        ..defaults
    }
}

/// A data directory (and so a push database) of its own for each server a test starts.
pub fn fresh_data_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "pushwarden-test-{}-{n}-{}",
        std::process::id(),
        unix_now()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub async fn start(config: Config) -> Server {
    // Metrics recorded before the recorder exists are lost, so install it first.
    pushwarden::metrics::install();
    pushwarden::server::start(config)
        .await
        .expect("server starts")
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

pub fn mint(claims: &Value) -> String {
    Minter::Hs256(SECRET.as_bytes().to_vec())
        .mint(claims)
        .expect("mint")
}

/// Claims of a Bitwarden user access token; `extra`'s fields are added (or replace).
pub fn user_claims(sub: &str, devicetype: Option<&str>, extra: Value) -> Value {
    let now = unix_now();
    let mut claims = json!({
        "sub": sub,
        "amr": ["Application"],
        "scope": ["api", "offline_access"],
        "device": format!("device-of-{sub}"),
        "nbf": now - 10,
        "exp": now + 3600,
    });
    if let Some(dt) = devicetype {
        claims["devicetype"] = json!(dt);
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    claims
}

pub fn user_token(sub: &str, devicetype: Option<&str>, extra: Value) -> String {
    mint(&user_claims(sub, devicetype, extra))
}

pub fn hub_url(addr: SocketAddr) -> String {
    format!("http://{addr}/hub")
}

pub fn anonymous_url(addr: SocketAddr, token: &str) -> String {
    format!("http://{addr}/anonymous-hub?Token={token}")
}

/// Connects like a Bitwarden client: WebSocket straight away, no negotiate.
pub async fn connect(url: &str, token: Option<String>, protocol: Protocol) -> HubClient {
    let options = ConnectOptions {
        access_token: token,
        protocol,
        skip_negotiation: true,
        ..Default::default()
    };
    tokio::time::timeout(STEP, HubClient::connect(url, options))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A `/hub` connection of `sub`, handshake done.
pub async fn connect_user(
    addr: SocketAddr,
    sub: &str,
    devicetype: Option<&str>,
    protocol: Protocol,
) -> HubClient {
    connect(
        &hub_url(addr),
        Some(user_token(sub, devicetype, json!({}))),
        protocol,
    )
    .await
}

/// The status of a WebSocket upgrade request to `url` (`http://…/hub?access_token=…`), made
/// with plain HTTP so that a refusal's status is seen.
pub async fn upgrade_status(url: &str) -> u16 {
    http()
        .get(url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade request")
        .status()
        .as_u16()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("http client")
}

/// POSTs `body` to `/send` with `authorization` (a full header value, or none) and returns
/// the status and the body (parsed as JSON when it is JSON, else as a string).
pub async fn send_raw(
    addr: SocketAddr,
    authorization: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = http()
        .post(format!("http://{addr}/send"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(auth) = authorization {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.expect("/send request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("/send body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// POSTs an envelope to `/send` with the API key; asserts 200 and returns how many
/// connections it was delivered to.
pub async fn send(addr: SocketAddr, envelope: &Value) -> u64 {
    let (status, body) = send_raw(
        addr,
        Some(&format!("Bearer {SEND_KEY}")),
        envelope.to_string(),
    )
    .await;
    assert_eq!(status, 200, "/send {envelope} answered {body}");
    body["delivered"]
        .as_u64()
        .unwrap_or_else(|| panic!("/send answered {body}"))
}

/// Sends a LogOut (type 11) to `user`, tagged with `marker` as its context id.
pub async fn send_logout(addr: SocketAddr, user: &str, marker: &str) -> u64 {
    send(
        addr,
        &json!({"type": 11, "payload": {"userId": user, "reason": null}, "contextId": marker}),
    )
    .await
}

/// The next invocation other than Bitwarden's `Heartbeat`, or why there is none.
pub async fn try_next_invocation(
    client: &mut HubClient,
    within: Duration,
) -> Result<(String, Arguments), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return Err(format!("no invocation within {within:?}")),
            Ok(Err(e)) => return Err(format!("connection failed: {e}")),
            Ok(Ok(None)) => return Err("connection closed".into()),
            Ok(Ok(Some(ClientEvent::Invocation { target, .. }))) if target == "Heartbeat" => {}
            Ok(Ok(Some(ClientEvent::Invocation { target, arguments }))) => {
                return Ok((target, arguments))
            }
            Ok(Ok(Some(other))) => return Err(format!("expected an invocation, got {other:?}")),
        }
    }
}

/// Checks that nothing but `Heartbeat` (and pings, which the client skips) arrives for
/// `for_duration`, and that the connection stays open.
pub async fn check_nothing(client: &mut HubClient, for_duration: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + for_duration;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return Ok(()),
            Ok(Ok(Some(ClientEvent::Invocation { target, .. }))) if target == "Heartbeat" => {}
            Ok(Ok(Some(event))) => return Err(format!("expected nothing, got {event:?}")),
            Ok(Ok(None)) => return Err("expected nothing, but the connection closed".into()),
            Ok(Err(e)) => return Err(format!("expected nothing, but the connection failed: {e}")),
        }
    }
}

pub async fn expect_invocation(client: &mut HubClient, within: Duration) -> (String, Arguments) {
    try_next_invocation(client, within)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn expect_nothing(client: &mut HubClient, for_duration: Duration) {
    check_nothing(client, for_duration)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Expects a `ReceiveMessage` whose argument carries `marker` as its context id.
pub async fn expect_marked(client: &mut HubClient, marker: &str) {
    let (target, arguments) = expect_invocation(client, STEP).await;
    assert_eq!(target, "ReceiveMessage");
    let argument = &arguments.to_json()[0];
    let context = argument
        .get("contextId")
        .or_else(|| argument.get("ContextId"));
    assert_eq!(context, Some(&json!(marker)), "{argument}");
}

/// Expects a SignalR Close message (skipping heartbeats), then the end of the socket.
/// Returns the Close's error and allowReconnect.
pub async fn expect_close(client: &mut HubClient, within: Duration) -> (Option<String>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => panic!("no Close within {within:?}"),
            Ok(Ok(Some(ClientEvent::Invocation { target, .. }))) if target == "Heartbeat" => {}
            Ok(Ok(Some(ClientEvent::Close {
                error,
                allow_reconnect,
            }))) => break (error, allow_reconnect),
            other => panic!("expected a Close message, got {other:?}"),
        }
    };
    expect_end(client).await;
    closed
}

/// Expects the socket to end (without further hub messages).
pub async fn expect_end(client: &mut HubClient) {
    match tokio::time::timeout(STEP, client.next_event()).await {
        Ok(Ok(None)) | Ok(Err(_)) => {}
        other => panic!("expected the connection to end, got {other:?}"),
    }
}

pub async fn metrics_text(addr: SocketAddr) -> String {
    http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// Sum of every series of metric `name` (all label sets).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bare WebSocket (tungstenite, no SignalR), for misbehaving on purpose.
pub async fn raw_ws(url: &str) -> RawWs {
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("WebSocket connect timed out")
        .unwrap_or_else(|e| panic!("WebSocket connect to {url}: {e}"));
    ws
}

/// The next WebSocket message other than ping/pong; `None` when the stream ended or failed.
pub async fn raw_next(ws: &mut RawWs, within: Duration) -> Option<Message> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no WebSocket message within {within:?}"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(message))) => return Some(message),
        }
    }
}

/// Payload bytes of a data frame (text or binary).
pub fn frame_bytes(message: &Message) -> Option<Vec<u8>> {
    match message {
        Message::Text(t) => Some(t.as_bytes().to_vec()),
        Message::Binary(b) => Some(b.to_vec()),
        _ => None,
    }
}

/// `pushwarden installation create` against a data directory: (id, key).
pub fn create_installation_with_cli(env: &[(String, String)]) -> (String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushwarden"))
        .args(["installation", "create", "--email", "ops@example.com"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("pushwarden installation create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    (field("id:"), field("key:"))
}

/// Writes a key file readable by its owner only, as pushwarden requires of secret files.
pub fn write_private(path: &std::path::Path, content: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create a private file");
    std::io::Write::write_all(&mut file, content).expect("write a private file");
}
