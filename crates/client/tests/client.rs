//! The client against a mock SignalR server (see `mock`): URLs, negotiate, handshake,
//! events in both protocols, sends and close.
// Helper functions of a test crate may panic like its tests (clippy counts only `#[test]`
// functions as tests).
#![allow(clippy::unwrap_used)]

mod mock;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushwarden_client::{Arguments, ClientError, ClientEvent, ConnectOptions, HubClient};
use pushwarden_protocol::{json, msgpack, DecodedMessage, HubMessage, Protocol};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use mock::{MockServer, Script};

fn vaultwarden_push() -> Vec<u8> {
    // [1, {}, nil, "ReceiveMessage", [{"Type": 11, "Payload": {"UserId": "u1"}}]], 5 elements.
    let value = rmpv::Value::Array(vec![
        1.into(),
        rmpv::Value::Map(vec![]),
        rmpv::Value::Nil,
        "ReceiveMessage".into(),
        rmpv::Value::Array(vec![rmpv::Value::Map(vec![
            ("Type".into(), 11.into()),
            (
                "Payload".into(),
                rmpv::Value::Map(vec![("UserId".into(), "u1".into())]),
            ),
        ])]),
    ]);
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, &value).unwrap();
    let mut framed = Vec::new();
    msgpack::write_varint(body.len(), &mut framed);
    framed.extend(body);
    framed
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn messagepack_skip_negotiation_receives_push() {
    // Ping + push in the same frame as the handshake response, like a fast server.
    let mut after = vec![0x02, 0x91, 0x06];
    after.extend(vaultwarden_push());
    let mut server = MockServer::start(Script {
        after_handshake: after,
        ..Script::default()
    })
    .await;
    let options = ConnectOptions {
        access_token: Some("a b+c/d".into()),
        ..Default::default()
    };
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(HubClient::connect(&url, options), server.accept());
    let mut client = client.unwrap();
    assert_eq!(accepted.uri, "/hub?access_token=a+b%2Bc%2Fd");
    assert_eq!(accepted.handshake.protocol, "messagepack");
    assert_eq!(accepted.handshake.version, 1);
    assert!(accepted.handshake_was_text);
    assert_eq!(client.connection_id(), None);

    let event = within(client.next_event()).await.unwrap().unwrap();
    let ClientEvent::Invocation { target, arguments } = event else {
        panic!("{event:?}")
    };
    assert_eq!(target, "ReceiveMessage");
    assert_eq!(
        arguments.to_json(),
        vec![json!({"Type": 11, "Payload": {"UserId": "u1"}})]
    );
    assert_eq!(client.received_trackable(), 1);
    assert!(client.last_received().is_some());
    assert_eq!(client.frame_counts().binary, 1);
}

#[tokio::test]
async fn json_records_split_across_frames_and_close() {
    let mut server = MockServer::start(Script::default()).await;
    let options = ConnectOptions {
        protocol: Protocol::Json,
        ..Default::default()
    };
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(HubClient::connect(&url, options), server.accept());
    let mut client = client.unwrap();
    let mut socket = accepted.socket;
    assert_eq!(accepted.handshake.protocol, "json");
    assert_eq!(accepted.uri, "/hub");

    let mut stream = Vec::new();
    json::encode(&HubMessage::Ping, &mut stream);
    json::encode(
        &HubMessage::Invocation(pushwarden_protocol::Invocation {
            headers: vec![],
            invocation_id: None,
            target: "Echo".into(),
            arguments: vec![json!("hi"), json!(2)],
            stream_ids: vec![],
        }),
        &mut stream,
    );
    stream.extend_from_slice(b"{\"type\":99}\x1e");
    json::encode(
        &HubMessage::Completion {
            headers: vec![],
            invocation_id: "1".into(),
            result: pushwarden_protocol::CompletionResult::Void,
        },
        &mut stream,
    );
    json::encode(
        &HubMessage::Close {
            error: Some("bye".into()),
            allow_reconnect: true,
        },
        &mut stream,
    );
    let (a, b) = stream.split_at(17);
    socket
        .send(Message::Text(String::from_utf8(a.to_vec()).unwrap().into()))
        .await
        .unwrap();
    socket
        .send(Message::Text(String::from_utf8(b.to_vec()).unwrap().into()))
        .await
        .unwrap();

    let event = within(client.next_event()).await.unwrap().unwrap();
    assert_eq!(
        event,
        ClientEvent::Invocation {
            target: "Echo".into(),
            arguments: Arguments::Json(vec![json!("hi"), json!(2)])
        }
    );
    let event = within(client.next_event()).await.unwrap().unwrap();
    assert!(matches!(
        event,
        ClientEvent::Other(DecodedMessage::Json(HubMessage::Completion { .. }))
    ));
    let event = within(client.next_event()).await.unwrap().unwrap();
    assert_eq!(
        event,
        ClientEvent::Close {
            error: Some("bye".into()),
            allow_reconnect: true
        }
    );
    socket.close(None).await.unwrap();
    assert!(within(client.next_event()).await.unwrap().is_none());
    assert_eq!(client.received_trackable(), 2);
    assert_eq!(client.frame_counts().text, 3);
}

#[tokio::test]
async fn sends_ping_invocation_and_raw_frames() {
    let mut server = MockServer::start(Script::default()).await;
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(
        HubClient::connect(&url, ConnectOptions::default()),
        server.accept()
    );
    let mut client = client.unwrap();
    let mut socket = accepted.socket;

    client.send_ping().await.unwrap();
    let frame = within(socket.next()).await.unwrap().unwrap();
    assert_eq!(frame, Message::Binary(vec![0x02, 0x91, 0x06].into()));

    client
        .send_invocation("Join", Arguments::MessagePack(vec!["g".into()]), Some("7"))
        .await
        .unwrap();
    let Message::Binary(bytes) = within(socket.next()).await.unwrap().unwrap() else {
        panic!()
    };
    let mut reader = pushwarden_protocol::MessageReader::new(Protocol::MessagePack, 1024);
    reader.push(&bytes);
    let Some(DecodedMessage::MessagePack(HubMessage::Invocation(inv))) = reader.next().unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (inv.target.as_str(), inv.invocation_id.as_deref()),
        ("Join", Some("7"))
    );

    let json_msg = DecodedMessage::Json(HubMessage::Ping);
    assert!(matches!(
        client.send_message(&json_msg).await,
        Err(ClientError::WrongProtocol)
    ));

    client
        .send_raw(b"{\"type\":6}\x1e".to_vec(), false)
        .await
        .unwrap();
    let frame = within(socket.next()).await.unwrap().unwrap();
    assert_eq!(frame, Message::Text("{\"type\":6}\x1e".into()));

    // Invalid UTF-8 in a text frame really goes out as such: the server's WebSocket rejects it.
    client.send_raw(vec![0xff, 0xfe], false).await.unwrap();
    assert!(within(socket.next()).await.unwrap().is_err());
}

#[tokio::test]
async fn close_sends_close_message_then_websocket_close() {
    let mut server = MockServer::start(Script::default()).await;
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(
        HubClient::connect(&url, ConnectOptions::default()),
        server.accept()
    );
    let client = client.unwrap();
    let mut socket = accepted.socket;
    let server_side = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(Ok(frame)) = socket.next().await {
            frames.push(frame);
        }
        frames
    });
    within(client.close()).await.unwrap();
    let frames = within(server_side).await.unwrap();
    assert_eq!(
        frames[0],
        Message::Binary(vec![0x04, 0x93, 0x07, 0xc0, 0xc2].into())
    );
    assert!(matches!(frames[1], Message::Close(Some(ref f)) if u16::from(f.code) == 1000));
}

#[tokio::test]
async fn handshake_error_is_reported() {
    let server = MockServer::start(Script {
        handshake_error: Some("The protocol 'messagepack' is not supported.".into()),
        ..Script::default()
    })
    .await;
    let result = within(HubClient::connect(&server.url, ConnectOptions::default())).await;
    match result {
        Err(ClientError::Handshake(message)) => {
            assert_eq!(message, "The protocol 'messagepack' is not supported.")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn negotiate_then_connect_with_token() {
    let body = r#"{"useStatefulReconnect":true,"negotiateVersion":1,"connectionId":"cid","connectionToken":"tok/1","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#;
    let mut server = MockServer::start(Script {
        negotiate_body: Some(body.into()),
        ..Script::default()
    })
    .await;
    let options = ConnectOptions {
        protocol: Protocol::Json,
        access_token: Some("jwt".into()),
        skip_negotiation: false,
        stateful_reconnect: true,
        extra_headers: vec![("X-Test".into(), "1".into())],
        local_addr: None,
    };
    let url = format!("{}?tenant=x", server.url);
    let (client, accepted) = tokio::join!(HubClient::connect(&url, options), server.accept());
    let client = client.unwrap();
    let log = server.http_log.lock().unwrap().clone();
    assert_eq!(
        log[0],
        "post /hub/negotiate?tenant=x&negotiateversion=1&usestatefulreconnect=true http/1.1"
    );
    assert!(
        log.contains(&"authorization: bearer jwt".to_string()),
        "{log:?}"
    );
    assert!(log.contains(&"x-test: 1".to_string()), "{log:?}");
    assert_eq!(accepted.uri, "/hub?tenant=x&id=tok%2F1&access_token=jwt");
    assert_eq!(accepted.handshake.version, 2);
    assert_eq!(client.connection_id(), Some("cid"));
    assert!(client.stateful_reconnect());
}

#[tokio::test]
async fn negotiate_v0_uses_connection_id() {
    let body = r#"{"connectionId":"cid0","availableTransports":[{"transport":"WebSockets","transferFormats":["Binary"]}]}"#;
    let mut server = MockServer::start(Script {
        negotiate_body: Some(body.into()),
        ..Script::default()
    })
    .await;
    let options = ConnectOptions {
        skip_negotiation: false,
        ..Default::default()
    };
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(HubClient::connect(&url, options), server.accept());
    client.unwrap();
    assert_eq!(accepted.uri, "/hub?id=cid0");
    assert_eq!(accepted.handshake.version, 1);
}

#[tokio::test]
async fn negotiate_refusals() {
    let cases = [
        (r#"{"error":"nope"}"#, "nope"),
        (
            r#"{"negotiateVersion":1,"connectionId":"c","connectionToken":"t","availableTransports":[{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#,
            "WebSockets",
        ),
        (
            r#"{"negotiateVersion":1,"connectionId":"c","connectionToken":"t","availableTransports":[{"transport":"WebSockets","transferFormats":["Text"]}]}"#,
            "Binary",
        ),
        (
            r#"{"useStatefulReconnect":true,"negotiateVersion":1,"connectionId":"c","connectionToken":"t","availableTransports":[{"transport":"WebSockets","transferFormats":["Binary"]}]}"#,
            "Stateful Reconnect",
        ),
    ];
    for (body, expected) in cases {
        let server = MockServer::start(Script {
            negotiate_body: Some(body.into()),
            ..Script::default()
        })
        .await;
        let options = ConnectOptions {
            skip_negotiation: false,
            ..Default::default()
        };
        match within(HubClient::connect(&server.url, options)).await {
            Err(ClientError::Negotiate(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn binds_to_the_requested_source_address() {
    let mut server = MockServer::start(Script::default()).await;
    let local = "127.0.0.2".parse().unwrap();
    let options = ConnectOptions {
        local_addr: Some(local),
        ..Default::default()
    };
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(HubClient::connect(&url, options), server.accept());
    client.unwrap();
    assert_eq!(accepted.peer.ip(), local);
}

#[tokio::test]
async fn malformed_server_message_is_an_error() {
    let mut server = MockServer::start(Script::default()).await;
    let url = server.url.clone();
    let (client, accepted) = tokio::join!(
        HubClient::connect(&url, ConnectOptions::default()),
        server.accept()
    );
    let mut client = client.unwrap();
    let mut socket = accepted.socket;
    socket
        .send(Message::Binary(vec![0x01, 0xc1].into()))
        .await
        .unwrap();
    socket
        .send(Message::Binary(vec![0x02, 0x91, 0x06].into()))
        .await
        .unwrap();
    assert!(matches!(
        within(client.next_event()).await,
        Err(ClientError::Protocol(_))
    ));
}

#[tokio::test]
async fn unreachable_and_unsupported() {
    assert!(matches!(
        HubClient::connect("https://127.0.0.1:1/hub", ConnectOptions::default()).await,
        Err(ClientError::Unsupported(_))
    ));
    assert!(matches!(
        HubClient::connect("gopher://x/hub", ConnectOptions::default()).await,
        Err(ClientError::InvalidUrl(_))
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/hub");
    assert!(matches!(
        HubClient::connect(&url, ConnectOptions::default()).await,
        Err(ClientError::Io(_))
    ));
}
