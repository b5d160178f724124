//! Web Push: encryption and VAPID checked against independent implementations (jsonwebtoken,
//! aws-lc-rs, for VAPID) and the RFC 8291 vector, then end to end against the strict push
//! service fake from `pushwarden-fakes`, which checks the RFC 8030 headers and VAPID and
//! decrypts the body as a user agent would.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::SecretKey;
use pushwarden_fakes::webpush::FakeWebPush;
use pushwarden_fakes::Reply;
use pushwarden_push::providers::parse_subscription;
use pushwarden_push::webpush::{
    build_request, check_endpoint, decrypt, encrypt, send, Outcome, Subscription, Urgency,
    VapidKey, WebPushError, MAX_PLAINTEXT,
};
use serde::Deserialize;
use url::Url;

const SUBJECT: &str = "mailto:ops@example.org";

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("test base64")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A browser's side of a subscription: its private key and auth secret, plus the public half.
struct UserAgent {
    private: Vec<u8>,
    auth: Vec<u8>,
    public: Vec<u8>,
}

impl UserAgent {
    fn new() -> Self {
        // Independent of the crate's own key generation: a fixed-size random scalar via rand.
        let secret = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = SecretKey::from_slice(&bytes) {
                break k;
            }
        };
        let public = secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Self {
            private: secret.to_bytes().to_vec(),
            auth: rand::random::<[u8; 16]>().to_vec(),
            public,
        }
    }

    fn subscription(&self, endpoint: &str) -> Subscription {
        Subscription::from_base64url(
            Url::parse(endpoint).expect("endpoint"),
            &URL_SAFE_NO_PAD.encode(&self.public),
            &URL_SAFE_NO_PAD.encode(&self.auth),
        )
        .expect("subscription")
    }
}

#[test]
fn rfc8291_vector_decrypts() {
    // The byte-exact encryption check is a unit test (it needs the fixed ephemeral key); here
    // the public decrypt must recover the RFC's plaintext from the RFC's body.
    let body = b64(concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    ));
    let plain = decrypt(
        &b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"),
        &b64("BTBZMqHH6r4Tts7J_aSIgg"),
        &body,
    )
    .expect("decrypt vector");
    assert_eq!(plain, b"When I grow up, I want to be a watermelon");
}

#[test]
fn round_trip_with_random_keys() {
    let ua = UserAgent::new();
    let sub = ua.subscription("https://push.example.net/x");
    for len in [0, 1, 100, MAX_PLAINTEXT] {
        let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let body = encrypt(&sub, &msg).expect("encrypt");
        assert!(body.len() <= 4096, "body {} bytes", body.len());
        // rs = 4096, idlen = 65, keyid = an uncompressed point.
        assert_eq!(&body[16..21], &[0, 0, 0x10, 0, 65]);
        assert_eq!(body[21], 0x04);
        assert_eq!(decrypt(&ua.private, &ua.auth, &body).expect("decrypt"), msg);
    }
    // Fresh salt and ephemeral key each time.
    let a = encrypt(&sub, b"same").expect("encrypt");
    let b = encrypt(&sub, b"same").expect("encrypt");
    assert_ne!(a[..86], b[..86]);
}

#[test]
fn too_large_payload_refused() {
    let ua = UserAgent::new();
    let sub = ua.subscription("https://push.example.net/x");
    let err = encrypt(&sub, &vec![b'a'; MAX_PLAINTEXT + 1]).expect_err("too large");
    assert!(matches!(err, WebPushError::PayloadTooLarge { .. }));
}

#[test]
fn tampering_and_wrong_keys_fail() {
    let ua = UserAgent::new();
    let sub = ua.subscription("https://push.example.net/x");
    let body = encrypt(&sub, b"{\"type\":0}").expect("encrypt");
    // Salt, keyid, ciphertext and tag are all bound by the AEAD; rs is not (any rs at least as
    // large as the record decodes the same), so it is tested below by shrinking it instead.
    for i in [0, 15, 30, 90, body.len() - 1] {
        let mut t = body.clone();
        t[i] ^= 0x01;
        assert!(decrypt(&ua.private, &ua.auth, &t).is_err(), "flip at {i}");
    }
    let mut small_rs = body.clone();
    small_rs[16..20].copy_from_slice(&20u32.to_be_bytes());
    assert!(decrypt(&ua.private, &ua.auth, &small_rs).is_err());
    small_rs[16..20].copy_from_slice(&3u32.to_be_bytes());
    assert!(decrypt(&ua.private, &ua.auth, &small_rs).is_err());
    let mut idlen = body.clone();
    idlen[20] = 200;
    assert!(decrypt(&ua.private, &ua.auth, &idlen).is_err());
    assert!(decrypt(&ua.private, &ua.auth, &body[..body.len() - 1]).is_err());
    assert!(decrypt(&ua.private, &ua.auth, &body[..86]).is_err());
    assert!(decrypt(&ua.private, &ua.auth, &body[..10]).is_err());
    let other = UserAgent::new();
    assert!(decrypt(&other.private, &ua.auth, &body).is_err());
    assert!(decrypt(&ua.private, &other.auth, &body).is_err());
}

#[test]
fn subscription_validation() {
    let ua = UserAgent::new();
    let url = Url::parse("https://push.example.net/x").expect("url");
    let p = URL_SAFE_NO_PAD.encode(&ua.public);
    let a = URL_SAFE_NO_PAD.encode(&ua.auth);
    // Padded form accepted.
    let padded = base64::engine::general_purpose::URL_SAFE.encode(&ua.auth);
    assert!(Subscription::from_base64url(url.clone(), &p, &padded).is_ok());
    // Wrong auth length, bad base64, compressed point, off-curve point.
    assert!(Subscription::from_base64url(url.clone(), &p, "AAAA").is_err());
    assert!(Subscription::from_base64url(url.clone(), "!!", &a).is_err());
    let mut compressed = vec![0x02 | (ua.public[64] & 1)];
    compressed.extend_from_slice(&ua.public[1..33]);
    let c = URL_SAFE_NO_PAD.encode(&compressed);
    assert!(Subscription::from_base64url(url.clone(), &c, &a).is_err());
    let mut off_curve = ua.public.clone();
    off_curve[64] ^= 1;
    let o = URL_SAFE_NO_PAD.encode(&off_curve);
    assert!(Subscription::from_base64url(url, &o, &a).is_err());
}

#[derive(Debug, Deserialize)]
struct Claims {
    aud: String,
    exp: u64,
    sub: String,
}

/// Verifies an `Authorization: vapid t=…, k=…` value the way a push service does and returns the
/// claims. `k` must equal `expected_key`.
fn verify_vapid(header: &str, expected_aud: &str, expected_key: &str) -> Result<Claims, String> {
    let params = header.strip_prefix("vapid ").ok_or("not vapid scheme")?;
    let mut t = None;
    let mut k = None;
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("k", v)) => k = Some(v),
            _ => return Err(format!("unexpected parameter {part}")),
        }
    }
    let (t, k) = (t.ok_or("no t")?, k.ok_or("no k")?);
    if k != expected_key {
        return Err("k is not the subscription's applicationServerKey".into());
    }
    let point = URL_SAFE_NO_PAD.decode(k).map_err(|e| e.to_string())?;
    if point.len() != 65 {
        return Err("k is not an uncompressed point".into());
    }
    let key = DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
    .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[expected_aud]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(t, &key, &validation).map_err(|e| e.to_string())?;
    Ok(data.claims)
}

#[test]
fn vapid_jwt_verifies_and_is_cached() {
    let vapid = VapidKey::generate();
    let endpoint = Url::parse("https://fcm.googleapis.com/fcm/send/abc").expect("url");
    let t0 = now();
    let header = vapid.authorization(&endpoint, SUBJECT, t0);
    let claims = verify_vapid(
        &header,
        "https://fcm.googleapis.com",
        vapid.public_key_base64url(),
    )
    .expect("valid VAPID");
    assert_eq!(claims.aud, "https://fcm.googleapis.com");
    assert_eq!(claims.sub, SUBJECT);
    assert_eq!(claims.exp, t0 + 12 * 3600);

    // Same origin, other path: the cached token is reused.
    let other_path = Url::parse("https://fcm.googleapis.com/fcm/send/def").expect("url");
    assert_eq!(vapid.authorization(&other_path, SUBJECT, t0 + 60), header);
    // Close to expiry: a fresh token.
    let later = vapid.authorization(&endpoint, SUBJECT, t0 + 11 * 3600 + 1);
    assert_ne!(later, header);
    // A non-default port is part of the origin.
    let ported = Url::parse("https://push.example.net:8443/p").expect("url");
    let h = vapid.authorization(&ported, SUBJECT, t0);
    verify_vapid(
        &h,
        "https://push.example.net:8443",
        vapid.public_key_base64url(),
    )
    .expect("aud with port");

    // A different key must not verify.
    let imposter = VapidKey::generate();
    assert!(verify_vapid(
        &header,
        "https://fcm.googleapis.com",
        imposter.public_key_base64url()
    )
    .is_err());
    let forged = header.replace(
        vapid.public_key_base64url(),
        imposter.public_key_base64url(),
    );
    assert!(verify_vapid(
        &forged,
        "https://fcm.googleapis.com",
        imposter.public_key_base64url()
    )
    .is_err());
}

#[test]
fn vapid_pem_round_trip() {
    let vapid = VapidKey::generate();
    let pem = vapid.to_pem().expect("pem");
    assert!(pem.contains("BEGIN PRIVATE KEY"));
    let back = VapidKey::from_pem(&pem).expect("reload");
    assert_eq!(back.public_key_base64url(), vapid.public_key_base64url());
    assert_eq!(b64(vapid.public_key_base64url()).len(), 65);

    // SEC1, as `openssl ecparam -genkey -name prime256v1` writes it (parameters block first).
    use p256::elliptic_curve::SecretKey as Sk;
    let secret: Sk<p256::NistP256> = Sk::from_slice(&[7u8; 32]).expect("scalar");
    let sec1 = secret
        .to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .expect("sec1");
    let file = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        sec1.as_str()
    );
    let from_sec1 = VapidKey::from_pem(&file).expect("sec1 pem");
    let expected = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
    assert_eq!(from_sec1.public_key_base64url(), expected);

    assert!(VapidKey::from_pem("not a pem").is_err());
    assert!(
        VapidKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err()
    );
}

#[test]
fn ssrf_guard() {
    let refused = [
        "http://push.example.net/x",
        "ftp://push.example.net/x",
        "https://127.0.0.1/x",
        "https://127.1.2.3/x",
        "https://2130706433/x", // 127.0.0.1 in decimal, normalised by the URL parser
        "https://10.1.2.3/x",
        "https://172.16.0.1/x",
        "https://172.31.255.255/x",
        "https://192.168.1.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/x",
        "https://[::1]/x",
        "https://[::]/x",
        "https://[fc00::1]/x",
        "https://[fd12:3456::1]/x",
        "https://[fe80::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://localhost/x",
        "https://LOCALHOST./x",
        "https://foo.localhost/x",
        // Issue 13, row 8: special-purpose ranges and IPv6 forms embedding IPv4.
        "https://[::7f00:1]/x",
        "https://[64:ff9b::7f00:1]/x",
        "https://[2002:7f00:1::1]/x",
        "https://[::ffff:0:7f00:1]/x",
        "https://[fec0::1]/x",
        "https://[100::1]/x",
        "https://198.18.0.1/x",
        "https://192.0.0.1/x",
        "https://240.0.0.1/x",
        "https://192.0.2.1/x",
    ];
    for u in refused {
        let url = Url::parse(u).expect(u);
        assert!(
            check_endpoint(&url, false).is_err(),
            "{u} should be refused"
        );
    }
    let allowed = [
        "https://fcm.googleapis.com/fcm/send/x",
        "https://updates.push.services.mozilla.com/wpush/v2/x",
        "https://ntfy.sh/upABC",
        "https://172.32.0.1/x",
        "https://8.8.8.8/x",
        "https://[2001:4860::1]/x",
        "https://localhost.example.com/x",
    ];
    for u in allowed {
        let url = Url::parse(u).expect(u);
        assert!(check_endpoint(&url, false).is_ok(), "{u} should be allowed");
    }
    // The test/internal override admits loopback and plain http, but never other schemes.
    let local = Url::parse("http://127.0.0.1:8080/push").expect("url");
    assert!(check_endpoint(&local, true).is_ok());
    let ftp = Url::parse("ftp://127.0.0.1/push").expect("url");
    assert!(check_endpoint(&ftp, true).is_err());
}

#[tokio::test]
async fn send_against_fake_push_service() {
    let fake = FakeWebPush::start(None)
        .await
        .expect("start fake push service");
    let vapid = VapidKey::generate();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let payload = br#"{"type":0,"payload":{"id":"abc"}}"#;

    // One subscription per answer; "nope" is an endpoint the push service never issued.
    let scripts = [
        ("ok", None),
        ("gone", Some(Reply::new(410, "Gone"))),
        (
            "busy",
            Some(Reply::new(429, "slow down").with_retry_after(7)),
        ),
        ("big", Some(Reply::new(413, "payload too large"))),
        ("down", Some(Reply::new(503, ""))),
        ("nope", None),
    ];
    let mut outcomes = Vec::new();
    for (mode, reply) in scripts {
        let mut fake_sub = fake.subscribe();
        if mode == "nope" {
            fake_sub.endpoint = format!("{}/push/nope", fake.url());
        }
        if let Some(reply) = reply {
            fake.script(fake_sub.id(), reply, 1);
        }
        let sub = parse_subscription(&fake_sub.endpoint, &fake_sub.p256dh, &fake_sub.auth, true)
            .expect("subscription");
        check_endpoint(&sub.endpoint, true).expect("loopback allowed in tests");
        assert!(check_endpoint(&sub.endpoint, false).is_err());
        let req =
            build_request(&sub, payload, &vapid, SUBJECT, 3600, Urgency::High).expect("build");
        outcomes.push(send(&client, &req).await);
    }
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert_eq!(outcomes[1], Outcome::Gone);
    assert_eq!(
        outcomes[2],
        Outcome::Retry {
            after: Some(Duration::from_secs(7)),
            throttled: true,
        }
    );
    assert_eq!(
        outcomes[3],
        Outcome::Permanent {
            status: 413,
            body: "payload too large".into()
        }
    );
    assert_eq!(
        outcomes[4],
        Outcome::Retry {
            after: None,
            throttled: false,
        }
    );
    assert_eq!(outcomes[5], Outcome::Gone); // 404

    // Every request to a known subscription passed the header, VAPID and decryption checks
    // before its scripted answer; only the unscripted one counts as received.
    assert_eq!(fake.requests(), 6);
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let received = fake.received();
    assert_eq!(received.len(), 1);
    let expected: serde_json::Value = serde_json::from_slice(payload).expect("payload JSON");
    assert_eq!(received[0].body, expected);
    assert_eq!(
        received[0].headers["content-type"],
        "application/octet-stream"
    );
    assert_eq!(received[0].headers["ttl"], "3600");
    assert_eq!(received[0].headers["urgency"], "high");

    // A key the subscription was not created with is refused (403 → permanent).
    let restricted = fake
        .subscribe_with_key(vapid.public_key_base64url())
        .expect("subscribe");
    let restricted = parse_subscription(
        &restricted.endpoint,
        &restricted.p256dh,
        &restricted.auth,
        true,
    )
    .expect("subscription");
    let req =
        build_request(&restricted, payload, &vapid, SUBJECT, 60, Urgency::Normal).expect("build");
    assert_eq!(send(&client, &req).await, Outcome::Delivered);
    let wrong = VapidKey::generate();
    let req =
        build_request(&restricted, payload, &wrong, SUBJECT, 60, Urgency::Normal).expect("build");
    assert!(matches!(
        send(&client, &req).await,
        Outcome::Permanent { status: 403, .. }
    ));

    // Nothing listening: transport error → unreachable (retried, and counted against the origin).
    fake.shutdown();
    stopped_listening(&fake.url()).await;
    let req =
        build_request(&restricted, payload, &vapid, SUBJECT, 60, Urgency::Low).expect("build");
    assert!(matches!(
        send(&client, &req).await,
        Outcome::Unreachable { .. }
    ));
}

/// Waits until nothing accepts connections at `base` any more (a fake just shut down).
async fn stopped_listening(base: &str) {
    let url = Url::parse(base).expect("url");
    let addr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::task::yield_now().await;
    }
}
