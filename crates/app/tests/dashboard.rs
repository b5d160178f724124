//! The Grafana dashboard in `docs/grafana/` queries only metrics the service exports.
//!
//! A server goes through what each panel watches, the failures included (a refused token,
//! a bad handshake, a protocol error, a silent client, an outbox overflow, a connection over
//! the per-address cap, a rate limit, a body that never arrives, a rejected `/send`, pushes
//! retried, rejected and to dead tokens, relay tokens and limits), and then every metric name
//! in the dashboard's queries must be in its `/metrics`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::providers::{ok, token, wait_pending, Providers};
use common::{connect_user, expect_close, http, metrics_text, send, send_raw, SEND_KEY, STEP};
use futures_util::{SinkExt, StreamExt};
use pushwarden_client::Protocol;
use pushwarden_fakes::Reply;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const U: &str = "d2ea5b72-7777-4a4a-9f9f-000000000001";
const SLOW: &str = "d2ea5b72-7777-4a4a-9f9f-000000000002";
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/grafana/pushwarden.json"
);

/// Every `pushwarden_*` metric name in the dashboard's queries, histogram suffixes removed.
fn dashboard_metrics() -> BTreeSet<String> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 20,
        "the dashboard has {} queries",
        exprs.len()
    );
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("pushwarden_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            names.insert(base.to_owned());
        }
    }
    names
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The metric families `/metrics` lists (`# TYPE name kind` lines).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

async fn relay_request(addr: std::net::SocketAddr, bearer: &str) -> u16 {
    http()
        .post(format!("http://{addr}/push/send"))
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(json!({"userId": U, "type": 5, "payload": {"userId": U}}).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Connects a client that completes its handshake, then never reads; sends it 40 KiB
/// notifications until the server has dropped it.
async fn never_reads(addr: std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!(
        "ws://{addr}/hub?access_token={}",
        common::user_token(SLOW, None, json!({}))
    );
    let (mut slow, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    slow.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .unwrap();
    let _ = tokio::time::timeout(STEP, slow.next()).await;
    let blob = "x".repeat(40 * 1024);
    let envelope = json!({"type": 5, "payload": {"userId": SLOW, "blob": blob}});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while send(addr, &envelope).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never dropped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_queries_is_exported() {
    let wanted = dashboard_metrics();
    let p = Providers::start().await;
    let mut c = p.config();
    c.hub.client_timeout = Duration::from_millis(800);
    c.limits.negotiates_per_minute = 1;
    c.limits.max_connections_per_ip = 40;
    c.limits.body_read_timeout = Duration::from_millis(300);
    c.limits.trusted_proxies = "none".into();
    c.relay.token_secret = Some("dashboard-test-relay-secret".into());
    c.relay.requests_per_minute = 2;
    let server = common::start(c).await;
    let addr = server.addr;

    // Hubs: a client that stays, one that goes silent, a refused token, a bad handshake,
    // a protocol error.
    let mut client = connect_user(addr, U, None, Protocol::MessagePack).await;
    let (status, _) = send_raw(addr, Some("Bearer not-the-key-at-all"), "{}").await;
    assert_eq!(status, 401);
    let forged = format!("http://{addr}/hub?access_token=forged.token.value");
    assert_eq!(common::upgrade_status(&forged).await, 401);
    let url = format!(
        "ws://{addr}/hub?access_token={}",
        common::user_token(U, None, json!({}))
    );
    let (mut bad, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    bad.send(Message::text(
        "{\"protocol\":\"carrier-pigeon\",\"version\":1}\u{1e}",
    ))
    .await
    .unwrap();
    let _ = tokio::time::timeout(STEP, bad.next()).await;
    let (mut garbled, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    garbled
        .send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .unwrap();
    let _ = tokio::time::timeout(STEP, garbled.next()).await;
    garbled.send(Message::text("not json\u{1e}")).await.unwrap();
    let _ = tokio::time::timeout(STEP, garbled.next()).await;

    // A client that never reads is dropped: for an outbox over its bound, or for a write
    // stuck past the send timeout, whichever comes first (a server of its own for each).
    for (send_timeout, max_queued_bytes) in [(60, 64 * 1024), (1, 64 * 1024 * 1024)] {
        let mut c = common::config();
        c.transport.send_timeout = Duration::from_secs(send_timeout);
        c.hub.max_queued_bytes = max_queued_bytes;
        let server = common::start(c).await;
        never_reads(server.addr).await;
        server.shutdown().await.unwrap();
    }

    // /send: a notification delivered, and one refused for its body.
    send(addr, &json!({"type": 5, "payload": {"userId": U}})).await;
    let (status, _) = send_raw(
        addr,
        Some(&format!("Bearer {SEND_KEY}")),
        "{\"type\": \"no such type\"}",
    )
    .await;
    assert_eq!(status, 400);

    // The edge: a negotiate over the per-address rate, connections over the per-address
    // cap, a body that never arrives.
    let negotiate = || {
        http()
            .post(format!("http://{addr}/hub/negotiate?negotiateVersion=1"))
            .header(
                "authorization",
                format!("Bearer {}", common::user_token(U, None, json!({}))),
            )
            .send()
    };
    let _ = negotiate().await.unwrap();
    assert_eq!(negotiate().await.unwrap().status().as_u16(), 429);
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(
            format!(
                "POST /send HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {SEND_KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"type\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, partial.read_to_end(&mut answer)).await;

    let mut held = Vec::new();
    let mut refused_by_cap = false;
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut first = [0u8; 12];
        // A refused connection is answered 503 at once; an accepted one waits for a request.
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 && first.starts_with(b"HTTP/1.1 503") => {
                refused_by_cap = true;
                break;
            }
            _ => held.push(s),
        }
    }
    assert!(refused_by_cap, "the per-address cap never refused");
    drop(held);
    // Pushes: delivered, retried, rejected (dropped), and to a dead token.
    let (fine, busy, too_large, dead) = (token('1'), token('2'), token('3'), token('4'));
    for (device, kind, t) in [
        ("fine", 0, &fine),
        ("busy", 0, &busy),
        ("too-large", 1, &too_large),
        ("dead", 1, &dead),
    ] {
        ok(
            &server,
            "POST",
            "/push/register",
            json!({"deviceId": device, "userId": U, "identifier": format!("ident-{device}"),
                   "type": kind, "pushToken": t}),
        )
        .await;
    }
    // Two browsers behind one push service: the second waits for the origin's first answer.
    for device in ["browser-1", "browser-2"] {
        let sub = p.web.subscribe();
        ok(
            &server,
            "POST",
            "/push/register",
            json!({"deviceId": device, "userId": U, "identifier": format!("ident-{device}"),
                   "type": 9, "webPush": {"endpoint": sub.endpoint, "p256dh": sub.p256dh, "auth": sub.auth}}),
        )
        .await;
    }
    p.fcm.script(&busy, Reply::new(503, "UNAVAILABLE"), 1);
    p.apns
        .script(&too_large, Reply::new(413, "PayloadTooLarge"), 1);
    p.apns.script(&dead, Reply::new(410, "Unregistered"), 1);
    ok(
        &server,
        "POST",
        "/push/send",
        json!({"userId": U, "type": 4, "payload": {"userId": U}}),
    )
    .await;
    wait_pending(&server, 0).await;

    // The relay: a wrong key, a token, a request over the installation's rate.
    let (installation, key) = server
        .push
        .store()
        .installations()
        .create(Some("ops@example.com"), pushwarden_push::store::now_ms())
        .await
        .unwrap();
    let form = |secret: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", "api.push")
            .append_pair("client_id", &format!("installation.{}", installation.id))
            .append_pair("client_secret", secret)
            .finish()
    };
    let token_answer = |secret: String| async move {
        http()
            .post(format!("http://{addr}/connect/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&secret))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        token_answer("wrong-key".into()).await.status().as_u16(),
        400
    );
    let answer: Value = token_answer(key).await.json().await.unwrap();
    let bearer = answer["access_token"].as_str().unwrap().to_owned();
    assert_eq!(relay_request(addr, &bearer).await, 200);
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) {
        assert!(statuses.len() < 10, "never limited: {statuses:?}");
        statuses.push(relay_request(addr, &bearer).await);
    }

    // Last, the silent client: no ping within the client timeout closes it.
    let (error, _) = expect_close(&mut client, STEP).await;
    assert!(error.unwrap_or_default().contains("timeout"));

    let text = metrics_text(addr).await;
    let have = exported(&text);
    let missing: Vec<_> = wanted.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export: {missing:?}\nexported: {have:?}"
    );
    server.shutdown().await.unwrap();
}
