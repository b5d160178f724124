//! The Web Push fake: pushwarden's sender gets through and the fake decrypts what it sent;
//! missing headers, bad VAPID tokens and undecryptable bodies are refused; scripted answers
//! come back as text with Retry-After.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pushwarden_fakes::webpush::{FakeWebPush, Subscription};
use pushwarden_fakes::Reply;
use pushwarden_push::providers::parse_subscription;
use pushwarden_push::webpush::{build_request, send, Outcome, Urgency, VapidKey, WebPushRequest};
use serde_json::{json, Value};
use url::Url;

const SUBJECT: &str = "mailto:ops@example.org";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn request(sub: &Subscription, vapid: &VapidKey, payload: &[u8]) -> WebPushRequest {
    build_request(
        &parse_subscription(&sub.endpoint, &sub.p256dh, &sub.auth, true).expect("subscription"),
        payload,
        vapid,
        SUBJECT,
        3600,
        Urgency::High,
    )
    .expect("build")
}

/// Sends `req` with its headers edited by `edit`; returns status and body text.
async fn post_edited(
    req: &WebPushRequest,
    edit: impl FnOnce(&mut Vec<(String, String)>),
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let mut headers = req.headers.clone();
    edit(&mut headers);
    let mut builder = http()
        .post(req.endpoint.clone())
        .body(body.unwrap_or_else(|| req.body.clone()));
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let resp = builder.send().await.expect("post");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if let Some(value) = value {
        headers.push((name.to_owned(), value.to_owned()));
    }
}

/// A VAPID header with hand-made claims, signed by `vapid`.
fn vapid_header(vapid: &VapidKey, claims: Value) -> String {
    let key = EncodingKey::from_ec_pem(vapid.to_pem().expect("pem").as_bytes()).expect("key");
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("sign");
    format!("vapid t={jwt}, k={}", vapid.public_key_base64url())
}

#[tokio::test]
async fn the_real_sender_is_accepted_and_decrypted() {
    let fake = FakeWebPush::start(None).await.expect("start");
    let sub = fake.subscribe();
    assert!(sub.endpoint.starts_with(&format!("{}/push/", fake.url())));
    assert_eq!(sub.id().len(), 27, "160 random bits");
    let vapid = VapidKey::generate();
    let payload = br#"{"type":0,"payload":{"id":"abc"}}"#;

    assert_eq!(
        send(&http(), &request(&sub, &vapid, payload)).await,
        Outcome::Delivered
    );
    let received = fake.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].token, sub.id());
    assert_eq!(
        received[0].body,
        json!({"type": 0, "payload": {"id": "abc"}})
    );
    assert_eq!(received[0].headers["ttl"], "3600");
    assert_eq!(received[0].headers["urgency"], "high");
    assert_eq!(received[0].headers["content-encoding"], "aes128gcm");

    // 201 with a Location and the TTL kept (capped at 30 days).
    let req = build_request(
        &parse_subscription(&sub.endpoint, &sub.p256dh, &sub.auth, true).expect("sub"),
        b"not json",
        &vapid,
        SUBJECT,
        u32::MAX,
        Urgency::Low,
    )
    .expect("build");
    let mut builder = http().post(req.endpoint.clone()).body(req.body.clone());
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let resp = builder.send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers()["location"]
        .to_str()
        .is_ok_and(|l| l.starts_with(&fake.url())));
    assert_eq!(resp.headers()["ttl"], "2592000");
    assert_eq!(fake.received()[1].body, json!("not json"));

    assert_eq!(fake.requests(), 2);
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
}

#[tokio::test]
async fn protocol_violations_are_refused() {
    let fake = FakeWebPush::start(None).await.expect("start");
    let sub = fake.subscribe();
    let vapid = VapidKey::generate();
    let req = request(&sub, &vapid, b"{}");
    let origin = fake.url();
    let t = now();
    let other = VapidKey::generate();
    let foreign_k = req
        .headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .expect("auth")
        .1
        .replace(vapid.public_key_base64url(), other.public_key_base64url());
    let wrong_aud = vapid.authorization(
        &Url::parse("http://127.0.0.1:1/push/x").expect("url"),
        SUBJECT,
        t,
    );
    let far = vapid_header(
        &vapid,
        json!({"aud": origin, "exp": t + 48 * 3600, "sub": SUBJECT}),
    );
    let expired = vapid_header(
        &vapid,
        json!({"aud": origin, "exp": t - 3600, "sub": SUBJECT}),
    );
    let no_sub = vapid_header(&vapid, json!({"aud": origin, "exp": t + 3600}));
    let bad_sub = vapid_header(
        &vapid,
        json!({"aud": origin, "exp": t + 3600, "sub": "ops"}),
    );
    let mut garbage = req.body.clone();
    let last = garbage.len() - 1;
    garbage[last] ^= 1;

    type Edit = Box<dyn FnOnce(&mut Vec<(String, String)>)>;
    let cases: Vec<(Edit, Option<Vec<u8>>, u16, &str)> = vec![
        (
            Box::new(|h| set(h, "Authorization", None)),
            None,
            401,
            "Authorization is required",
        ),
        (
            Box::new(|h| set(h, "Authorization", Some("WebPush abc"))),
            None,
            401,
            "scheme",
        ),
        (
            Box::new(|h| set(h, "Authorization", Some("vapid t=abc"))),
            None,
            401,
            "both",
        ),
        (
            Box::new(|h| set(h, "Authorization", Some("vapid t=a.b.c, k=AAAA"))),
            None,
            401,
            "public key",
        ),
        (
            Box::new(move |h| set(h, "Authorization", Some(&foreign_k))),
            None,
            403,
            "signature",
        ),
        (
            Box::new(move |h| set(h, "Authorization", Some(&wrong_aud))),
            None,
            403,
            "aud",
        ),
        (
            Box::new(move |h| set(h, "Authorization", Some(&far))),
            None,
            403,
            "24 h",
        ),
        (
            Box::new(move |h| set(h, "Authorization", Some(&expired))),
            None,
            403,
            "expired",
        ),
        (
            Box::new(move |h| set(h, "Authorization", Some(&no_sub))),
            None,
            403,
            "sub",
        ),
        (
            Box::new(move |h| set(h, "Authorization", Some(&bad_sub))),
            None,
            403,
            "sub",
        ),
        (Box::new(|h| set(h, "TTL", None)), None, 400, "TTL"),
        (Box::new(|h| set(h, "TTL", Some("-1"))), None, 400, "TTL"),
        (
            Box::new(|h| set(h, "Urgency", Some("asap"))),
            None,
            400,
            "Urgency",
        ),
        (
            Box::new(|h| set(h, "Topic", Some("way-too-long-for-a-topic-name-here"))),
            None,
            400,
            "Topic",
        ),
        (
            Box::new(|h| set(h, "Content-Encoding", Some("aesgcm"))),
            None,
            400,
            "aes128gcm",
        ),
        (
            Box::new(|h| set(h, "Content-Encoding", None)),
            None,
            400,
            "aes128gcm",
        ),
        (Box::new(|_| {}), Some(garbage), 400, "decrypt"),
        (Box::new(|_| {}), Some(vec![0u8; 5000]), 413, "4096"),
    ];
    let count = cases.len();
    for (edit, body, status, text) in cases {
        let (got, answer) = post_edited(&req, edit, body).await;
        assert_eq!(got, status, "{text}: {answer}");
        assert!(answer.contains(text), "{text}: {answer}");
    }
    assert_eq!(fake.rejections().len(), count);
    assert!(fake.received().is_empty());

    // The unedited request still works.
    assert_eq!(post_edited(&req, |_| {}, None).await.0, 201);
}

#[tokio::test]
async fn unknown_ended_and_restricted_subscriptions() {
    let fake = FakeWebPush::start(None).await.expect("start");
    let vapid = VapidKey::generate();
    let client = http();

    let mut unknown = fake.subscribe();
    unknown.endpoint = format!("{}/push/nobody", fake.url());
    assert_eq!(
        send(&client, &request(&unknown, &vapid, b"{}")).await,
        Outcome::Gone
    );

    let ended = fake.subscribe();
    assert!(fake.unsubscribe(&ended.endpoint));
    let (status, _) = post_edited(&request(&ended, &vapid, b"{}"), |_| {}, None).await;
    assert_eq!(status, 410);
    // Neither is the sender's fault.
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());

    let restricted = fake
        .subscribe_with_key(vapid.public_key_base64url())
        .expect("subscribe");
    assert_eq!(
        send(&client, &request(&restricted, &vapid, b"{}")).await,
        Outcome::Delivered
    );
    let imposter = VapidKey::generate();
    assert!(matches!(
        send(&client, &request(&restricted, &imposter, b"{}")).await,
        Outcome::Permanent { status: 403, .. }
    ));
    assert!(fake.subscribe_with_key("not a key").is_err());
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.requests(), 4);
}

#[tokio::test]
async fn scripted_replies_then_success() {
    let fake = FakeWebPush::start(None).await.expect("start");
    let sub = fake.subscribe();
    let vapid = VapidKey::generate();
    fake.script(
        sub.id(),
        Reply::new(503, "busy, try later").with_retry_after(7),
        2,
    );
    let req = request(&sub, &vapid, b"{}");

    let (status, text) = post_edited(&req, |_| {}, None).await;
    assert_eq!((status, text.as_str()), (503, "busy, try later"));
    assert_eq!(
        send(&http(), &req).await,
        Outcome::Retry {
            after: Some(Duration::from_secs(7)),
            throttled: false,
        }
    );
    assert_eq!(send(&http(), &req).await, Outcome::Delivered);

    fake.script(sub.id(), Reply::new(413, "payload too large"), 1);
    assert_eq!(
        send(&http(), &req).await,
        Outcome::Permanent {
            status: 413,
            body: "payload too large".into()
        }
    );
    assert_eq!(fake.requests_for(sub.id()), 4);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn shutdown_stops_the_service() {
    let fake = FakeWebPush::start(None).await.expect("start");
    let sub = fake.subscribe();
    let vapid = VapidKey::generate();
    let req = request(&sub, &vapid, b"{}");
    assert_eq!(send(&http(), &req).await, Outcome::Delivered);
    fake.shutdown();
    // Shutting down is asynchronous: wait, with a deadline, until pushes find nobody there.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match send(&http(), &req).await {
            Outcome::Unreachable { .. } => break,
            Outcome::Delivered if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("after shutdown: {other:?}"),
        }
    }
}
