//! The APNs fake: pushwarden's real client gets through, broken requests are refused with
//! Apple's reasons, and scripted answers come back in Apple's format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pushwarden_fakes::apns::{generate_key, FakeApns, FakeApnsConfig};
use pushwarden_fakes::{Event, Reply};
use pushwarden_push::apns::{
    bitwarden_payload, ApnsClient, ApnsConfig, Environment, Outcome, SendOptions,
};
use serde_json::{json, Value};
use url::Url;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "com.8bit.bitwarden";

fn device() -> String {
    "ab".repeat(32)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn start() -> (FakeApns, String) {
    let (config, private_pem) = FakeApnsConfig::with_new_key(KEY_ID, TEAM_ID, TOPIC);
    let fake = FakeApns::start(config).await.expect("start fake");
    (fake, private_pem)
}

fn client(fake: &FakeApns, key_pem: &str) -> ApnsClient {
    ApnsClient::new(ApnsConfig {
        key_pem: key_pem.as_bytes().to_vec(),
        key_id: KEY_ID.into(),
        team_id: TEAM_ID.into(),
        topic: TOPIC.into(),
        endpoint: Some(Url::parse(&fake.url()).expect("url")),
        extra_ca_pem: None,
    })
    .expect("client")
}

/// A fresh HTTP/2 connection per client: the fake, like Apple, tracks token changes per
/// connection.
fn h2() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("http2 client")
}

fn provider_jwt(key_pem: &str, kid: &str, iss: &str, iat: i64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &json!({ "iss": iss, "iat": iat }),
        &EncodingKey::from_ec_pem(key_pem.as_bytes()).expect("key"),
    )
    .expect("sign")
}

struct Answer {
    status: u16,
    reason: Option<String>,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

/// POSTs a background push with `jwt`, letting `edit` change the request first.
async fn post(
    http: &reqwest::Client,
    fake: &FakeApns,
    path: &str,
    jwt: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut req = http.post(format!("{}{path}", fake.url()));
    if let Some(jwt) = jwt {
        req = req.header("authorization", format!("bearer {jwt}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.body(body.to_vec()).send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        reason: body["reason"].as_str().map(str::to_owned),
        body,
        headers,
    }
}

const BACKGROUND: &[(&str, &str)] = &[
    ("apns-topic", TOPIC),
    ("apns-push-type", "background"),
    ("apns-priority", "5"),
];

fn background_body() -> Vec<u8> {
    br#"{"aps":{"content-available":1},"data":{"type":5}}"#.to_vec()
}

#[tokio::test]
async fn the_real_client_is_accepted_and_recorded() {
    let (fake, key) = start().await;
    let apns = client(&fake, &key);
    let body = bitwarden_payload(5, r#"{"UserId":"u1"}"#);

    let out = apns
        .send(
            &device(),
            Environment::Production,
            &body,
            SendOptions::default(),
        )
        .await;
    let Outcome::Delivered { apns_id: Some(id) } = out else {
        panic!("expected Delivered with an apns-id, got {out:?}");
    };
    assert_eq!(id.len(), 36, "{id}");

    let received = fake.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].token, device());
    assert_eq!(received[0].body, body);
    assert_eq!(received[0].headers["apns-topic"], TOPIC);
    assert_eq!(received[0].headers["apns-push-type"], "background");
    assert_eq!(received[0].headers["apns-priority"], "5");
    assert!(received[0].headers["authorization"].starts_with("bearer "));
    assert_eq!(fake.requests(), 1);
    assert_eq!(fake.requests_for(&device()), 1);
    assert_eq!(fake.provider_tokens().len(), 1);
    assert_eq!(fake.connections(), 1);
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());

    // The request's apns-id is echoed; an alert at priority 10 is fine.
    let jwt = provider_jwt(&key, KEY_ID, TEAM_ID, now());
    let id = "123e4567-e89b-12d3-a456-426614174000";
    let answer = post(
        &h2(),
        &fake,
        &format!("/3/device/{}", device()),
        Some(&jwt),
        &[
            ("apns-topic", TOPIC),
            ("apns-push-type", "alert"),
            ("apns-priority", "10"),
            ("apns-id", id),
        ],
        br#"{"aps":{"alert":"hi"}}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, Value::Null, "success has an empty body");
    assert_eq!(answer.headers["apns-id"], id);
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn wait_for_returns_what_it_has_on_timeout() {
    let (fake, _key) = start().await;
    let got = fake.wait_for(1, Duration::from_millis(50)).await;
    assert!(got.is_empty());
}

#[tokio::test]
async fn bad_provider_tokens_are_refused() {
    let (fake, key) = start().await;
    let (other_key, _) = generate_key();
    let path = format!("/3/device/{}", device());
    let t = now();
    let hs256 = jsonwebtoken::encode(
        &Header {
            kid: Some(KEY_ID.into()),
            ..Header::new(Algorithm::HS256)
        },
        &json!({ "iss": TEAM_ID, "iat": t }),
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("hs256");
    let cases: Vec<(Option<String>, u16, &str, &str)> = vec![
        (None, 403, "MissingProviderToken", "no authorization"),
        (
            Some(provider_jwt(&other_key, KEY_ID, TEAM_ID, t)),
            403,
            "InvalidProviderToken",
            "signature",
        ),
        (
            Some(provider_jwt(&key, "ZZZ999ZZZZ", TEAM_ID, t)),
            403,
            "InvalidProviderToken",
            "kid",
        ),
        (
            Some(provider_jwt(&key, KEY_ID, "OTHERTEAM1", t)),
            403,
            "InvalidProviderToken",
            "iss",
        ),
        (
            Some(provider_jwt(&key, KEY_ID, TEAM_ID, t - 2 * 3600)),
            403,
            "ExpiredProviderToken",
            "old",
        ),
        (
            Some(provider_jwt(&key, KEY_ID, TEAM_ID, t + 600)),
            403,
            "InvalidProviderToken",
            "future",
        ),
        (Some(hs256), 403, "InvalidProviderToken", "HS256"),
        (
            Some("not.a.jwt".into()),
            403,
            "InvalidProviderToken",
            "well-formed",
        ),
    ];
    for (jwt, status, reason, detail) in &cases {
        let answer = post(
            &h2(),
            &fake,
            &path,
            jwt.as_deref(),
            BACKGROUND,
            &background_body(),
        )
        .await;
        assert_eq!(answer.status, *status, "{detail}");
        assert_eq!(answer.reason.as_deref(), Some(*reason), "{detail}");
    }
    let rejections = fake.rejections();
    assert_eq!(rejections.len(), cases.len());
    for ((_, _, reason, detail), line) in cases.iter().zip(&rejections) {
        assert!(line.contains(reason) && line.contains(detail), "{line}");
    }
    assert!(fake.received().is_empty());
    assert_eq!(fake.requests(), cases.len());

    // The real client with someone else's key: a configuration error.
    let out = client(&fake, &other_key)
        .send(
            &device(),
            Environment::Production,
            &bitwarden_payload(0, "{}"),
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
async fn header_and_body_violations_are_refused() {
    let (fake, key) = start().await;
    let http = h2();
    let jwt = provider_jwt(&key, KEY_ID, TEAM_ID, now());
    let path = format!("/3/device/{}", device());
    let big = format!(
        r#"{{"aps":{{"content-available":1}},"x":"{}"}}"#,
        "x".repeat(5000)
    );
    let voip_body = format!(r#"{{"aps":{{}},"x":"{}"}}"#, "x".repeat(4500));
    let voip_topic = format!("{TOPIC}.voip");
    let long_collapse = "c".repeat(65);

    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            &path,
            vec![("apns-push-type", "background"), ("apns-priority", "5")],
            background_body(),
            400,
            "MissingTopic",
        ),
        (
            &path,
            vec![
                ("apns-topic", "com.example.other"),
                ("apns-push-type", "background"),
                ("apns-priority", "5"),
            ],
            background_body(),
            400,
            "DeviceTokenNotForTopic",
        ),
        (
            &path,
            vec![
                ("apns-topic", "not a topic"),
                ("apns-push-type", "background"),
                ("apns-priority", "5"),
            ],
            background_body(),
            400,
            "BadTopic",
        ),
        (
            &path,
            vec![("apns-topic", TOPIC), ("apns-priority", "5")],
            background_body(),
            400,
            "InvalidPushType",
        ),
        (
            &path,
            vec![("apns-topic", TOPIC), ("apns-push-type", "shout")],
            background_body(),
            400,
            "InvalidPushType",
        ),
        (
            &path,
            vec![
                ("apns-topic", TOPIC),
                ("apns-push-type", "background"),
                ("apns-priority", "10"),
            ],
            background_body(),
            400,
            "BadPriority",
        ),
        (
            &path,
            vec![("apns-topic", TOPIC), ("apns-push-type", "background")],
            background_body(),
            400,
            "BadPriority",
        ),
        (
            &path,
            vec![
                ("apns-topic", TOPIC),
                ("apns-push-type", "alert"),
                ("apns-priority", "7"),
            ],
            background_body(),
            400,
            "BadPriority",
        ),
        (
            &path,
            BACKGROUND.to_vec(),
            br#"{"aps":{"alert":"x"}}"#.to_vec(),
            400,
            "BadPayload",
        ),
        (
            &path,
            BACKGROUND.to_vec(),
            b"[1]".to_vec(),
            400,
            "BadPayload",
        ),
        (
            &path,
            BACKGROUND.to_vec(),
            b"{nope".to_vec(),
            400,
            "BadPayload",
        ),
        (&path, BACKGROUND.to_vec(), Vec::new(), 400, "PayloadEmpty"),
        (
            &path,
            BACKGROUND.to_vec(),
            big.into_bytes(),
            413,
            "PayloadTooLarge",
        ),
        (
            &path,
            vec![("apns-topic", TOPIC), ("apns-push-type", "voip")],
            voip_body.clone().into_bytes(),
            400,
            "DeviceTokenNotForTopic",
        ),
        (
            &path,
            [BACKGROUND, &[("apns-id", "NOT-A-UUID")]].concat(),
            background_body(),
            400,
            "BadMessageId",
        ),
        (
            &path,
            [BACKGROUND, &[("apns-collapse-id", long_collapse.as_str())]].concat(),
            background_body(),
            400,
            "BadCollapseId",
        ),
        (
            &path,
            [BACKGROUND, &[("apns-expiration", "tomorrow")]].concat(),
            background_body(),
            400,
            "BadExpirationDate",
        ),
        (
            &path,
            [BACKGROUND, &[("apns-topic", TOPIC)]].concat(),
            background_body(),
            400,
            "DuplicateHeaders",
        ),
        (
            "/3/device/xyz",
            BACKGROUND.to_vec(),
            background_body(),
            400,
            "BadDeviceToken",
        ),
        (
            "/3/device/",
            BACKGROUND.to_vec(),
            background_body(),
            400,
            "MissingDeviceToken",
        ),
        (
            "/2/device/abcd",
            BACKGROUND.to_vec(),
            background_body(),
            404,
            "BadPath",
        ),
    ];
    for (path, headers, body, status, reason) in &cases {
        let answer = post(&http, &fake, path, Some(&jwt), headers, body).await;
        assert_eq!(
            (answer.status, answer.reason.as_deref()),
            (*status, Some(*reason)),
            "{path} {headers:?}"
        );
    }
    assert_eq!(fake.rejections().len(), cases.len());
    assert!(fake.received().is_empty());

    // VoIP pushes go to the .voip topic and may be up to 5120 bytes.
    let answer = post(
        &http,
        &fake,
        &path,
        Some(&jwt),
        &[
            ("apns-topic", voip_topic.as_str()),
            ("apns-push-type", "voip"),
        ],
        voip_body.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.reason);

    let get = http
        .get(format!("{}{path}", fake.url()))
        .header("authorization", format!("bearer {jwt}"))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(fake.received().len(), 1);
    // One connection, one token, no TooManyProviderTokenUpdates.
    assert_eq!(fake.provider_tokens().len(), 1);
}

#[tokio::test]
async fn http1_requests_get_the_connection_closed() {
    let (fake, key) = start().await;
    let jwt = provider_jwt(&key, KEY_ID, TEAM_ID, now());
    let http1 = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let result = http1
        .post(format!("{}/3/device/{}", fake.url(), device()))
        .header("authorization", format!("bearer {jwt}"))
        .headers(
            BACKGROUND
                .iter()
                .map(|(n, v)| {
                    (
                        reqwest::header::HeaderName::from_static(n),
                        reqwest::header::HeaderValue::from_static(v),
                    )
                })
                .collect(),
        )
        .body(background_body())
        .send()
        .await;
    assert!(result.is_err(), "HTTP/1.1 got an answer: {result:?}");
    let rejections = fake.rejections();
    assert_eq!(rejections.len(), 1);
    assert!(rejections[0].contains("NotHttp2"), "{rejections:?}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_connection_may_not_change_its_token_within_twenty_minutes() {
    let (fake, key) = start().await;
    let path = format!("/3/device/{}", device());
    let first = provider_jwt(&key, KEY_ID, TEAM_ID, now());
    let second = provider_jwt(&key, KEY_ID, TEAM_ID, now() - 5);
    let http = h2();
    let ok = post(
        &http,
        &fake,
        &path,
        Some(&first),
        BACKGROUND,
        &background_body(),
    )
    .await;
    assert_eq!(ok.status, 200);
    let again = post(
        &http,
        &fake,
        &path,
        Some(&first),
        BACKGROUND,
        &background_body(),
    )
    .await;
    assert_eq!(again.status, 200);
    let changed = post(
        &http,
        &fake,
        &path,
        Some(&second),
        BACKGROUND,
        &background_body(),
    )
    .await;
    assert_eq!(changed.status, 429);
    assert_eq!(
        changed.reason.as_deref(),
        Some("TooManyProviderTokenUpdates")
    );
    // Another connection may use the other token.
    let other = post(
        &h2(),
        &fake,
        &path,
        Some(&second),
        BACKGROUND,
        &background_body(),
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn scripted_replies_then_success() {
    let (fake, key) = start().await;
    let mut events = fake.events();
    fake.script(
        &device(),
        Reply::new(503, "ServiceUnavailable").with_retry_after(7),
        2,
    );
    let http = h2();
    let jwt = provider_jwt(&key, KEY_ID, TEAM_ID, now());
    let path = format!("/3/device/{}", device());

    // A broken request is refused as usual and does not use up the script.
    let broken = post(
        &http,
        &fake,
        &path,
        Some(&jwt),
        &[("apns-topic", TOPIC)],
        b"{}",
    )
    .await;
    assert_eq!(broken.status, 400);

    for _ in 0..2 {
        let answer = post(
            &http,
            &fake,
            &path,
            Some(&jwt),
            BACKGROUND,
            &background_body(),
        )
        .await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.body, json!({ "reason": "ServiceUnavailable" }));
        assert_eq!(answer.headers["retry-after"], "7");
        assert!(answer.headers.contains_key("apns-id"));
    }
    let answer = post(
        &http,
        &fake,
        &path,
        Some(&jwt),
        BACKGROUND,
        &background_body(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.requests_for(&device()), 4);

    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        kinds.push(match event {
            Event::Accepted(_) => "accepted",
            Event::Refused { .. } => "refused",
            Event::Scripted { .. } => "scripted",
        });
    }
    assert_eq!(kinds, ["refused", "scripted", "scripted", "accepted"]);

    // Through the real client: 410 carries the time APNs learnt of it, 429 its Retry-After.
    let apns = client(&fake, &key);
    let body = bitwarden_payload(0, "{}");
    let gone_token = "cd".repeat(32);
    fake.script(&gone_token, Reply::new(410, "Unregistered"), 1);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    match apns
        .send(
            &gone_token,
            Environment::Production,
            &body,
            SendOptions::default(),
        )
        .await
    {
        Outcome::Gone {
            reason,
            timestamp_ms: Some(ts),
        } => {
            assert_eq!(reason, "Unregistered");
            assert!(ts >= before && ts < before + 60_000, "{ts} vs {before}");
        }
        other => panic!("expected Gone, got {other:?}"),
    }
    fake.script(
        &gone_token,
        Reply::new(429, "TooManyRequests").with_retry_after(3),
        1,
    );
    assert_eq!(
        apns.send(
            &gone_token,
            Environment::Production,
            &body,
            SendOptions::default()
        )
        .await,
        Outcome::Retry {
            after: Some(Duration::from_secs(3)),
            reason: "TooManyRequests".into(),
            throttled: true,
        }
    );
    assert!(matches!(
        apns.send(
            &gone_token,
            Environment::Production,
            &body,
            SendOptions::default()
        )
        .await,
        Outcome::Delivered { .. }
    ));
}

#[tokio::test]
async fn dropping_the_fake_stops_it() {
    let (fake, key) = start().await;
    let url = fake.url();
    let apns = client(&fake, &key);
    let body = bitwarden_payload(0, "{}");
    assert!(matches!(
        apns.send(
            &device(),
            Environment::Production,
            &body,
            SendOptions::default()
        )
        .await,
        Outcome::Delivered { .. }
    ));
    drop(fake);
    // The listener closes once the server task sees the drop.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        apns.send(
            &device(),
            Environment::Production,
            &body,
            SendOptions::default()
        )
        .await,
        Outcome::Retry { .. }
    ));
}

#[tokio::test]
async fn an_unusable_public_key_fails_start() {
    let config = FakeApnsConfig {
        key_id: KEY_ID.into(),
        team_id: TEAM_ID.into(),
        topic: TOPIC.into(),
        public_key_pem: "not a key".into(),
        addr: None,
    };
    assert!(FakeApns::start(config).await.is_err());
}
