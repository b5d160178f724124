//! FCM HTTP v1 client against an in-process fake of both Google endpoints (there is no FCM
//! emulator, spec §6.2): the OAuth token endpoint verifies the RS256 assertion with the
//! fixture public key, and the send endpoint checks the bearer, the path and the message
//! schema, then answers according to a script keyed by device token.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use pushwarden_push::fcm::{bitwarden_data, FcmClient, Outcome, ServiceAccount, SCOPE};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

const PRIVATE_KEY: &str = include_str!("fixtures/fcm-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/fcm-test-key.pub.pem");
const PROJECT: &str = "pushwarden-test";
const CLIENT_EMAIL: &str = "pushwarden@pushwarden-test.iam.gserviceaccount.com";

struct Fake {
    decoding_key: DecodingKey,
    /// The `aud` the assertion must carry: the token endpoint's own URL.
    token_uri: Mutex<String>,
    token_hits: AtomicUsize,
    send_hits: AtomicUsize,
    expires_in: AtomicU64,
    /// Slows the token endpoint so concurrent senders overlap with the refresh.
    token_delay: Mutex<Duration>,
    issued: Mutex<HashSet<String>>,
    revoked: Mutex<HashSet<String>>,
    reject_all_bearers: AtomicBool,
    last_message: Mutex<Option<Value>>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn token_endpoint(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.token_hits.fetch_add(1, Ordering::SeqCst);
    let delay = *fake.token_delay.lock();
    tokio::time::sleep(delay).await;

    let oauth_error = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return oauth_error("not form encoded");
    }
    let mut grant_type = None;
    let mut assertion = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        match &*key {
            "grant_type" => grant_type = Some(value.into_owned()),
            "assertion" => assertion = Some(value.into_owned()),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("bad grant_type");
    }
    let Some(assertion) = assertion else {
        return oauth_error("no assertion");
    };

    let aud = fake.token_uri.lock().clone();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[aud.as_str()]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(
        &assertion,
        &fake.decoding_key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(err) => return oauth_error(&format!("assertion rejected: {err}")),
    };
    let now = now_secs();
    if claims.scope != "https://www.googleapis.com/auth/firebase.messaging"
        || claims.iss != CLIENT_EMAIL
        || claims.aud != aud
        || claims.exp <= claims.iat
        || claims.exp - claims.iat > 3600
        || claims.iat > now + 60
        || claims.exp < now
    {
        return oauth_error("claims out of range");
    }

    let n = fake.token_hits.load(Ordering::SeqCst);
    let access_token = format!("ya29.fake-{n}");
    fake.issued.lock().insert(access_token.clone());
    axum::Json(json!({
        "access_token": access_token,
        "expires_in": fake.expires_in.load(Ordering::SeqCst),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn google_error(
    status: StatusCode,
    canonical: &str,
    message: &str,
    mut details: Vec<Value>,
    fcm_code: Option<&str>,
) -> Response {
    if let Some(code) = fcm_code {
        details.push(json!({
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": code,
        }));
    }
    (
        status,
        axum::Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": canonical,
            "details": details,
        }})),
    )
        .into_response()
}

/// Returns what is wrong with the message, if anything.
fn schema_problem(body: &Value) -> Option<String> {
    let message = body.get("message")?;
    let check = || -> Result<(), String> {
        message
            .get("token")
            .and_then(Value::as_str)
            .ok_or("message.token is not a string")?;
        let data = message
            .get("data")
            .and_then(Value::as_object)
            .ok_or("message.data is not an object")?;
        if let Some((key, _)) = data.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!("data.{key} is not a string"));
        }
        for key in ["type", "payload"] {
            if !data.contains_key(key) {
                return Err(format!("data.{key} is missing"));
            }
        }
        let priority = message.pointer("/android/priority").and_then(Value::as_str);
        if priority != Some("high") {
            return Err(format!("android.priority is {priority:?}"));
        }
        Ok(())
    };
    check().err()
}

async fn send_endpoint(
    State(fake): State<Arc<Fake>>,
    Path((project, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.send_hits.fetch_add(1, Ordering::SeqCst);
    if project != PROJECT || action != "messages:send" {
        return (StatusCode::NOT_FOUND, "no such route").into_response();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let bearer_ok = fake.issued.lock().contains(&bearer)
        && !fake.revoked.lock().contains(&bearer)
        && !fake.reject_all_bearers.load(Ordering::SeqCst);
    if !bearer_ok {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            vec![],
            None,
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(_) => return (StatusCode::BAD_REQUEST, "not JSON").into_response(),
    };
    let problem = match body.get("message") {
        None => Some("no message".to_owned()),
        Some(_) => schema_problem(&body),
    };
    if let Some(problem) = problem {
        // A code no real FCM uses, so a schema failure cannot pass for a scripted outcome.
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("fake schema check: {problem}"),
            vec![],
            Some("FAKE_SCHEMA"),
        );
    }
    *fake.last_message.lock() = Some(body.clone());

    let token = body
        .pointer("/message/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    match token {
        "gone" => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
            vec![],
            Some("UNREGISTERED"),
        ),
        "bad-token" => google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            vec![],
            Some("INVALID_ARGUMENT"),
        ),
        "bad-token-field" => google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid value at 'message'",
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "Invalid token"}],
            })],
            Some("INVALID_ARGUMENT"),
        ),
        "too-big" => google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Android message is too big",
            vec![],
            Some("INVALID_ARGUMENT"),
        ),
        "quota" => {
            let mut response = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded",
                vec![],
                Some("QUOTA_EXCEEDED"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "17".parse().expect("static header"));
            response
        }
        "unavailable" => google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            vec![],
            Some("UNAVAILABLE"),
        ),
        "internal" => google_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": "1.5s",
            })],
            Some("INTERNAL"),
        ),
        "apns-auth" => google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            vec![],
            Some("THIRD_PARTY_AUTH_ERROR"),
        ),
        "other-project" => google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            vec![],
            Some("SENDER_ID_MISMATCH"),
        ),
        _ => {
            let n = fake.send_hits.load(Ordering::SeqCst);
            axum::Json(json!({"name": format!("projects/{PROJECT}/messages/0:{n}")}))
                .into_response()
        }
    }
}

struct Harness {
    fake: Arc<Fake>,
    base: Url,
    token_uri: String,
}

async fn start_fake(expires_in: u64) -> Harness {
    let fake = Arc::new(Fake {
        decoding_key: DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("fixture public key"),
        token_uri: Mutex::new(String::new()),
        token_hits: AtomicUsize::new(0),
        send_hits: AtomicUsize::new(0),
        expires_in: AtomicU64::new(expires_in),
        token_delay: Mutex::new(Duration::ZERO),
        issued: Mutex::new(HashSet::new()),
        revoked: Mutex::new(HashSet::new()),
        reject_all_bearers: AtomicBool::new(false),
        last_message: Mutex::new(None),
    });
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .route("/v1/projects/{project}/{action}", post(send_endpoint))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("fake address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let token_uri = format!("http://{addr}/token");
    *fake.token_uri.lock() = token_uri.clone();
    Harness {
        fake,
        base: Url::parse(&format!("http://{addr}")).expect("base url"),
        token_uri,
    }
}

fn account_json(token_uri: &str, client_email: &str) -> String {
    // Shaped like a real key file, including fields the client must ignore.
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": PRIVATE_KEY,
        "client_email": client_email,
        "client_id": "123456789",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

fn client(h: &Harness) -> FcmClient {
    let account =
        ServiceAccount::from_json(&account_json(&h.token_uri, CLIENT_EMAIL)).expect("account");
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
        Outcome::Retry { after, reason } => {
            assert_eq!(after, Some(Duration::from_secs(17)));
            assert!(reason.contains("QUOTA_EXCEEDED"), "{reason}");
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    match fcm.send("unavailable", &data).await {
        Outcome::Retry { after, reason } => {
            assert_eq!(after, None);
            assert!(reason.contains("UNAVAILABLE"), "{reason}");
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
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 1);
    assert_eq!(h.fake.send_hits.load(Ordering::SeqCst), 15);
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

    let sent = h
        .fake
        .last_message
        .lock()
        .clone()
        .expect("message recorded");
    assert_eq!(
        sent,
        json!({"message": {
            "token": "ok-android",
            "data": {"type": "1", "payload": payload, "contextId": "device-abc"},
            "android": {"priority": "high"},
        }})
    );
    // The app parses `payload` as JSON text, so it must survive as such.
    let inner: Value = serde_json::from_str(
        sent.pointer("/message/data/payload")
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
    *h.fake.token_delay.lock() = Duration::from_millis(200);
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
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn short_lived_token_is_refreshed() {
    // expires_in 2 s: the client refreshes at half-life (the 5-minute margin does not fit).
    let h = start_fake(2).await;
    let fcm = client(&h);
    let data = sample_data();

    assert!(matches!(
        fcm.send("ok-1", &data).await,
        Outcome::Delivered { .. }
    ));
    assert!(matches!(
        fcm.send("ok-2", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 1);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(
        fcm.send("ok-3", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 2);
    assert!(matches!(
        fcm.send("ok-4", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 2);
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
    let issued: Vec<String> = h.fake.issued.lock().iter().cloned().collect();
    h.fake.revoked.lock().extend(issued);
    assert!(matches!(
        fcm.send("ok-2", &data).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 2);
    assert_eq!(h.fake.send_hits.load(Ordering::SeqCst), 3);

    // If FCM keeps refusing, the client gives up after one retry instead of looping.
    h.fake.reject_all_bearers.store(true, Ordering::SeqCst);
    match fcm.send("ok-3", &data).await {
        Outcome::Permanent { status, .. } => assert_eq!(status.map(|s| s.as_u16()), Some(401)),
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(h.fake.token_hits.load(Ordering::SeqCst), 3);
    assert_eq!(h.fake.send_hits.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn rejected_assertion_is_permanent() {
    let h = start_fake(3600).await;
    // The fake only trusts CLIENT_EMAIL as issuer, like Google only trusts the key's owner.
    let account = ServiceAccount::from_json(&account_json(&h.token_uri, "intruder@example.com"))
        .expect("account");
    let fcm = FcmClient::new(account, Some(h.base.clone())).expect("client");
    match fcm.send("ok-1", &sample_data()).await {
        Outcome::Permanent { status, reason } => {
            assert_eq!(status.map(|s| s.as_u16()), Some(400));
            assert!(reason.contains("invalid_grant"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(h.fake.send_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn network_failure_is_retry() {
    let h = start_fake(3600).await;
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let account =
        ServiceAccount::from_json(&account_json(&h.token_uri, CLIENT_EMAIL)).expect("account");
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
        &format!("http://{closed}/token"),
        CLIENT_EMAIL,
    ))
    .expect("account");
    let fcm = FcmClient::new(account, Some(h.base.clone())).expect("client");
    assert!(matches!(
        fcm.send("ok-1", &sample_data()).await,
        Outcome::Retry { .. }
    ));
}

#[test]
fn service_account_parsing() {
    let account = ServiceAccount::from_json(&account_json(
        "https://oauth2.googleapis.com/token",
        CLIENT_EMAIL,
    ))
    .expect("account");
    assert_eq!(account.project_id, PROJECT);
    assert_eq!(account.client_email, CLIENT_EMAIL);
    assert_eq!(account.token_uri, "https://oauth2.googleapis.com/token");
    assert!(!format!("{account:?}").contains("PRIVATE KEY"));

    assert!(ServiceAccount::from_json("not json").is_err());
    assert!(ServiceAccount::from_json(r#"{"project_id":"p"}"#).is_err());
    let mut value: Value =
        serde_json::from_str(&account_json("https://x/token", CLIENT_EMAIL)).expect("json");
    value["client_email"] = json!("");
    assert!(ServiceAccount::from_json(&value.to_string()).is_err());
    value["client_email"] = json!(CLIENT_EMAIL);
    value["token_uri"] = json!("not a url");
    assert!(ServiceAccount::from_json(&value.to_string()).is_err());

    value["token_uri"] = json!("https://x/token");
    value["private_key"] = json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let bad_key = ServiceAccount::from_json(&value.to_string()).expect("parses");
    assert!(FcmClient::new(bad_key, None).is_err());
    assert_eq!(SCOPE, "https://www.googleapis.com/auth/firebase.messaging");
}
