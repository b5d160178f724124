//! APNs client against the APNs fake from `pushwarden-fakes`: an h2c server that checks what
//! Apple checks (HTTP/2, path, provider JWT, topic, push type/priority, body) and answers
//! scripted device tokens with Apple's error responses.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushwarden_fakes::apns::{generate_key, FakeApns, FakeApnsConfig};
use pushwarden_fakes::Reply;
use pushwarden_push::apns::{
    bitwarden_payload, ApnsClient, ApnsConfig, Environment, Outcome, SendOptions,
};
use pushwarden_push::clock::ManualClock;
use url::Url;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "com.8bit.bitwarden";

/// Device tokens whose first byte names the answer the test scripts for them.
fn token(first_byte: &str) -> String {
    format!("{first_byte}{}", "ab".repeat(31))
}
const OK: &str = "00";
const UNREGISTERED: &str = "10";
const BAD_TOKEN: &str = "40";
const TOO_MANY: &str = "29";
const EXPIRED_JWT: &str = "03";
const SERVER_ERROR: &str = "50";
const SLOW_OK: &str = "05";

struct Fake {
    apns: FakeApns,
    signing_pem: String,
}

async fn start_fake() -> Fake {
    let (config, signing_pem) = FakeApnsConfig::with_new_key(KEY_ID, TEAM_ID, TOPIC);
    let apns = FakeApns::start(config).await.expect("start fake APNs");
    apns.script(
        &token(UNREGISTERED),
        Reply::new(410, "Unregistered"),
        usize::MAX,
    );
    apns.script(
        &token(BAD_TOKEN),
        Reply::new(400, "BadDeviceToken"),
        usize::MAX,
    );
    apns.script(
        &token(TOO_MANY),
        Reply::new(429, "TooManyRequests"),
        usize::MAX,
    );
    apns.script(
        &token(EXPIRED_JWT),
        Reply::new(403, "ExpiredProviderToken"),
        usize::MAX,
    );
    apns.script(
        &token(SERVER_ERROR),
        Reply::new(500, "InternalServerError"),
        usize::MAX,
    );
    Fake { apns, signing_pem }
}

fn client_for(fake: &Fake) -> ApnsClient {
    let endpoint = Url::parse(&fake.apns.url()).expect("url");
    ApnsClient::new(ApnsConfig {
        key_pem: fake.signing_pem.as_bytes().to_vec(),
        key_id: KEY_ID.into(),
        team_id: TEAM_ID.into(),
        topic: TOPIC.into(),
        endpoint: Some(endpoint),
        extra_ca_pem: None,
    })
    .expect("client")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// What the iOS app reads: data.type as a number, data.payload as a JSON string, and a silent
/// push with nothing but content-available in aps.
fn assert_bitwarden_shape(body: &serde_json::Value) {
    assert!(body["data"]["type"].is_u64(), "{body}");
    assert!(
        body["data"]["payload"]
            .as_str()
            .is_some_and(|p| serde_json::from_str::<serde_json::Value>(p).is_ok()),
        "{body}"
    );
    assert_eq!(body["aps"], serde_json::json!({ "content-available": 1 }));
}

fn sync_body() -> serde_json::Value {
    bitwarden_payload(
        5,
        r#"{"UserId":"6d9e2d8e-1d7f-4a4e-9a3c-000000000001","Date":"2026-11-28T00:00:00Z"}"#,
    )
}

async fn send_default(client: &ApnsClient, first_byte: &str, body: &serde_json::Value) -> Outcome {
    client
        .send(
            &token(first_byte),
            Environment::Production,
            body,
            SendOptions::default(),
        )
        .await
}

#[tokio::test]
async fn outcomes_follow_apples_response_table() {
    let fake = start_fake().await;
    let client = client_for(&fake);
    let body = sync_body();

    let id = "123e4567-e89b-12d3-a456-426614174000".to_owned();
    let delivered = client
        .send(
            &token(OK),
            Environment::Sandbox,
            &body,
            SendOptions {
                apns_id: Some(id.clone()),
                collapse_id: Some("sync".into()),
                expiration: Some(0),
                ..SendOptions::default()
            },
        )
        .await;
    assert_eq!(delivered, Outcome::Delivered { apns_id: Some(id) });
    let received = fake.apns.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].token, token(OK));
    assert_eq!(received[0].headers["apns-collapse-id"], "sync");
    assert_eq!(received[0].headers["apns-expiration"], "0");
    assert_bitwarden_shape(&received[0].body);

    let before = now_ms();
    match send_default(&client, UNREGISTERED, &body).await {
        Outcome::Gone {
            reason,
            timestamp_ms: Some(at),
        } => {
            assert_eq!(reason, "Unregistered");
            assert!(
                at >= before && at <= now_ms(),
                "{at} not in [{before}, now]"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        send_default(&client, BAD_TOKEN, &body).await,
        Outcome::Gone {
            reason: "BadDeviceToken".into(),
            timestamp_ms: None
        }
    );
    assert_eq!(
        send_default(&client, TOO_MANY, &body).await,
        Outcome::Retry {
            after: None,
            reason: "TooManyRequests".into(),
            throttled: true,
        }
    );
    assert_eq!(
        send_default(&client, SERVER_ERROR, &body).await,
        Outcome::Retry {
            after: None,
            reason: "InternalServerError".into(),
            throttled: false,
        }
    );

    // The token is minutes old, so re-minting it would break Apple's 20-minute rule: the
    // client must not hammer APNs, and must ask to be retried later instead.
    match send_default(&client, EXPIRED_JWT, &body).await {
        Outcome::Retry {
            after: Some(after),
            reason,
            throttled,
        } => {
            assert_eq!(reason, "ExpiredProviderToken");
            assert!(
                !throttled,
                "a token refresh that must wait is not throttling"
            );
            assert!(after > Duration::from_secs(19 * 60) && after <= Duration::from_secs(20 * 60));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fake.apns.requests_for(&token(EXPIRED_JWT)), 1);

    // Malformed tokens are refused without a request.
    let before = fake.apns.requests();
    for bad in ["abc", "zz", ""] {
        assert!(matches!(
            client
                .send(bad, Environment::Production, &body, SendOptions::default())
                .await,
            Outcome::Gone { .. }
        ));
    }
    let oversized = bitwarden_payload(5, &format!("\"{}\"", "x".repeat(5000)));
    assert!(matches!(
        client
            .send(
                &token(OK),
                Environment::Production,
                &oversized,
                SendOptions::default()
            )
            .await,
        Outcome::Permanent { status: 413, .. }
    ));
    assert!(matches!(
        client
            .send(
                &token(OK),
                Environment::Production,
                &body,
                SendOptions {
                    apns_id: Some("NOT-A-UUID".into()),
                    ..SendOptions::default()
                }
            )
            .await,
        Outcome::Permanent { status: 0, .. }
    ));
    assert_eq!(fake.apns.requests(), before);

    // One provider token served every request, and the fake found nothing to object to.
    assert_eq!(fake.apns.provider_tokens().len(), 1);
    assert!(
        fake.apns.rejections().is_empty(),
        "{:?}",
        fake.apns.rejections()
    );
}

#[tokio::test]
async fn fake_rejects_a_wrong_priority_as_a_config_problem() {
    let fake = start_fake().await;
    let client = client_for(&fake);
    let out = client
        .send(
            &token(OK),
            Environment::Production,
            &sync_body(),
            SendOptions {
                priority: 10,
                ..SendOptions::default()
            },
        )
        .await;
    assert_eq!(
        out,
        Outcome::Permanent {
            status: 400,
            reason: "BadPriority".into(),
            config_error: true
        }
    );
}

#[tokio::test]
async fn wrong_signing_key_is_a_config_error() {
    let fake = start_fake().await;
    let (other, _) = generate_key();
    let client = ApnsClient::new(ApnsConfig {
        key_pem: other.as_bytes().to_vec(),
        key_id: KEY_ID.into(),
        team_id: TEAM_ID.into(),
        topic: TOPIC.into(),
        endpoint: Some(Url::parse(&format!("{}/", fake.apns.url())).expect("url")),
        extra_ca_pem: None,
    })
    .expect("client");
    let out = client
        .send(
            &token(OK),
            Environment::Production,
            &sync_body(),
            SendOptions::default(),
        )
        .await;
    assert_eq!(
        out,
        Outcome::Permanent {
            status: 403,
            reason: "InvalidProviderToken".into(),
            config_error: true
        }
    );
}

#[tokio::test]
async fn bad_key_fails_at_construction() {
    let res = ApnsClient::new(ApnsConfig {
        key_pem: b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".to_vec(),
        key_id: KEY_ID.into(),
        team_id: TEAM_ID.into(),
        topic: TOPIC.into(),
        endpoint: None,
        extra_ca_pem: None,
    });
    assert!(res.is_err());
}

#[tokio::test]
async fn concurrent_sends_share_one_connection_and_one_token() {
    let fake = start_fake().await;
    // Holds each answer open so concurrent sends overlap on the connection.
    fake.apns.set_delay(Duration::from_millis(100));
    let client = Arc::new(client_for(&fake));
    let body = Arc::new(sync_body());

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            client
                .send(
                    &token(SLOW_OK),
                    Environment::Production,
                    &body,
                    SendOptions::default(),
                )
                .await
        }));
    }
    for t in tasks {
        assert!(matches!(
            t.await.expect("join"),
            Outcome::Delivered { apns_id: Some(_) }
        ));
    }

    assert_eq!(fake.apns.requests(), 50);
    assert_eq!(fake.apns.received().len(), 50);
    assert_eq!(
        fake.apns.connections(),
        1,
        "HTTP/2 connection must be shared"
    );
    assert!(
        fake.apns.max_concurrent_requests() > 1,
        "requests must be multiplexed, not serialised"
    );
    assert_eq!(
        fake.apns.provider_tokens().len(),
        1,
        "provider token must be reused"
    );
}

#[tokio::test]
async fn an_expired_token_is_replaced_once_twenty_minutes_have_passed() {
    let fake = start_fake().await;
    let clock = ManualClock::new();
    let client = client_for(&fake).with_clock(clock.clone());
    let body = sync_body();
    // The token was minted just now: replacing it would break Apple's 20-minute rule, so the
    // push waits for the rest of the 20 minutes instead.
    match send_default(&client, EXPIRED_JWT, &body).await {
        Outcome::Retry {
            after: Some(after), ..
        } => assert_eq!(after, Duration::from_secs(20 * 60)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fake.apns.requests_for(&token(EXPIRED_JWT)), 1);
    // 21 minutes later the same answer gets a new token and one more try with it.
    clock.advance(Duration::from_secs(21 * 60));
    let _ = send_default(&client, EXPIRED_JWT, &body).await;
    assert_eq!(fake.apns.requests_for(&token(EXPIRED_JWT)), 3);
}
