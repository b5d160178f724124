//! Keep-alive, timeouts, Bitwarden's heartbeat and graceful shutdown, with shortened timers:
//! keep-alive 200 ms, client timeout 1 s, handshake timeout 500 ms.

mod common;

use std::time::{Duration, Instant};

use pushwarden::config::Config;
use pushwarden_client::{ClientEvent, HubClient, Protocol};
use tokio_tungstenite::tungstenite::Message;

use common::*;

const USER: &str = "22222222-bbbb-4bbb-8bbb-000000000001";
const KEEP_ALIVE: Duration = Duration::from_millis(200);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

fn keepalive_config() -> Config {
    let mut config = config();
    config.hub.keep_alive_interval = KEEP_ALIVE;
    config.hub.client_timeout = CLIENT_TIMEOUT;
    config.hub.handshake_timeout = HANDSHAKE_TIMEOUT;
    config
}

fn data_frames(client: &HubClient) -> u64 {
    let counts = client.frame_counts();
    counts.text + counts.binary
}

/// Pings every 200 ms for `duration`, failing on any event; returns the data frames the
/// server sent meanwhile (its pings, since nothing else is sent).
async fn ping_along(client: &mut HubClient, duration: Duration) -> u64 {
    let before = data_frames(client);
    let deadline = tokio::time::Instant::now() + duration;
    let mut ticker = tokio::time::interval(KEEP_ALIVE);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => client.send_ping().await.expect("ping"),
            event = client.next_event() => match event {
                Ok(Some(ClientEvent::Invocation { target, .. })) if target == "Heartbeat" => {}
                other => panic!("an idle, pinging client got {other:?}"),
            },
        }
    }
    data_frames(client) - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinging_client_gets_pings_and_stays_connected() {
    let server = start(keepalive_config()).await;
    let addr = server.addr;
    let mut json = connect_user(addr, USER, Some("ChromeBrowser"), Protocol::Json).await;
    let mut msgpack = connect_user(addr, USER, Some("Android"), Protocol::MessagePack).await;
    let anonymous_url = anonymous_url(addr, "33333333-cccc-4ccc-8ccc-000000000001");
    let mut anonymous = connect(&anonymous_url, None, Protocol::MessagePack).await;

    let watch = Duration::from_secs(2);
    let (json_pings, msgpack_pings, anonymous_pings) = tokio::join!(
        ping_along(&mut json, watch),
        ping_along(&mut msgpack, watch),
        ping_along(&mut anonymous, watch),
    );
    // One Ping per 200 ms of silence from the server: about 10 in 2 s.
    for (name, pings) in [
        ("JSON", json_pings),
        ("MessagePack", msgpack_pings),
        ("anonymous", anonymous_pings),
    ] {
        assert!(
            (6..=14).contains(&pings),
            "{name}: {pings} pings in {watch:?}"
        );
    }
    assert_eq!(json.frame_counts().binary, 0, "JSON pings are text frames");
    // As ASP.NET Core does, the handshake response already uses the protocol's format.
    assert_eq!(
        msgpack.frame_counts().text,
        0,
        "MessagePack frames are binary"
    );
    for client in [&json, &msgpack] {
        let last = client.last_received().expect("received something");
        assert!(last.elapsed() < Duration::from_millis(500));
    }

    // Still connected and delivering after 2 s, twice the client timeout.
    assert_eq!(send_logout(addr, USER, "after-2s").await, 2);
    expect_marked(&mut json, "after-2s").await;
    expect_marked(&mut msgpack, "after-2s").await;
    assert_eq!(server.notifications.hub().connection_count(), 2);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_client_timeout() {
    let server = start(keepalive_config()).await;
    let addr = server.addr;
    let timed = |protocol| async move {
        let mut client = connect_user(addr, USER, None, protocol).await;
        let connected = Instant::now();
        let (error, allow_reconnect) = expect_close(&mut client, STEP).await;
        (connected.elapsed(), error, allow_reconnect)
    };
    let (json, msgpack) = tokio::join!(timed(Protocol::Json), timed(Protocol::MessagePack));
    for (elapsed, error, allow_reconnect) in [json, msgpack] {
        let error = error.expect("the Close says why");
        assert!(error.contains("Client timeout elapsed"), "{error}");
        assert!(allow_reconnect, "a timed-out client may reconnect");
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_millis(1600),
            "closed after {elapsed:?}, client timeout {CLIENT_TIMEOUT:?}"
        );
    }
    let metrics = metrics_text(addr).await;
    assert!(
        metric_sum(&metrics, "pushwarden_client_timeouts_total") >= 2.0,
        "{metrics}"
    );
    assert_eq!(send_logout(addr, USER, "gone").await, 0);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_never_handshakes_is_closed() {
    let server = start(keepalive_config()).await;
    let addr = server.addr;
    let token = user_token(USER, None, serde_json::json!({}));
    let mut ws = raw_ws(&format!("ws://{addr}/hub?access_token={token}")).await;
    let opened = Instant::now();
    // No handshake response (there was no handshake) and no Close message: just the close.
    match raw_next(&mut ws, STEP).await {
        None | Some(Message::Close(_)) => {}
        Some(other) => panic!("expected the socket to close, got {other:?}"),
    }
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed <= Duration::from_secs(1),
        "closed after {elapsed:?}, handshake timeout {HANDSHAKE_TIMEOUT:?}"
    );
    // The same on the anonymous hub.
    let mut ws = raw_ws(&format!("ws://{addr}/anonymous-hub?Token=x")).await;
    let opened = Instant::now();
    match raw_next(&mut ws, STEP).await {
        None | Some(Message::Close(_)) => {}
        Some(other) => panic!("expected the socket to close, got {other:?}"),
    }
    assert!(opened.elapsed() <= Duration::from_secs(1));
    wait_for_connections(&server, 0).await;
    wait_until(
        "no connections on /anonymous-hub",
        || server.notifications.anonymous_hub().connection_count(),
        |count| *count == 0,
    )
    .await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_tells_every_client_to_reconnect() {
    let mut config = keepalive_config();
    // Long client timeout: nothing but the shutdown may close these connections.
    config.hub.client_timeout = Duration::from_secs(30);
    config.shutdown_timeout = Duration::from_secs(5);
    let server = start(config).await;
    let addr = server.addr;
    let mut clients = [
        connect_user(addr, USER, Some("ChromeBrowser"), Protocol::Json).await,
        connect_user(addr, USER, Some("Android"), Protocol::MessagePack).await,
        connect(&anonymous_url(addr, "r1"), None, Protocol::Json).await,
        connect(&anonymous_url(addr, "r2"), None, Protocol::MessagePack).await,
    ];
    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    let closes = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|client| expect_close(client, Duration::from_secs(3))),
    )
    .await;
    for (error, allow_reconnect) in closes {
        assert_eq!(error, None);
        assert!(allow_reconnect);
    }
    tokio::time::timeout(Duration::from_secs(4), shutdown)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task")
        .expect("shutdown");
    // Every client left promptly, so shutdown did not wait out its 5 s grace period.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let refused = HubClient::connect(
        &hub_url(addr),
        pushwarden_client::ConnectOptions {
            access_token: Some(user_token(USER, None, serde_json::json!({}))),
            ..Default::default()
        },
    )
    .await;
    assert!(refused.is_err(), "the server no longer accepts connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_reaches_hub_connections_only() {
    let mut config = config();
    config.hub.heartbeat_interval = Duration::from_millis(300);
    let server = start(config).await;
    let addr = server.addr;
    let mut json = connect_user(addr, USER, None, Protocol::Json).await;
    let mut msgpack = connect_user(addr, USER, None, Protocol::MessagePack).await;
    let mut anonymous = connect(&anonymous_url(addr, "r"), None, Protocol::Json).await;

    let (j, m) = tokio::join!(heartbeats(&mut json), heartbeats(&mut msgpack));
    assert!(j >= 2, "JSON connection got {j} heartbeats in 1 s");
    assert!(m >= 2, "MessagePack connection got {m} heartbeats in 1 s");
    // The anonymous hub has no heartbeat (expect_nothing ignores Heartbeat, so look directly).
    match tokio::time::timeout(Duration::from_millis(400), anonymous.next_event()).await {
        Err(_) => {}
        Ok(other) => panic!("the anonymous hub got {other:?}"),
    }
    server.shutdown().await.expect("shutdown");
}

/// Counts `Heartbeat` invocations (no arguments) over one second; anything else fails.
async fn heartbeats(client: &mut HubClient) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut count = 0;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return count,
            Ok(Ok(Some(ClientEvent::Invocation { target, arguments })))
                if target == "Heartbeat" =>
            {
                assert!(
                    arguments.is_empty(),
                    "Heartbeat has no arguments: {arguments:?}"
                );
                count += 1;
            }
            Ok(other) => panic!("expected heartbeats, got {other:?}"),
        }
    }
}
