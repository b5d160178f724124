//! Bad input gets a clear error, and the server keeps serving everyone else: each test keeps
//! one healthy connection open throughout and checks that it still receives at the end.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use pushwarden::config::Config;
use pushwarden::server::Server;
use pushwarden_auth::Minter;
use pushwarden_client::{ClientError, ConnectOptions, HubClient, Protocol};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message};

use common::*;

const ISSUER: &str = "https://identity.test";
const HEALTHY: &str = "11111111-aaaa-4aaa-8aaa-000000000001";
const OTHER: &str = "11111111-aaaa-4aaa-8aaa-000000000002";
const SLOW: &str = "11111111-aaaa-4aaa-8aaa-000000000003";
const MAX_MESSAGE: usize = 1024;

fn bad_input_config() -> Config {
    let mut config = config();
    config.jwt.issuer = Some(ISSUER.into());
    config.hub.max_message_size = MAX_MESSAGE;
    config.hub.handshake_timeout = Duration::from_secs(1);
    // Negotiated connections that never connect are reaped quickly.
    config.transport.disconnect_timeout = Duration::from_millis(500);
    config
}

fn claims(sub: &str) -> Value {
    user_claims(sub, Some("ChromeBrowser"), json!({"iss": ISSUER}))
}

fn token(sub: &str) -> String {
    mint(&claims(sub))
}

/// A server and one healthy JSON connection of user `HEALTHY`.
async fn healthy_server(config: Config) -> (Server, HubClient) {
    let server = start(config).await;
    let healthy = connect(&hub_url(server.addr), Some(token(HEALTHY)), Protocol::Json).await;
    (server, healthy)
}

/// The healthy connection saw nothing of the bad input, still receives, and is the only one.
async fn still_healthy(server: &Server, healthy: &mut HubClient) {
    expect_nothing(healthy, QUIET).await;
    assert_eq!(send_logout(server.addr, HEALTHY, "still-healthy").await, 1);
    expect_marked(healthy, "still-healthy").await;
    wait_for_connections(server, 1).await;
}

/// A WebSocket upgrade request made with plain HTTP, so the refusal's status, headers and
/// body can be inspected.
async fn raw_upgrade(addr: SocketAddr, query: &str) -> reqwest::Response {
    http()
        .get(format!("http://{addr}/hub{query}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade request")
}

fn alg_none_token(sub: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(sub).to_string());
    format!("{header}.{payload}.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_at_the_upgrade() {
    let (server, mut healthy) = healthy_server(bad_input_config()).await;
    let addr = server.addr;
    let now = unix_now();
    let mut expired = claims(OTHER);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut wrong_issuer = claims(OTHER);
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut no_amr = claims(OTHER);
    no_amr.as_object_mut().expect("object").remove("amr");
    let mut no_api_scope = claims(OTHER);
    no_api_scope["scope"] = json!(["internal"]);
    let wrongly_signed = Minter::Hs256(b"some-other-secret".to_vec())
        .mint(&claims(OTHER))
        .expect("mint");

    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "no token supplied"),
        ("expired", Some(mint(&expired)), 401, "token expired"),
        (
            "wrongly signed",
            Some(wrongly_signed),
            401,
            "invalid signature",
        ),
        (
            "wrong issuer",
            Some(mint(&wrong_issuer)),
            401,
            "wrong issuer",
        ),
        (
            "alg none",
            Some(alg_none_token(OTHER)),
            401,
            "algorithm not allowed",
        ),
        (
            "not a JWT",
            Some("not-a-jwt".into()),
            401,
            "malformed token",
        ),
        (
            "no amr",
            Some(mint(&no_amr)),
            403,
            "amr must be Application",
        ),
        (
            "no api scope",
            Some(mint(&no_api_scope)),
            403,
            "scope `api` required",
        ),
    ];
    for (label, token, status, message) in cases {
        // The Rust client sees the refused upgrade...
        let options = ConnectOptions {
            access_token: token.clone(),
            protocol: Protocol::Json,
            ..Default::default()
        };
        match HubClient::connect(&hub_url(addr), options).await {
            Err(ClientError::WebSocket(e)) => match *e {
                tungstenite::Error::Http(response) => {
                    assert_eq!(response.status().as_u16(), status, "{label}")
                }
                other => panic!("{label}: expected an HTTP refusal, got {other}"),
            },
            Ok(_) => panic!("{label}: connected"),
            Err(e) => panic!("{label}: expected an HTTP refusal, got {e}"),
        }
        // ...and the HTTP answer says why.
        let query = token.map_or(String::new(), |t| format!("?access_token={t}"));
        let response = raw_upgrade(addr, &query).await;
        assert_eq!(response.status().as_u16(), status, "{label}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(
            challenge.as_deref(),
            (status == 401).then_some("Bearer"),
            "{label}"
        );
        let body: Value = response.json().await.expect("JSON error body");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{label}: {body}");
    }

    // The same token in the Authorization header works, and a bad one there is refused too.
    let response = http()
        .post(format!("http://{addr}/hub/negotiate?negotiateVersion=1"))
        .bearer_auth(alg_none_token(HEALTHY))
        .send()
        .await
        .expect("negotiate");
    assert_eq!(response.status().as_u16(), 401);
    let response = http()
        .post(format!("http://{addr}/hub/negotiate?negotiateVersion=1"))
        .bearer_auth(token(HEALTHY))
        .send()
        .await
        .expect("negotiate");
    assert_eq!(response.status().as_u16(), 200);

    let metrics = metrics_text(addr).await;
    assert!(
        metric_sum(&metrics, "pushwarden_auth_failures_total") >= 16.0,
        "auth failures are counted:\n{metrics}"
    );
    still_healthy(&server, &mut healthy).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hub_messages_close_the_connection_with_an_error() {
    let (server, mut healthy) = healthy_server(bad_input_config()).await;
    let addr = server.addr;
    let mut oversized_msgpack = Vec::new();
    let body = vec![0xc0; 2000]; // 2000 nils: well formed, but too large
    pushwarden_protocol::msgpack::write_varint(body.len(), &mut oversized_msgpack);
    oversized_msgpack.extend(body);
    let mut huge_prefix = Vec::new();
    pushwarden_protocol::msgpack::write_varint(1_000_000, &mut huge_prefix);
    huge_prefix.extend([0x91, 0x06]);
    let oversized_json = format!(
        "{{\"type\":6,\"padding\":\"{}\"}}\x1e",
        "x".repeat(MAX_MESSAGE * 2)
    );

    let cases: Vec<(&str, Protocol, Vec<u8>, &str)> = vec![
        (
            "JSON not JSON",
            Protocol::Json,
            b"{not json}\x1e".to_vec(),
            "Invalid message",
        ),
        (
            "JSON invocation without target",
            Protocol::Json,
            b"{\"type\":1,\"arguments\":[]}\x1e".to_vec(),
            "target",
        ),
        (
            "JSON oversized",
            Protocol::Json,
            oversized_json.into_bytes(),
            "maximum message size of 1024 bytes",
        ),
        (
            "MessagePack bad length prefix",
            Protocol::MessagePack,
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            "length prefix",
        ),
        (
            "MessagePack length over the limit",
            Protocol::MessagePack,
            huge_prefix,
            "maximum message size of 1024 bytes",
        ),
        (
            "MessagePack bad body",
            Protocol::MessagePack,
            vec![0x03, 0xc1, 0xc1, 0xc1],
            "Invalid message",
        ),
        (
            "MessagePack not an array",
            Protocol::MessagePack,
            vec![0x01, 0x06],
            "Invalid message",
        ),
        (
            "MessagePack oversized",
            Protocol::MessagePack,
            oversized_msgpack,
            "maximum message size of 1024 bytes",
        ),
        // Beyond what the WebSocket layer itself reads (twice the message limit, at least 4 KiB).
        (
            "WebSocket message over the transport limit",
            Protocol::Json,
            vec![b' '; 8 * 1024],
            "WebSocket",
        ),
        (
            "text frame that is not UTF-8",
            Protocol::Json,
            b"{\"type\":6,\"x\":\"\xff\xfe\"}\x1e".to_vec(),
            "WebSocket",
        ),
    ];
    for (label, protocol, bytes, message) in cases {
        let mut client = connect(&hub_url(addr), Some(token(OTHER)), protocol).await;
        wait_for_connections(&server, 2).await;
        client
            .send_raw(bytes, protocol == Protocol::MessagePack)
            .await
            .expect("send");
        let (error, allow_reconnect) = expect_close(&mut client, STEP).await;
        let error = error.unwrap_or_else(|| panic!("{label}: Close without an error"));
        assert!(
            error.starts_with("Connection closed with an error.") && error.contains(message),
            "{label}: {error}"
        );
        assert!(!allow_reconnect, "{label}");
        if message != "WebSocket" {
            // Hub-level errors end with a normal WebSocket close handshake too.
            assert_eq!(
                client.close_frame().map(|(code, _)| code),
                Some(1000),
                "{label}"
            );
        }
        wait_for_connections(&server, 1).await;
    }
    let metrics = metrics_text(addr).await;
    assert!(
        metric_sum(&metrics, "pushwarden_protocol_errors_total") >= 10.0,
        "{metrics}"
    );
    still_healthy(&server, &mut healthy).await;
    server.shutdown().await.expect("shutdown");
}

/// Sends `first` as the first WebSocket message; returns the handshake error the server
/// answered with, after checking that the server then closed.
async fn handshake_error(addr: SocketAddr, first: Message) -> String {
    let mut ws = raw_ws(&format!("ws://{addr}/hub?access_token={}", token(OTHER))).await;
    ws.send(first).await.expect("send");
    let answer = raw_next(&mut ws, STEP).await.expect("an answer");
    let Message::Text(text) = &answer else {
        panic!("expected a text handshake response, got {answer:?}")
    };
    let json = text
        .strip_suffix('\u{1e}')
        .unwrap_or_else(|| panic!("no record separator: {text:?}"));
    let response: Value = serde_json::from_str(json).expect("JSON handshake response");
    let error = response["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {response}"))
        .to_owned();
    match raw_next(&mut ws, STEP).await {
        None | Some(Message::Close(_)) => {}
        Some(other) => panic!("expected the socket to close, got {other:?}"),
    }
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_answered_then_closed() {
    let (server, mut healthy) = healthy_server(bad_input_config()).await;
    let addr = server.addr;

    let error = handshake_error(
        addr,
        Message::text("{\"protocol\":\"foo\",\"version\":1}\u{1e}"),
    )
    .await;
    assert_eq!(error, "The protocol 'foo' is not supported.");
    let error = handshake_error(
        addr,
        Message::text("{\"protocol\":\"json\",\"version\":99}\u{1e}"),
    )
    .await;
    assert!(error.contains("does not support version 99"), "{error}");
    let error = handshake_error(addr, Message::text("{\"protocol\":\"json\"}\u{1e}")).await;
    assert!(error.contains("version"), "{error}");
    // A MessagePack Ping where the handshake belongs (terminated, so it is parsed).
    let error = handshake_error(addr, Message::binary(vec![0x02, 0x91, 0x06, 0x1e])).await;
    assert!(!error.is_empty());
    let error = handshake_error(addr, Message::text("[1,2,3]\u{1e}")).await;
    assert!(!error.is_empty());
    // A "handshake" longer than the message limit without a separator.
    let error = handshake_error(addr, Message::text("{".repeat(MAX_MESSAGE + 10))).await;
    assert!(error.contains("1024"), "{error}");

    // A MessagePack Ping before the handshake, as a Bitwarden client with a broken
    // handshake would send it, is refused at once.
    let error = handshake_error(addr, Message::binary(vec![0x02, 0x91, 0x06])).await;
    assert!(
        error.contains("first message must be the JSON handshake"),
        "{error}"
    );

    // An unfinished handshake gets no answer; the connection is closed when the handshake
    // timeout (1 s) runs out.
    let mut ws = raw_ws(&format!("ws://{addr}/hub?access_token={}", token(OTHER))).await;
    let started = Instant::now();
    ws.send(Message::text("{\"protocol\":\"json\","))
        .await
        .expect("send");
    match raw_next(&mut ws, STEP).await {
        None | Some(Message::Close(_)) => {}
        Some(other) => panic!("expected the socket to close, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );

    let metrics = metrics_text(addr).await;
    assert!(
        metric_sum(&metrics, "pushwarden_handshake_failures_total") >= 8.0,
        "{metrics}"
    );
    still_healthy(&server, &mut healthy).await;
    server.shutdown().await.expect("shutdown");
}

async fn negotiate(addr: SocketAddr, bearer: &str) -> String {
    let response = http()
        .post(format!("http://{addr}/hub/negotiate?negotiateVersion=1"))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("negotiate");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("negotiate JSON");
    body["connectionToken"]
        .as_str()
        .expect("connectionToken")
        .to_owned()
}

async fn status_and_text(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transports_and_methods() {
    let (server, mut healthy) = healthy_server(bad_input_config()).await;
    let addr = server.addr;
    let bearer = token(OTHER);
    let hub = format!("http://{addr}/hub");
    let connection = negotiate(addr, &bearer).await;
    let client = http();

    let (status, text) = status_and_text(
        client
            .put(format!("{hub}?id={connection}"))
            .bearer_auth(&bearer),
    )
    .await;
    assert_eq!((status, text.as_str()), (405, "Unsupported HTTP method."));
    let (status, text) = status_and_text(client.get(&hub).bearer_auth(&bearer)).await;
    assert_eq!((status, text.as_str()), (400, "Connection ID required"));
    let (status, text) = status_and_text(
        client
            .post(format!("{hub}?id=unknown"))
            .bearer_auth(&bearer)
            .body("{}"),
    )
    .await;
    assert_eq!((status, text.as_str()), (404, "No Connection with that ID"));
    let (status, _) =
        status_and_text(client.get(format!("{hub}?id=unknown")).bearer_auth(&bearer)).await;
    assert_eq!(status, 404);
    let (status, _) =
        status_and_text(client.get(format!("{hub}/negotiate")).bearer_auth(&bearer)).await;
    assert_eq!(status, 405);
    // DELETE is for long polling only; this connection has no transport yet.
    let (status, text) = status_and_text(
        client
            .delete(format!("{hub}?id={connection}"))
            .bearer_auth(&bearer),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    // Someone else's connection token does not let another user in.
    let (status, _) = status_and_text(
        client
            .post(format!("{hub}?id={connection}"))
            .bearer_auth(token(HEALTHY))
            .body("{\"protocol\":\"json\",\"version\":1}\u{1e}"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = status_and_text(client.get(format!("http://{addr}/nowhere"))).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).ok(),
        Some(json!({"error": "not found"}))
    );

    still_healthy(&server, &mut healthy).await;
    server.shutdown().await.expect("shutdown");
}

/// ASP.NET Core's dispatcher answers any method other than GET, POST and DELETE with 405
/// before looking the connection up.
#[tokio::test]
async fn unsupported_method_is_405_whatever_the_id() {
    let server = start(bad_input_config()).await;
    let hub = format!("http://{}/hub", server.addr);
    let bearer = token(OTHER);
    let (status, _) = status_and_text(http().put(format!("{hub}?id=x")).bearer_auth(&bearer)).await;
    assert_eq!(status, 405);
    let (status, _) = status_and_text(http().put(&hub).bearer_auth(&bearer)).await;
    assert_eq!(status, 405);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rejects_bad_requests_clearly() {
    let (server, mut healthy) = healthy_server(bad_input_config()).await;
    let addr = server.addr;
    let key = format!("Bearer {SEND_KEY}");
    let logout = json!({"type": 11, "payload": {"userId": HEALTHY}, "contextId": null}).to_string();

    let (status, body) = send_raw(addr, None, logout.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "no token supplied");
    let (status, _) = send_raw(addr, Some("Bearer wrong-key"), logout.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = send_raw(addr, Some(&format!("Basic {SEND_KEY}")), logout.clone()).await;
    assert_eq!(status, 401);
    // A user's hub token is valid but not a send credential (it lacks scope internal).
    let (status, body) = send_raw(
        addr,
        Some(&format!("Bearer {}", token(HEALTHY))),
        logout.clone(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("internal"),
        "{body}"
    );

    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{\"type\": 11,".into(), "not valid JSON"),
        ("not an object", "[11]".into(), "must be a JSON object"),
        (
            "unknown type",
            json!({"type": 99, "payload": {"userId": HEALTHY}}).to_string(),
            "unknown push type 99",
        ),
        (
            "type as a string",
            json!({"type": "11", "payload": {"userId": HEALTHY}}).to_string(),
            "`type` must be an integer",
        ),
        (
            "payload not an object",
            json!({"type": 11, "payload": "x"}).to_string(),
            "`payload` must be a JSON object",
        ),
        (
            "missing userId",
            json!({"type": 11, "payload": {"reason": 0}}).to_string(),
            "push type 11 (LogOut) needs `payload.userId`",
        ),
        (
            "null userId",
            json!({"type": 11, "payload": {"userId": null}}).to_string(),
            "payload.userId",
        ),
        (
            "missing organizationId",
            json!({"type": 18, "payload": {"enabled": true}}).to_string(),
            "payload.organizationId",
        ),
        (
            "missing auth request id",
            json!({"type": 16, "payload": {"userId": HEALTHY}}).to_string(),
            "payload.id",
        ),
        (
            "bad contextId",
            json!({"type": 11, "payload": {"userId": HEALTHY}, "contextId": 5}).to_string(),
            "contextId",
        ),
    ];
    for (label, body, message) in cases {
        let (status, answer) = send_raw(addr, Some(&key), body).await;
        assert_eq!(status, 400, "{label}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{label}: {answer}"));
        assert!(error.contains(message), "{label}: {error}");
    }
    let (status, _) = send_raw(addr, Some(&key), vec![b' '; 300 * 1024]).await;
    assert_eq!(status, 413, "bodies over 256 KiB are refused");

    still_healthy(&server, &mut healthy).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_is_dropped() {
    let mut config = bad_input_config();
    config.hub.max_queued_bytes = 64 * 1024;
    config.transport.send_timeout = Duration::from_secs(1);
    let (server, mut healthy) = healthy_server(config).await;
    let addr = server.addr;

    // The slow client: a small receive buffer, a completed handshake, then no more reading.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/hub?access_token={}", token(SLOW));
    let (mut slow, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade");
    slow.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .expect("handshake");
    let answer = tokio::time::timeout(STEP, slow.next())
        .await
        .expect("handshake answer");
    assert!(
        matches!(&answer, Some(Ok(Message::Text(t))) if t.as_str() == "{}\u{1e}"),
        "{answer:?}"
    );
    wait_for_connections(&server, 2).await;

    let blob = "x".repeat(40 * 1024);
    let envelope = json!({"type": 5, "payload": {"userId": SLOW, "blob": blob}, "contextId": null});
    let started = Instant::now();
    let mut sends: u32 = 0;
    let mut slowest = Duration::ZERO;
    while server.notifications.hub().connection_count() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the slow client was never dropped ({sends} sends)"
        );
        let t = Instant::now();
        send(addr, &envelope).await;
        slowest = slowest.max(t.elapsed());
        sends += 1;
        if sends.is_multiple_of(50) {
            // Let the healthy connection prove it is not held up meanwhile.
            let marker = format!("meanwhile-{sends}");
            assert_eq!(send_logout(addr, HEALTHY, &marker).await, 1);
            expect_marked(&mut healthy, &marker).await;
        }
        if sends > 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(
        slowest < Duration::from_millis(500),
        "/send stays quick while a client does not read (slowest {slowest:?})"
    );
    // Gone for good: nothing more is queued for it.
    assert_eq!(send(addr, &envelope).await, 0);
    let metrics = metrics_text(addr).await;
    let overflows = metric_sum(&metrics, "pushwarden_queue_overflows_total");
    let timeouts = metric_sum(&metrics, "pushwarden_transport_send_timeouts_total");
    assert!(
        overflows + timeouts >= 1.0,
        "the drop is counted:\n{metrics}"
    );
    println!(
        "slow client dropped after {sends} sends in {:?} (overflows {overflows}, send timeouts {timeouts}, slowest /send {slowest:?})",
        started.elapsed()
    );
    drop(slow);
    still_healthy(&server, &mut healthy).await;
    server.shutdown().await.expect("shutdown");
}
