//! The transports: WebSockets after negotiate (Rust client, both protocols), stateful
//! reconnect, and Server-Sent Events and long polling driven by hand over HTTP.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use pushwarden::config::Config;
use pushwarden_client::{ConnectOptions, HubClient, Protocol};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::*;

const USER: &str = "44444444-dddd-4ddd-8ddd-000000000001";
const REQUEST: &str = "55555555-eeee-4eee-8eee-000000000001";
const HANDSHAKE_JSON: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

async fn negotiated(
    url: &str,
    token: Option<String>,
    protocol: Protocol,
    stateful: bool,
) -> HubClient {
    let options = ConnectOptions {
        access_token: token,
        protocol,
        skip_negotiation: false,
        stateful_reconnect: stateful,
        ..Default::default()
    };
    tokio::time::timeout(STEP, HubClient::connect(url, options))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_after_negotiate_in_both_protocols() {
    let server = start(config()).await;
    let addr = server.addr;
    let token = || Some(user_token(USER, Some("ChromeBrowser"), json!({})));
    let mut json_client = negotiated(&hub_url(addr), token(), Protocol::Json, false).await;
    let mut msgpack_client =
        negotiated(&hub_url(addr), token(), Protocol::MessagePack, false).await;
    // Behind a proxy that keeps the /notifications prefix.
    let prefixed = format!("http://{addr}/notifications/hub");
    let mut prefixed_client = negotiated(&prefixed, token(), Protocol::MessagePack, false).await;
    for client in [&json_client, &msgpack_client, &prefixed_client] {
        let id = client
            .connection_id()
            .expect("negotiate gave a connection id");
        assert_eq!(id.len(), 22, "{id}");
        assert!(!client.stateful_reconnect());
    }
    assert_ne!(json_client.connection_id(), msgpack_client.connection_id());

    assert_eq!(send_logout(addr, USER, "negotiated").await, 3);
    for client in [&mut json_client, &mut msgpack_client, &mut prefixed_client] {
        expect_marked(client, "negotiated").await;
    }
    let json_frames = json_client.frame_counts();
    assert!(
        json_frames.text >= 2 && json_frames.binary == 0,
        "{json_frames:?}"
    );
    let msgpack_frames = msgpack_client.frame_counts();
    assert!(
        msgpack_frames.binary >= 2 && msgpack_frames.text == 0,
        "{msgpack_frames:?}"
    );

    // The anonymous hub after negotiate keeps its Token through to the WebSocket.
    let url = format!("{}&x=1", anonymous_url(addr, REQUEST));
    let mut anonymous = negotiated(&url, None, Protocol::MessagePack, false).await;
    let delivered = send(
        addr,
        &json!({"type": 16, "payload": {"id": REQUEST, "userId": USER}, "contextId": null}),
    )
    .await;
    assert_eq!(delivered, 1);
    let (target, _) = expect_invocation(&mut anonymous, STEP).await;
    assert_eq!(target, "AuthRequestResponseRecieved");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_reconnect_is_negotiated_only_when_enabled() {
    let server = start(config()).await;
    let addr = server.addr;
    let token = || Some(user_token(USER, None, json!({})));
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let mut client = negotiated(&hub_url(addr), token(), protocol, true).await;
        assert!(client.stateful_reconnect(), "{protocol:?}");
        assert_eq!(send_logout(addr, USER, "stateful").await, 1);
        expect_marked(&mut client, "stateful").await;
        assert_eq!(client.received_trackable(), 1);
        client.send_ack().await.expect("ack");
        client.close().await.expect("close");
    }
    server.shutdown().await.expect("shutdown");

    let mut config = config();
    config.hub.stateful_reconnect = false;
    let server = start(config).await;
    let client = negotiated(&hub_url(server.addr), token(), Protocol::Json, true).await;
    assert!(!client.stateful_reconnect(), "not offered when disabled");
    server.shutdown().await.expect("shutdown");
}

async fn negotiate(addr: SocketAddr, bearer: &str, extra_query: &str) -> Value {
    let response = http()
        .post(format!(
            "http://{addr}/hub/negotiate?negotiateVersion=1{extra_query}"
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("negotiate");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("negotiate JSON")
}

fn connection_token(negotiated: &Value) -> String {
    negotiated["connectionToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no connectionToken in {negotiated}"))
        .to_owned()
}

/// JSON hub messages from a raw WebSocket, one at a time, skipping Pings.
struct JsonRecords {
    ws: RawWs,
    pending: Vec<Value>,
}

impl JsonRecords {
    async fn next(&mut self) -> Value {
        loop {
            if !self.pending.is_empty() {
                return self.pending.remove(0);
            }
            let message = raw_next(&mut self.ws, STEP).await.expect("socket open");
            let bytes = frame_bytes(&message).unwrap_or_else(|| panic!("got {message:?}"));
            for record in bytes.split(|&b| b == 0x1e).filter(|r| !r.is_empty()) {
                let value: Value = serde_json::from_slice(record).expect("JSON record");
                if value["type"] != 6 {
                    self.pending.push(value);
                }
            }
        }
    }

    async fn send(&mut self, record: Value) {
        self.ws
            .send(Message::text(format!("{record}\u{1e}")))
            .await
            .expect("send");
    }
}

fn context_of(invocation: &Value) -> &Value {
    assert_eq!(invocation["type"], 1, "{invocation}");
    assert_eq!(invocation["target"], "ReceiveMessage", "{invocation}");
    &invocation["arguments"][0]["contextId"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_reconnect_replays_what_was_not_acknowledged() {
    let mut config = config();
    config.transport.disconnect_timeout = Duration::from_secs(3);
    let server = start(config).await;
    let addr = server.addr;
    let bearer = user_token(USER, None, json!({}));
    let negotiated = negotiate(addr, &bearer, "&useStatefulReconnect=true").await;
    assert_eq!(negotiated["useStatefulReconnect"], true, "{negotiated}");
    let url = format!(
        "ws://{addr}/hub?id={}&access_token={bearer}",
        connection_token(&negotiated)
    );

    let mut first = JsonRecords {
        ws: raw_ws(&url).await,
        pending: Vec::new(),
    };
    first
        .ws
        .send(Message::text("{\"protocol\":\"json\",\"version\":2}\u{1e}"))
        .await
        .expect("handshake");
    assert_eq!(first.next().await, json!({}));
    // A second WebSocket for the same connection is refused while the first is attached.
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 409),
        "{refused:?}"
    );

    for marker in ["m1", "m2"] {
        assert_eq!(send_logout(addr, USER, marker).await, 1);
    }
    assert_eq!(context_of(&first.next().await), "m1");
    assert_eq!(context_of(&first.next().await), "m2");
    first.send(json!({"type": 8, "sequenceId": 1})).await;
    // Lose the connection without a close handshake.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        send_logout(addr, USER, "m3").await,
        1,
        "queued while disconnected"
    );

    let mut second = JsonRecords {
        ws: raw_ws(&url).await,
        pending: Vec::new(),
    };
    // No new handshake: the server resumes with Sequence and replays m2 (not acknowledged)
    // and m3 (never sent).
    assert_eq!(second.next().await, json!({"type": 9, "sequenceId": 2}));
    assert_eq!(context_of(&second.next().await), "m2");
    assert_eq!(context_of(&second.next().await), "m3");
    second.send(json!({"type": 9, "sequenceId": 1})).await;
    assert_eq!(send_logout(addr, USER, "m4").await, 1);
    assert_eq!(context_of(&second.next().await), "m4");

    let metrics = metrics_text(addr).await;
    assert!(
        metric_sum(&metrics, "pushwarden_stateful_reconnects_total") >= 1.0,
        "{metrics}"
    );
    server.shutdown().await.expect("shutdown");
}

/// Reads a streaming body until `buffer` contains `needle`.
async fn read_until(response: &mut reqwest::Response, buffer: &mut Vec<u8>, needle: &[u8]) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !buffer.windows(needle.len()).any(|w| w == needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} in {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(buffer)
                )
            })
            .expect("stream");
        match chunk {
            Some(bytes) => buffer.extend_from_slice(&bytes),
            None => panic!("stream ended: {:?}", String::from_utf8_lossy(buffer)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_by_hand() {
    let server = start(config()).await;
    let addr = server.addr;
    let bearer = user_token(USER, None, json!({}));
    let negotiated = negotiate(addr, &bearer, "").await;
    assert_eq!(negotiated["negotiateVersion"], 1);
    assert_eq!(
        negotiated["availableTransports"],
        json!([
            {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
            {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
            {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
        ])
    );
    let url = format!("http://{addr}/hub?id={}", connection_token(&negotiated));
    let client = http_streaming();

    let mut events = client
        .get(&url)
        .header("accept", "text/event-stream")
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("SSE");
    assert_eq!(events.status().as_u16(), 200);
    assert_eq!(
        events
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut buffer = Vec::new();
    read_until(&mut events, &mut buffer, b":\r\n").await;
    assert!(buffer.starts_with(b":\r\n"), "{buffer:?}");

    // One event stream per connection.
    let second = client
        .get(&url)
        .header("accept", "text/event-stream")
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("second SSE");
    assert_eq!(second.status().as_u16(), 409);

    let posted = client
        .post(&url)
        .bearer_auth(&bearer)
        .body(HANDSHAKE_JSON)
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status().as_u16(), 200);
    read_until(&mut events, &mut buffer, b"data: {}\x1e\r\n\r\n").await;

    assert_eq!(send_logout(addr, USER, "over-sse").await, 1);
    read_until(&mut events, &mut buffer, b"over-sse").await;
    let text = String::from_utf8_lossy(&buffer).into_owned();
    let event = text
        .split("\r\n\r\n")
        .find(|e| e.contains("over-sse"))
        .expect("event");
    let data = event.strip_prefix("data: ").expect("data line");
    let record: Value = serde_json::from_str(data.trim_end_matches('\u{1e}')).expect("JSON");
    assert_eq!(context_of(&record), "over-sse");
    assert_eq!(record["arguments"][0]["payload"]["userId"], USER);
    drop(events);

    // MessagePack needs binary frames, which SSE cannot carry.
    let token = connection_token(&negotiate(addr, &bearer, "").await);
    let url = format!("http://{addr}/hub?id={token}");
    let mut events = client
        .get(&url)
        .header("accept", "text/event-stream")
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("SSE");
    let mut buffer = Vec::new();
    read_until(&mut events, &mut buffer, b":\r\n").await;
    let posted = client
        .post(&url)
        .bearer_auth(&bearer)
        .body("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status().as_u16(), 200);
    read_until(&mut events, &mut buffer, b"\x1e\r\n\r\n").await;
    let text = String::from_utf8_lossy(&buffer).into_owned();
    assert!(
        text.contains(
            "data: {\"error\":\"Cannot use the 'messagepack' protocol on the current transport."
        ),
        "{text}"
    );
    server.shutdown().await.expect("shutdown");
}

/// A client without an overall request timeout, for streams.
fn http_streaming() -> reqwest::Client {
    reqwest::Client::builder().build().expect("http client")
}

async fn poll(client: &reqwest::Client, url: &str, bearer: &str) -> (u16, Vec<u8>) {
    let response = client
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("poll");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("poll body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_by_hand() {
    let mut config: Config = config();
    config.transport.long_poll_timeout = Duration::from_secs(1);
    let server = start(config).await;
    let addr = server.addr;
    let bearer = user_token(USER, None, json!({}));
    let url = format!(
        "http://{addr}/hub?id={}",
        connection_token(&negotiate(addr, &bearer, "").await)
    );
    let client = http();

    // The first poll only establishes the transport.
    assert_eq!(poll(&client, &url, &bearer).await, (200, Vec::new()));
    let posted = client
        .post(&url)
        .bearer_auth(&bearer)
        .body(HANDSHAKE_JSON)
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status().as_u16(), 200);
    assert_eq!(
        poll(&client, &url, &bearer).await,
        (200, b"{}\x1e".to_vec())
    );

    assert_eq!(send_logout(addr, USER, "over-lp").await, 1);
    let (status, body) = poll(&client, &url, &bearer).await;
    assert_eq!(status, 200);
    let record: Value =
        serde_json::from_slice(body.strip_suffix(b"\x1e").expect("separator")).expect("JSON");
    assert_eq!(context_of(&record), "over-lp");

    // Nothing to send: the poll waits for the long-poll timeout, then answers empty.
    let started = Instant::now();
    assert_eq!(poll(&client, &url, &bearer).await, (200, Vec::new()));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Long polling needs no Pings: none arrived in that second.

    // DELETE ends the connection; the poll waiting meanwhile learns so with 204.
    let pending = {
        let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
        tokio::spawn(async move { poll(&client, &url, &bearer).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deleted = client
        .delete(&url)
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status().as_u16(), 202);
    let (status, _) = tokio::time::timeout(STEP, pending)
        .await
        .expect("poll ends")
        .expect("poll task");
    assert_eq!(status, 204);
    // The connection is gone.
    assert_eq!(poll(&client, &url, &bearer).await.0, 404);
    assert_eq!(send_logout(addr, USER, "after-delete").await, 0);

    // MessagePack works over long polling: the handshake answer is JSON, then binary.
    let url = format!(
        "http://{addr}/hub?id={}",
        connection_token(&negotiate(addr, &bearer, "").await)
    );
    assert_eq!(poll(&client, &url, &bearer).await, (200, Vec::new()));
    let posted = client
        .post(&url)
        .bearer_auth(&bearer)
        .body("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status().as_u16(), 200);
    assert_eq!(
        poll(&client, &url, &bearer).await,
        (200, b"{}\x1e".to_vec())
    );
    assert_eq!(send_logout(addr, USER, "binary-lp").await, 1);
    let (status, body) = poll(&client, &url, &bearer).await;
    assert_eq!(status, 200);
    let mut reader = pushwarden_protocol::MessageReader::new(Protocol::MessagePack, 1 << 20);
    reader.push(&body);
    let message = reader
        .next()
        .expect("valid MessagePack")
        .expect("a message");
    let pushwarden_protocol::DecodedMessage::MessagePack(
        pushwarden_protocol::HubMessage::Invocation(invocation),
    ) = message
    else {
        panic!("{message:?}")
    };
    assert_eq!(invocation.target, "ReceiveMessage");
    server.shutdown().await.expect("shutdown");
}
