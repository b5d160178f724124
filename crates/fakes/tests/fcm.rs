//! The FCM fake: the service-account flow and sends of pushwarden's client get through; bad
//! assertions, bearers and messages are refused as Google refuses them; scripted errors come
//! back in Google's error format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig, FcmErrorReply};
use pushwarden_fakes::Reply;
use pushwarden_push::fcm::{bitwarden_data, FcmClient, Outcome, ServiceAccount};
use serde_json::{json, Value};
use url::Url;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn start() -> FakeFcm {
    FakeFcm::start(FakeFcmConfig::new("pushwarden-test"))
        .await
        .expect("start fake")
}

fn client(fake: &FakeFcm) -> FcmClient {
    let account = ServiceAccount::from_json(&fake.service_account_json()).expect("account");
    FcmClient::new(account, Some(Url::parse(&fake.url()).expect("url"))).expect("client")
}

fn private_key(fake: &FakeFcm) -> EncodingKey {
    let account: Value = serde_json::from_str(&fake.service_account_json()).expect("json");
    EncodingKey::from_rsa_pem(account["private_key"].as_str().expect("key").as_bytes())
        .expect("rsa key")
}

fn assertion(fake: &FakeFcm, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &private_key(fake)).expect("sign")
}

fn good_claims(fake: &FakeFcm) -> Value {
    let t = now();
    json!({
        "iss": fake.client_email(),
        "scope": SCOPE,
        "aud": fake.token_url(),
        "iat": t,
        "exp": t + 3600,
    })
}

async fn grant(fake: &FakeFcm, grant_type: &str, assertion: &str) -> (u16, Value) {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", grant_type)
        .append_pair("assertion", assertion)
        .finish();
    let resp = reqwest::Client::new()
        .post(fake.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

async fn access_token(fake: &FakeFcm) -> String {
    let (status, body) = grant(fake, JWT_BEARER, &assertion(fake, good_claims(fake))).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

async fn send_raw(fake: &FakeFcm, project: &str, bearer: Option<&str>, body: &Value) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/{project}/messages:send",
            fake.url()
        ))
        .json(body);
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Answer {
        status,
        body: resp.json().await.unwrap_or(Value::Null),
        retry_after,
    }
}

fn fcm_error_code(body: &Value) -> Option<&str> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError")?["errorCode"]
        .as_str()
}

#[tokio::test]
async fn the_real_client_is_accepted_and_recorded() {
    let fake = start().await;
    let fcm = client(&fake);
    let data = bitwarden_data(11, r#"{"UserId":"u1"}"#, Some("ctx"));
    match fcm.send("device-token-1", &data).await {
        Outcome::Delivered { name } => {
            assert!(
                name.starts_with("projects/pushwarden-test/messages/"),
                "{name}"
            )
        }
        other => panic!("expected Delivered, got {other:?}"),
    }
    let received = fake.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].token, "device-token-1");
    assert_eq!(
        received[0].body,
        json!({
            "token": "device-token-1",
            "data": {"type": "11", "payload": r#"{"UserId":"u1"}"#, "contextId": "ctx"},
            "android": {"priority": "high"},
        })
    );
    assert!(received[0].headers["authorization"].starts_with("Bearer ya29."));
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.requests(), 1);
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());

    // The key file looks like Google's.
    let account: Value = serde_json::from_str(&fake.service_account_json()).expect("json");
    assert_eq!(account["type"], "service_account");
    assert_eq!(account["project_id"], "pushwarden-test");
    assert_eq!(account["token_uri"], format!("{}/token", fake.url()));
    assert!(account["private_key_id"].is_string());
    assert!(account["private_key"]
        .as_str()
        .is_some_and(|k| k.contains("BEGIN PRIVATE KEY")));
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let fake = start().await;
    let good = assertion(&fake, good_claims(&fake));
    let mut tampered = good.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = good_claims(&fake);
        edit(&mut claims);
        assertion(&fake, claims)
    };
    let t = now();
    let mut kid_header = Header::new(Algorithm::RS256);
    kid_header.kid = Some("someone-elses-key".into());
    let wrong_kid =
        jsonwebtoken::encode(&kid_header, &good_claims(&fake), &private_key(&fake)).expect("sign");

    let cases = vec![
        (tampered, "invalid_grant", "Signature"),
        (
            with(&|c| c["aud"] = json!("https://oauth2.googleapis.com/token")),
            "invalid_grant",
            "audience",
        ),
        (
            with(&|c| c["iss"] = json!("intruder@example.com")),
            "invalid_grant",
            "account not found",
        ),
        (
            with(&|c| c["exp"] = json!(t + 7200)),
            "invalid_grant",
            "short-lived",
        ),
        (
            with(&|c| c["iat"] = json!(t + 600)),
            "invalid_grant",
            "future",
        ),
        (
            with(&|c| {
                c["iat"] = json!(t - 7200);
                c["exp"] = json!(t - 3600);
            }),
            "invalid_grant",
            "passed",
        ),
        (
            with(&|c| {
                c.as_object_mut().expect("obj").remove("exp");
            }),
            "invalid_grant",
            "no exp",
        ),
        (
            with(&|c| c["scope"] = json!("https://www.googleapis.com/auth/userinfo.email")),
            "invalid_scope",
            "scope",
        ),
        (wrong_kid, "invalid_grant", "kid"),
        ("garbage".to_owned(), "invalid_grant", "well-formed"),
    ];
    for (assertion, error, detail) in &cases {
        let (status, body) = grant(&fake, JWT_BEARER, assertion).await;
        assert_eq!(status, 400, "{detail}: {body}");
        assert_eq!(body["error"], *error, "{detail}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(detail)),
            "{detail}: {body}"
        );
    }

    let (status, body) = grant(&fake, "client_credentials", &good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let resp = reqwest::Client::new()
        .post(fake.token_url())
        .json(&json!({"grant_type": JWT_BEARER, "assertion": good}))
        .send()
        .await
        .expect("json grant");
    assert_eq!(resp.status().as_u16(), 400);

    assert_eq!(fake.token_requests(), cases.len() + 2);
    assert_eq!(fake.rejections().len(), cases.len() + 2);

    // cloud-platform is enough, and the good assertion still works.
    let (status, _) = grant(
        &fake,
        JWT_BEARER,
        &with(&|c| c["scope"] = json!("https://www.googleapis.com/auth/cloud-platform")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = grant(&fake, JWT_BEARER, &good).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);

    // Through the real client: an account the fake does not know is a permanent failure.
    let mut account: Value = serde_json::from_str(&fake.service_account_json()).expect("json");
    account["client_email"] = json!("intruder@example.com");
    let account = ServiceAccount::from_json(&account.to_string()).expect("account");
    let fcm = FcmClient::new(account, Some(Url::parse(&fake.url()).expect("url"))).expect("client");
    match fcm.send("t", &bitwarden_data(0, "{}", None)).await {
        Outcome::Permanent { status, reason } => {
            assert_eq!(status.map(|s| s.as_u16()), Some(400));
            assert!(reason.contains("invalid_grant"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn bearer_and_project_are_checked() {
    let fake = start().await;
    let message = json!({"message": {"token": "t", "data": {"a": "b"}}});

    let missing = send_raw(&fake, "pushwarden-test", None, &message).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"]["status"], "UNAUTHENTICATED");
    let unknown = send_raw(&fake, "pushwarden-test", Some("ya29.made-up"), &message).await;
    assert_eq!(unknown.status, 401);

    let bearer = access_token(&fake).await;
    let other_project = send_raw(&fake, "someone-else", Some(&bearer), &message).await;
    assert_eq!(other_project.status, 403);
    assert_eq!(other_project.body["error"]["status"], "PERMISSION_DENIED");
    let ok = send_raw(&fake, "pushwarden-test", Some(&bearer), &message).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Revoked tokens stop working.
    fake.revoke_access_tokens();
    let revoked = send_raw(&fake, "pushwarden-test", Some(&bearer), &message).await;
    assert_eq!(revoked.status, 401);

    // Expired tokens too.
    fake.set_token_lifetime(1);
    let short = access_token(&fake).await;
    assert_eq!(
        send_raw(&fake, "pushwarden-test", Some(&short), &message)
            .await
            .status,
        200
    );
    fake.advance_clock(Duration::from_secs(2));
    let expired = send_raw(&fake, "pushwarden-test", Some(&short), &message).await;
    assert_eq!(expired.status, 401);
    assert!(
        expired.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{}",
        expired.body
    );
    assert_eq!(fake.received().len(), 2);
    assert_eq!(fake.rejections().len(), 5);
}

#[tokio::test]
async fn messages_are_checked_against_the_v1_schema() {
    let fake = start().await;
    let bearer = access_token(&fake).await;
    let bad = [
        (
            json!({"message": {"token": "t", "data": {"n": 1}}}),
            "message.data[n]",
        ),
        (
            json!({"message": {"token": "t", "data": {"from": "x"}}}),
            "message.data[from]",
        ),
        (
            json!({"message": {"token": "t", "data": {"google.x": "x"}}}),
            "message.data[google.x]",
        ),
        (
            json!({"message": {"token": "t", "data": {"gcm.n": "x"}}}),
            "message.data[gcm.n]",
        ),
        (
            json!({"message": {"token": "t", "android": {"priority": "urgent"}}}),
            "message.android.priority",
        ),
        (
            json!({"message": {"token": "t", "android": {"ttl": "forever"}}}),
            "message.android.ttl",
        ),
        (
            json!({"message": {"token": "t", "topic": "news"}}),
            "message.topic",
        ),
        (json!({"message": {"data": {"a": "b"}}}), "message"),
        (
            json!({"message": {"token": "t", "color": "red"}}),
            "message",
        ),
        (
            json!({"message": {"token": "t", "android": {"colour": "red"}}}),
            "message.android",
        ),
        (json!({"msg": {"token": "t"}}), ""),
        (json!({"message": {"token": ""}}), "message.token"),
        (
            json!({"message": {"token": "t", "data": {"a": "x".repeat(5000)}}}),
            "message",
        ),
    ];
    for (message, field) in &bad {
        let answer = send_raw(&fake, "pushwarden-test", Some(&bearer), message).await;
        assert_eq!(answer.status, 400, "{message}");
        assert_eq!(
            answer.body["error"]["status"], "INVALID_ARGUMENT",
            "{message}"
        );
        assert_eq!(
            fcm_error_code(&answer.body),
            Some("INVALID_ARGUMENT"),
            "{message}"
        );
        let violation = &answer.body["error"]["details"][0]["fieldViolations"][0]["field"];
        assert_eq!(violation, field, "{message}: {}", answer.body);
    }
    assert!(fake.received().is_empty());
    assert_eq!(fake.rejections().len(), bad.len());

    let good = [
        json!({"message": {"token": "t", "android": {"priority": "HIGH", "ttl": "3600s"}}}),
        json!({"message": {"token": "t", "android": {"priority": "normal", "collapseKey": "sync"}}}),
        json!({"message": {"topic": "news", "notification": {"title": "hi"}}}),
        json!({"message": {"condition": "'a' in topics", "data": {"k": "v"}}}),
    ];
    for message in &good {
        let answer = send_raw(&fake, "pushwarden-test", Some(&bearer), message).await;
        assert_eq!(answer.status, 200, "{message}: {}", answer.body);
    }
    let tokens: Vec<String> = fake.received().into_iter().map(|r| r.token).collect();
    assert_eq!(tokens, ["t", "t", "/topics/news", "'a' in topics"]);

    // validate_only answers like a success but delivers nothing.
    let answer = send_raw(
        &fake,
        "pushwarden-test",
        Some(&bearer),
        &json!({"validate_only": true, "message": {"token": "t"}}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["name"],
        "projects/pushwarden-test/messages/fake_message_id"
    );
    assert_eq!(fake.received().len(), good.len());
}

#[tokio::test]
async fn scripted_errors_then_success() {
    let fake = start().await;
    let bearer = access_token(&fake).await;
    fake.script(
        "dev-1",
        Reply::new(503, "UNAVAILABLE").with_retry_after(9),
        2,
    );
    let message = json!({"message": {"token": "dev-1", "data": {"a": "b"}}});
    for _ in 0..2 {
        let answer = send_raw(&fake, "pushwarden-test", Some(&bearer), &message).await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.retry_after.as_deref(), Some("9"));
        assert_eq!(answer.body["error"]["code"], 503);
        assert_eq!(answer.body["error"]["status"], "UNAVAILABLE");
        assert_eq!(fcm_error_code(&answer.body), Some("UNAVAILABLE"));
        assert!(answer.body["error"]["message"].is_string());
    }
    let answer = send_raw(&fake, "pushwarden-test", Some(&bearer), &message).await;
    assert_eq!(answer.status, 200);
    assert_eq!(fake.requests_for("dev-1"), 3);
    assert_eq!(fake.received().len(), 1);

    // Through the real client.
    let fcm = client(&fake);
    let data = bitwarden_data(0, "{}", None);
    fake.script(
        "dev-2",
        Reply::new(429, "QUOTA_EXCEEDED").with_retry_after(17),
        1,
    );
    fake.script("dev-2", Reply::new(404, "UNREGISTERED"), 1);
    fake.script_error(
        "dev-2",
        FcmErrorReply::new(500, Some("INTERNAL")).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "1.5s",
        })),
        1,
    );
    match fcm.send("dev-2", &data).await {
        Outcome::Retry {
            after,
            reason,
            throttled,
        } => {
            assert_eq!(after, Some(Duration::from_secs(17)));
            assert!(reason.contains("QUOTA_EXCEEDED"), "{reason}");
            assert!(throttled);
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(fcm.send("dev-2", &data).await, Outcome::Gone);
    assert_eq!(
        fcm.send("dev-2", &data).await,
        Outcome::Retry {
            after: Some(Duration::from_millis(1500)),
            reason: "FCM answered 500 Internal Server Error INTERNAL: Internal error encountered."
                .into(),
            throttled: false,
        }
    );
    assert!(matches!(
        fcm.send("dev-2", &data).await,
        Outcome::Delivered { .. }
    ));

    // A 401 that is about the bearer makes the client fetch a new token once.
    let before = fake.token_requests();
    fake.script("dev-3", Reply::new(401, "UNAUTHENTICATED"), 1);
    assert!(matches!(
        fcm.send("dev-3", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(fake.token_requests(), before + 1);
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
}
