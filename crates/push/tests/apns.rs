//! APNs client against an in-process fake gateway: an h2c server that checks what Apple checks
//! (HTTP/2, path, provider JWT, topic, push type/priority, body shape) and answers per device
//! token with scripted responses.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use parking_lot::Mutex;
use pushwarden_push::apns::{
    bitwarden_payload, ApnsClient, ApnsConfig, Environment, Outcome, SendOptions,
};
use url::Url;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "com.8bit.bitwarden";

/// Scripted device tokens: the first byte picks the fake's answer.
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

const UNREGISTERED_AT: u64 = 1_700_000_000_000;

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    jwts: Mutex<HashSet<String>>,
    requests_per_token: Mutex<std::collections::HashMap<String, usize>>,
}

struct Fake {
    addr: SocketAddr,
    seen: Arc<Seen>,
    signing_pem: String,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp
}

fn reject(status: StatusCode, reason: &str) -> Response<Body> {
    json_response(status, serde_json::json!({ "reason": reason }))
}

#[derive(serde::Deserialize)]
struct ProviderClaims {
    iss: String,
    iat: u64,
}

/// Checks one request the way APNs does and answers as APNs would, scripted per device token.
async fn check(
    req: Request<hyper::body::Incoming>,
    key: &DecodingKey,
    seen: &Seen,
) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    if parts.version != Version::HTTP_2 {
        return reject(StatusCode::BAD_REQUEST, "NotHttp2");
    }
    if parts.method != hyper::Method::POST {
        return reject(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
    }
    let Some(device) = parts
        .uri
        .path()
        .strip_prefix("/3/device/")
        .map(str::to_owned)
    else {
        return reject(StatusCode::NOT_FOUND, "BadPath");
    };
    *seen
        .requests_per_token
        .lock()
        .entry(device.clone())
        .or_default() += 1;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let Some(jwt) =
        header("authorization").and_then(|v| v.strip_prefix("bearer ").map(str::to_owned))
    else {
        return reject(StatusCode::FORBIDDEN, "MissingProviderToken");
    };
    let Ok(jwt_header) = jsonwebtoken::decode_header(&jwt) else {
        return reject(StatusCode::FORBIDDEN, "InvalidProviderToken");
    };
    if jwt_header.alg != Algorithm::ES256 || jwt_header.kid.as_deref() != Some(KEY_ID) {
        return reject(StatusCode::FORBIDDEN, "InvalidProviderToken");
    }
    let mut validation = Validation::new(Algorithm::ES256);
    // APNs tokens carry no exp; freshness is judged from iat below.
    validation.validate_exp = false;
    validation.set_required_spec_claims::<&str>(&[]);
    let Ok(data) = jsonwebtoken::decode::<ProviderClaims>(&jwt, key, &validation) else {
        return reject(StatusCode::FORBIDDEN, "InvalidProviderToken");
    };
    if data.claims.iss != TEAM_ID {
        return reject(StatusCode::FORBIDDEN, "InvalidProviderToken");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if data.claims.iat + 3600 < now || data.claims.iat > now + 60 {
        return reject(StatusCode::FORBIDDEN, "ExpiredProviderToken");
    }
    seen.jwts.lock().insert(jwt);

    if header("apns-topic").as_deref() != Some(TOPIC) {
        return reject(StatusCode::BAD_REQUEST, "BadTopic");
    }
    if header("apns-push-type").as_deref() != Some("background") {
        return reject(StatusCode::BAD_REQUEST, "InvalidPushType");
    }
    // A background push must go at priority 5.
    if header("apns-priority").as_deref() != Some("5") {
        return reject(StatusCode::BAD_REQUEST, "BadPriority");
    }
    if let Some(c) = header("apns-collapse-id") {
        if c.len() > 64 {
            return reject(StatusCode::BAD_REQUEST, "BadCollapseId");
        }
    }

    let Ok(bytes) = axum::body::to_bytes(Body::new(incoming), 8192).await else {
        return reject(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    };
    if bytes.is_empty() {
        return reject(StatusCode::BAD_REQUEST, "PayloadEmpty");
    }
    if bytes.len() > 4096 {
        return reject(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return reject(StatusCode::BAD_REQUEST, "BadPayload");
    };
    // What the iOS app reads: data.type as a number, data.payload as a JSON string, and a
    // silent push with nothing but content-available in aps.
    let shape_ok = body["data"]["type"].is_u64()
        && body["data"]["payload"]
            .as_str()
            .is_some_and(|p| serde_json::from_str::<serde_json::Value>(p).is_ok())
        && body["aps"] == serde_json::json!({ "content-available": 1 });
    if !shape_ok {
        return reject(StatusCode::BAD_REQUEST, "BadPayloadShape");
    }

    if !device.len().is_multiple_of(2) || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
        return reject(StatusCode::BAD_REQUEST, "BadDeviceToken");
    }
    match &device[..2] {
        UNREGISTERED => json_response(
            StatusCode::GONE,
            serde_json::json!({ "reason": "Unregistered", "timestamp": UNREGISTERED_AT }),
        ),
        BAD_TOKEN => reject(StatusCode::BAD_REQUEST, "BadDeviceToken"),
        TOO_MANY => reject(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
        EXPIRED_JWT => reject(StatusCode::FORBIDDEN, "ExpiredProviderToken"),
        SERVER_ERROR => reject(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        first => {
            if first == SLOW_OK {
                // Holds the stream open so concurrent sends overlap on the connection.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut resp = Response::new(Body::empty());
            let id = header("apns-id")
                .unwrap_or_else(|| "00000000-0000-0000-0000-000000000001".to_owned());
            if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
                resp.headers_mut().insert("apns-id", v);
            }
            resp
        }
    }
}

async fn start_fake() -> Fake {
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("public key pem");
    let key = Arc::new(DecodingKey::from_ec_pem(public_pem.as_bytes()).expect("decoding key"));
    let private_pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .expect("private key pem");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let seen_srv = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen_srv.connections.fetch_add(1, Ordering::SeqCst);
            let seen = seen_srv.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    let key = key.clone();
                    async move {
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let resp = check(req, &key, &seen).await;
                        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(resp)
                    }
                });
                // HTTP/2 only, like APNs: an HTTP/1.1 client fails the preface.
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Fake {
        addr,
        seen,
        signing_pem: private_pem.to_string(),
    }
}

fn client_for(fake: &Fake) -> ApnsClient {
    let endpoint = Url::parse(&format!("http://{}", fake.addr)).expect("url");
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

    assert_eq!(
        send_default(&client, UNREGISTERED, &body).await,
        Outcome::Gone {
            reason: "Unregistered".into(),
            timestamp_ms: Some(UNREGISTERED_AT)
        }
    );
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
            reason: "TooManyRequests".into()
        }
    );
    assert_eq!(
        send_default(&client, SERVER_ERROR, &body).await,
        Outcome::Retry {
            after: None,
            reason: "InternalServerError".into()
        }
    );

    // The token is minutes old, so re-minting it would break Apple's 20-minute rule: the
    // client must not hammer APNs, and must ask to be retried later instead.
    match send_default(&client, EXPIRED_JWT, &body).await {
        Outcome::Retry {
            after: Some(after),
            reason,
        } => {
            assert_eq!(reason, "ExpiredProviderToken");
            assert!(after > Duration::from_secs(19 * 60) && after <= Duration::from_secs(20 * 60));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        fake.seen.requests_per_token.lock().get(&token(EXPIRED_JWT)),
        Some(&1)
    );

    // Malformed tokens are refused without a request.
    let before = fake.seen.requests.load(Ordering::SeqCst);
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
    assert_eq!(fake.seen.requests.load(Ordering::SeqCst), before);

    // One provider token served every request.
    assert_eq!(fake.seen.jwts.lock().len(), 1);
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
    let other = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pem");
    let client = ApnsClient::new(ApnsConfig {
        key_pem: other.as_bytes().to_vec(),
        key_id: KEY_ID.into(),
        team_id: TEAM_ID.into(),
        topic: TOPIC.into(),
        endpoint: Some(Url::parse(&format!("http://{}/", fake.addr)).expect("url")),
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

    assert_eq!(fake.seen.requests.load(Ordering::SeqCst), 50);
    assert_eq!(
        fake.seen.connections.load(Ordering::SeqCst),
        1,
        "HTTP/2 connection must be shared"
    );
    assert!(
        fake.seen.max_in_flight.load(Ordering::SeqCst) > 1,
        "requests must be multiplexed, not serialised"
    );
    assert_eq!(
        fake.seen.jwts.lock().len(),
        1,
        "provider token must be reused"
    );
}
