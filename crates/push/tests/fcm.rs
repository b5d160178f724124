//! FCM HTTP v1 client against the FCM fake from `pushwarden-fakes` (there is no FCM
//! emulator, spec §6.2): its OAuth token endpoint verifies the RS256 assertion, and its send
//! endpoint checks the bearer, the path and the message schema, then answers scripted device
//! tokens with FCM's errors.

use std::sync::Arc;
use std::time::Duration;

use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig, FcmErrorReply};
use pushwarden_fakes::Reply;
use pushwarden_push::clock::ManualClock;
use pushwarden_push::fcm::{bitwarden_data, FcmClient, Outcome, ServiceAccount, SCOPE};
use serde_json::{json, Value};
use url::Url;

const PROJECT: &str = "pushwarden-test";

struct Harness {
    fake: FakeFcm,
    base: Url,
}

async fn start_fake(expires_in: u64) -> Harness {
    let fake = FakeFcm::start(FakeFcmConfig {
        project_id: PROJECT.into(),
        addr: None,
        token_lifetime_secs: expires_in,
    })
    .await
    .expect("start fake FCM");
    let base = Url::parse(&fake.url()).expect("base url");
    Harness { fake, base }
}

/// The fake's service-account file with `token_uri` and `client_email` replaced.
fn account_json(h: &Harness, token_uri: &str, client_email: &str) -> String {
    let mut account: Value =
        serde_json::from_str(&h.fake.service_account_json()).expect("service account JSON");
    account["token_uri"] = json!(token_uri);
    account["client_email"] = json!(client_email);
    account.to_string()
}

/// What the Bitwarden Android app needs from every message: string `type` and `payload` in
/// `data`, and high priority so a dozing phone wakes up.
fn assert_bitwarden_message(message: &Value) {
    let data = message["data"].as_object().expect("message.data");
    for key in ["type", "payload"] {
        assert!(
            data.get(key).is_some_and(Value::is_string),
            "data.{key}: {message}"
        );
    }
    assert_eq!(message.pointer("/android/priority"), Some(&json!("high")));
}

fn client(h: &Harness) -> FcmClient {
    let account = ServiceAccount::from_json(&h.fake.service_account_json()).expect("account");
    FcmClient::new(account, Some(h.base.clone())).expect("client")
}

fn sample_data() -> serde_json::Map<String, Value> {
    bitwarden_data(11, r#"{"UserId":"u1","Date":"2026-01-01T00:00:00Z"}"#, None)
}

#[tokio::test]
async fn scripted_outcomes_and_token_is_cached() {
    let h = start_fake(3600).await;
    let fcm = client(&h);
    let data = sample_data();
    let fake = &h.fake;
    fake.script("gone", Reply::new(404, "UNREGISTERED"), 1);
    // INVALID_ARGUMENT's default text is FCM's "not a valid FCM registration token".
    fake.script("bad-token", Reply::new(400, "INVALID_ARGUMENT"), 1);
    fake.script_error(
        "bad-token-field",
        FcmErrorReply::new(400, Some("INVALID_ARGUMENT"))
            .with_message("Invalid value at 'message'")
            .with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "Invalid token"}],
            })),
        1,
    );
    fake.script_error(
        "too-big",
        FcmErrorReply::new(400, Some("INVALID_ARGUMENT"))
            .with_message("Android message is too big"),
        1,
    );
    fake.script(
        "quota",
        Reply::new(429, "QUOTA_EXCEEDED").with_retry_after(17),
        1,
    );
    fake.script("unavailable", Reply::new(503, "UNAVAILABLE"), 1);
    fake.script_error(
        "internal",
        FcmErrorReply::new(500, Some("INTERNAL")).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "1.5s",
        })),
        1,
    );
    fake.script("apns-auth", Reply::new(401, "THIRD_PARTY_AUTH_ERROR"), 1);
    fake.script("other-project", Reply::new(403, "SENDER_ID_MISMATCH"), 1);

    match fcm.send("ok-1", &data).await {
        Outcome::Delivered { name } => {
            assert!(
                name.starts_with(&format!("projects/{PROJECT}/messages/")),
                "{name}"
            )
        }
        other => panic!("expected Delivered, got {other:?}"),
    }
    assert_eq!(fcm.send("gone", &data).await, Outcome::Gone);
    assert_eq!(fcm.send("bad-token", &data).await, Outcome::Gone);
    assert_eq!(fcm.send("bad-token-field", &data).await, Outcome::Gone);

    match fcm.send("too-big", &data).await {
        Outcome::Permanent { status, reason } => {
            assert_eq!(status.map(|s| s.as_u16()), Some(400));
            assert!(reason.contains("too big"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    match fcm.send("quota", &data).await {
        Outcome::Retry {
            after,
            reason,
            throttled,
        } => {
            assert_eq!(after, Some(Duration::from_secs(17)));
            assert!(reason.contains("QUOTA_EXCEEDED"), "{reason}");
            assert!(throttled, "429 QUOTA_EXCEEDED asks us to slow down");
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    match fcm.send("unavailable", &data).await {
        Outcome::Retry {
            after,
            reason,
            throttled,
        } => {
            assert_eq!(after, None);
            assert!(reason.contains("UNAVAILABLE"), "{reason}");
            assert!(!throttled, "503 is trouble at FCM, not our rate");
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    match fcm.send("internal", &data).await {
        // No Retry-After header here; the RetryInfo detail supplies the delay.
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_millis(1500))),
        other => panic!("expected Retry, got {other:?}"),
    }
    match fcm.send("apns-auth", &data).await {
        Outcome::Permanent { status, reason } => {
            assert_eq!(status.map(|s| s.as_u16()), Some(401));
            assert!(reason.contains("THIRD_PARTY_AUTH_ERROR"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    match fcm.send("other-project", &data).await {
        Outcome::Permanent { status, reason } => {
            assert_eq!(status.map(|s| s.as_u16()), Some(403));
            assert!(reason.contains("SENDER_ID_MISMATCH"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    for i in 0..5 {
        assert!(matches!(
            fcm.send(&format!("ok-more-{i}"), &data).await,
            Outcome::Delivered { .. }
        ));
    }

    // 15 sends, one token: THIRD_PARTY_AUTH_ERROR is about Firebase's APNs credentials and
    // must not be mistaken for a bad bearer.
    assert_eq!(h.fake.token_requests(), 1);
    assert_eq!(h.fake.requests(), 15);
    // Every message passed the fake's schema checks before its scripted answer.
    assert!(h.fake.rejections().is_empty(), "{:?}", h.fake.rejections());
    let received = h.fake.received();
    assert_eq!(received.len(), 6);
    for message in &received {
        assert_bitwarden_message(&message.body);
    }
}

#[tokio::test]
async fn message_carries_bitwarden_data_as_strings() {
    let h = start_fake(3600).await;
    let fcm = client(&h);
    let payload = r#"{"Id":"c1","UserId":"u1","RevisionDate":"2026-01-01T00:00:00Z"}"#;
    let data = bitwarden_data(1, payload, Some("device-abc"));
    assert!(matches!(
        fcm.send("ok-android", &data).await,
        Outcome::Delivered { .. }
    ));

    let received = h.fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0].body;
    assert_bitwarden_message(sent);
    assert_eq!(
        sent,
        &json!({
            "token": "ok-android",
            "data": {"type": "1", "payload": payload, "contextId": "device-abc"},
            "android": {"priority": "high"},
        })
    );
    // The app parses `payload` as JSON text, so it must survive as such.
    let inner: Value = serde_json::from_str(
        sent.pointer("/data/payload")
            .and_then(Value::as_str)
            .expect("payload string"),
    )
    .expect("payload is JSON");
    assert_eq!(inner["Id"], "c1");

    let without_context = bitwarden_data(25, "{}", None);
    assert!(!without_context.contains_key("contextId"));
    assert_eq!(without_context["type"], "25");
}

#[tokio::test]
async fn concurrent_sends_share_one_token_request() {
    let h = start_fake(3600).await;
    h.fake.set_token_delay(Duration::from_millis(200));
    let fcm = Arc::new(client(&h));
    let data = Arc::new(sample_data());

    let mut tasks = Vec::new();
    for i in 0..20 {
        let fcm = fcm.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            fcm.send(&format!("ok-{i}"), &data).await
        }));
    }
    for task in tasks {
        let outcome = task.await.expect("task");
        assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    }
    assert_eq!(h.fake.token_requests(), 1);
}

/// Sends `count` messages at once through `fcm` and checks that each was delivered.
async fn burst(fcm: &Arc<FcmClient>, round: usize, count: usize) {
    let data = Arc::new(sample_data());
    let mut tasks = Vec::new();
    for i in 0..count {
        let fcm = fcm.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            fcm.send(&format!("ok-{round}-{i}"), &data).await
        }));
    }
    for task in tasks {
        let outcome = task.await.expect("task");
        assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    }
}

#[tokio::test]
async fn concurrent_sends_share_one_http2_connection() {
    const BURST: usize = 200;
    let h = start_fake(3600).await;
    // Answers are held back so that the burst's requests are in flight together.
    h.fake.set_delay(Duration::from_millis(100));
    let fcm = Arc::new(client(&h));

    burst(&fcm, 0, BURST).await;
    assert_eq!(h.fake.requests(), BURST);
    assert_eq!(h.fake.received().len(), BURST);
    assert_eq!(h.fake.token_requests(), 1);
    // The fake counts every TCP connection it accepted, and sorts those that carried a
    // request by protocol: one HTTP/2 connection for all 200 messages, one HTTP/1.1
    // connection for the token endpoint (a separate client, as any OAuth server must do).
    assert_eq!(
        h.fake.http2_connections(),
        1,
        "messages share one connection"
    );
    assert_eq!(
        h.fake.http1_connections(),
        1,
        "the token endpoint's connection"
    );
    assert_eq!(h.fake.connections(), 2, "no connection without a request");
    let overlapping = h.fake.max_concurrent_requests();
    assert!(
        overlapping > 1,
        "streams must be multiplexed, not serialised: {overlapping}"
    );

    // The next burst finds the connection open: nothing new is dialled.
    burst(&fcm, 1, BURST).await;
    assert_eq!(h.fake.requests(), 2 * BURST);
    assert_eq!(h.fake.token_requests(), 1);
    assert_eq!(h.fake.http2_connections(), 1);
    assert_eq!(h.fake.http1_connections(), 1);
    assert_eq!(h.fake.connections(), 2);
    assert!(h.fake.rejections().is_empty(), "{:?}", h.fake.rejections());
    eprintln!("most requests in flight at once: {overlapping}");
}

#[tokio::test]
async fn short_lived_token_is_refreshed() {
    // expires_in 2 s: the client refreshes at half-life (the 5-minute margin does not fit).
    let h = start_fake(2).await;
    let clock = ManualClock::new();
    let fcm = client(&h).with_clock(clock.clone());
    let data = sample_data();

    assert!(matches!(
        fcm.send("ok-1", &data).await,
        Outcome::Delivered { .. }
    ));
    assert!(matches!(
        fcm.send("ok-2", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_requests(), 1);

    // Still fresh just before half-life, renewed once it is reached.
    clock.advance(Duration::from_millis(999));
    assert!(matches!(
        fcm.send("ok-2b", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_requests(), 1);
    clock.advance(Duration::from_millis(1));
    assert!(matches!(
        fcm.send("ok-3", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_requests(), 2);
    assert!(matches!(
        fcm.send("ok-4", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_requests(), 2);
}

#[tokio::test]
async fn rejected_bearer_is_refreshed_once() {
    let h = start_fake(3600).await;
    let fcm = client(&h);
    let data = sample_data();

    assert!(matches!(
        fcm.send("ok-1", &data).await,
        Outcome::Delivered { .. }
    ));
    // Revoke the cached token server-side: the next send gets 401, refreshes, and succeeds.
    h.fake.revoke_access_tokens();
    assert!(matches!(
        fcm.send("ok-2", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_requests(), 2);
    assert_eq!(h.fake.requests(), 3);

    // If FCM keeps refusing, the client gives up after one retry instead of looping.
    h.fake.script("ok-3", Reply::new(401, "UNAUTHENTICATED"), 2);
    match fcm.send("ok-3", &data).await {
        Outcome::Permanent { status, .. } => assert_eq!(status.map(|s| s.as_u16()), Some(401)),
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(h.fake.token_requests(), 3);
    assert_eq!(h.fake.requests(), 5);
}

#[tokio::test]
async fn rejected_assertion_is_permanent() {
    let h = start_fake(3600).await;
    // The fake only trusts its own client_email as issuer, like Google only trusts the key's
    // owner.
    let account = ServiceAccount::from_json(&account_json(
        &h,
        h.fake.token_url(),
        "intruder@example.com",
    ))
    .expect("account");
    let fcm = FcmClient::new(account, Some(h.base.clone())).expect("client");
    match fcm.send("ok-1", &sample_data()).await {
        Outcome::Permanent { status, reason } => {
            assert_eq!(status.map(|s| s.as_u16()), Some(400));
            assert!(reason.contains("invalid_grant"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(h.fake.requests(), 0);
}

#[tokio::test]
async fn network_failure_is_retry() {
    let h = start_fake(3600).await;
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let account = ServiceAccount::from_json(&h.fake.service_account_json()).expect("account");
    let fcm = FcmClient::new(
        account,
        Some(Url::parse(&format!("http://{closed}")).expect("url")),
    )
    .expect("client");
    assert!(matches!(
        fcm.send("ok-1", &sample_data()).await,
        Outcome::Retry { after: None, .. }
    ));

    // Same when the token endpoint itself is unreachable.
    let account = ServiceAccount::from_json(&account_json(
        &h,
        &format!("http://{closed}/token"),
        h.fake.client_email(),
    ))
    .expect("account");
    let fcm = FcmClient::new(account, Some(h.base.clone())).expect("client");
    assert!(matches!(
        fcm.send("ok-1", &sample_data()).await,
        Outcome::Retry { .. }
    ));
}

#[tokio::test]
async fn service_account_parsing() {
    let h = start_fake(3600).await;
    let client_email = h.fake.client_email().to_owned();
    let account = ServiceAccount::from_json(&account_json(
        &h,
        "https://oauth2.googleapis.com/token",
        &client_email,
    ))
    .expect("account");
    assert_eq!(account.project_id, PROJECT);
    assert_eq!(account.client_email, client_email);
    assert_eq!(account.token_uri, "https://oauth2.googleapis.com/token");
    assert!(!format!("{account:?}").contains("PRIVATE KEY"));

    assert!(ServiceAccount::from_json("not json").is_err());
    assert!(ServiceAccount::from_json(r#"{"project_id":"p"}"#).is_err());
    let mut value: Value =
        serde_json::from_str(&account_json(&h, "https://x/token", &client_email)).expect("json");
    value["client_email"] = json!("");
    assert!(ServiceAccount::from_json(&value.to_string()).is_err());
    value["client_email"] = json!(client_email);
    value["token_uri"] = json!("not a url");
    assert!(ServiceAccount::from_json(&value.to_string()).is_err());

    value["token_uri"] = json!("https://x/token");
    value["private_key"] = json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let bad_key = ServiceAccount::from_json(&value.to_string()).expect("parses");
    assert!(FcmClient::new(bad_key, None).is_err());
    assert_eq!(SCOPE, "https://www.googleapis.com/auth/firebase.messaging");
}
