//! The push gateway end to end: `/push/*` and `/send` against in-process fakes of APNs, FCM and
//! a Web Push service, which check what the real services check.

mod common;

use std::time::Duration;

use common::providers::{
    call, drop_postgres_database, health, ok, only, postgres_database, queued, token, wait_pending,
    wait_unregistered, Providers, TOPIC, WAIT,
};
use common::{http, metrics_text, start, SEND_KEY};
use pushwarden::server::Server;
use pushwarden_fakes::webpush::Subscription;
use pushwarden_fakes::Reply;
use serde_json::{json, Value};

const U: &str = "d2ea5b72-1111-4a4a-9f9f-000000000001";
const V: &str = "d2ea5b72-1111-4a4a-9f9f-000000000002";
const ORG: &str = "aaaaaaaa-2222-4b4b-8e8e-000000000002";
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

async fn register_phone(
    server: &Server,
    device: &str,
    user: &str,
    device_type: u8,
    push_token: &str,
) {
    let answer = ok(
        server,
        "POST",
        "/push/register",
        json!({"deviceId": device, "userId": user, "identifier": format!("ident-{device}"),
               "type": device_type, "pushToken": push_token, "organizationIds": [ORG]}),
    )
    .await;
    let expected = if device_type == 1 { "apns" } else { "fcm" };
    assert_eq!(answer["platform"], expected);
}

async fn register_browser(server: &Server, device: &str, user: &str, sub: &Subscription) {
    let answer = ok(
        server,
        "POST",
        "/push/register",
        json!({"deviceId": device, "userId": user, "identifier": format!("ident-{device}"),
               "type": 9, "webPush": {"endpoint": sub.endpoint, "p256dh": sub.p256dh, "auth": sub.auth}}),
    )
    .await;
    assert_eq!(answer["platform"], "webpush");
}

fn cipher_update(user: &str, context: &str) -> Value {
    json!({"type": 0, "contextId": context,
           "payload": {"id": "c1c1c1c1-0000-4000-8000-000000000001", "userId": user,
                       "organizationId": null, "collectionIds": null,
                       "revisionDate": "2026-11-28T10:00:00Z"}})
}

fn payload_of(value: &Value) -> Value {
    serde_json::from_str(value.as_str().expect("payload is a JSON string")).expect("payload JSON")
}

#[tokio::test]
async fn send_reaches_each_platform_in_the_body_its_app_reads_but_not_the_sender() {
    let p = Providers::start().await;
    let server = start(p.config()).await;
    let android = token('a');
    let iphone = token('b');
    let other_users_phone = token('c');
    register_phone(&server, "android", U, 0, &android).await;
    register_phone(&server, "iphone", U, 1, &iphone).await;
    register_phone(&server, "other", V, 0, &other_users_phone).await;
    let browser = p.web.subscribe();
    register_browser(&server, "browser", U, &browser).await;

    // Edited on the Android phone: the iPhone and the browser hear of it, the phone does not.
    let (status, answer) = common::send_raw(
        server.addr,
        Some(&format!("Bearer {SEND_KEY}")),
        cipher_update(U, "ident-android").to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["queued"], 2, "{answer}");

    let apns = only(p.apns.wait_for(1, WAIT).await, 1);
    assert_eq!(apns[0].token, iphone);
    let body = &apns[0].body;
    assert_eq!(body["aps"], json!({"content-available": 1}));
    assert_eq!(body["data"]["type"], 0);
    assert_eq!(payload_of(&body["data"]["payload"])["userId"], U);
    assert_eq!(apns[0].headers["apns-push-type"], "background");
    assert_eq!(apns[0].headers["apns-priority"], "5");
    assert_eq!(apns[0].headers["apns-topic"], TOPIC);

    let web = only(p.web.wait_for(1, WAIT).await, 1);
    assert_eq!(web[0].token, browser.id());
    assert_eq!(web[0].body["data"]["type"], 0);
    assert_eq!(payload_of(&web[0].body["data"]["payload"])["userId"], U);

    // Edited on the iPhone: now the Android phone gets it, as FCM data strings.
    common::send(server.addr, &cipher_update(U, "ident-iphone")).await;
    let fcm = only(p.fcm.wait_for(1, WAIT).await, 1);
    assert_eq!(fcm[0].token, android);
    let data = &fcm[0].body["data"];
    assert_eq!(data["type"], "0");
    assert_eq!(payload_of(&data["payload"])["userId"], U);
    assert_eq!(data["contextId"], "ident-iphone");
    assert_eq!(fcm[0].body["android"]["priority"], "high");

    tokio::time::sleep(QUIET).await;
    assert_eq!(
        p.fcm.received().len(),
        1,
        "the other user's phone got nothing"
    );
    assert_eq!(p.apns.received().len(), 1, "the sending iPhone got nothing");
    assert_eq!(p.web.received().len(), 2);
    wait_pending(&server, 0).await;
    let text = metrics_text(server.addr).await;
    assert!(
        common::metric_sum(&text, "pushwarden_push_delivered_total") >= 4.0,
        "{text}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn push_api_targets_users_organizations_installations_and_client_types() {
    let p = Providers::start().await;
    let server = start(p.config()).await;
    register_phone(&server, "a", U, 0, &token('a')).await;
    register_phone(&server, "b", V, 1, &token('b')).await;
    let browser = p.web.subscribe();
    register_browser(&server, "w", V, &browser).await;
    let send = |target: Value| {
        let mut body = json!({"type": 5, "payload": {"userId": U}});
        if let (Some(b), Some(t)) = (body.as_object_mut(), target.as_object()) {
            b.extend(t.clone());
        }
        body
    };
    // Organization: both phones are tagged (the browser is not).
    assert_eq!(
        queued(&server, send(json!({"organizationId": ORG}))).await,
        2
    );
    // Untag one: only the other remains.
    let answer = ok(
        &server,
        "PUT",
        "/push/delete-organization",
        json!({"devices": [{"id": "a"}], "organizationId": ORG}),
    )
    .await;
    assert_eq!(answer["updated"], 1);
    assert_eq!(
        queued(&server, send(json!({"organizationId": ORG}))).await,
        1
    );
    ok(
        &server,
        "PUT",
        "/push/add-organization",
        json!({"Devices": [{"Id": "w"}], "OrganizationId": ORG}),
    )
    .await;
    // A client type narrows an organization push: Web is the browser (type 9), Mobile the phone.
    assert_eq!(
        queued(
            &server,
            send(json!({"organizationId": ORG, "clientType": 1}))
        )
        .await,
        1
    );
    assert_eq!(
        queued(
            &server,
            send(json!({"organizationId": ORG, "clientType": 4}))
        )
        .await,
        1
    );
    // A user, minus the sending device.
    assert_eq!(
        queued(&server, send(json!({"userId": V, "identifier": "ident-b"}))).await,
        1
    );
    // Delete: gone from every target.
    assert_eq!(
        ok(&server, "POST", "/push/delete", json!({"id": "b"})).await["deleted"],
        true
    );
    assert_eq!(queued(&server, send(json!({"userId": V}))).await, 1);
    // Installation target (registered with none): nobody.
    assert_eq!(
        queued(
            &server,
            send(json!({"installationId": common::INSTALLATION}))
        )
        .await,
        0
    );
    p.fcm.wait_for(1, WAIT).await;
    p.apns.wait_for(2, WAIT).await;
    wait_pending(&server, 0).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn push_api_refuses_bad_requests_clearly() {
    let p = Providers::start().await;
    let mut c = p.config();
    c.push.allow_private_endpoints = false;
    let server = start(c).await;
    // No credentials.
    let response = http()
        .post(format!("http://{}/push/register", server.addr))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let cases = [
        (
            "/push/register",
            json!({"deviceId": "d", "userId": U, "type": 0}),
        ),
        (
            "/push/register",
            json!({"deviceId": "d", "userId": U, "type": 8, "pushToken": "t"}),
        ),
        (
            "/push/register",
            json!({"deviceId": "d", "userId": U, "type": 9,
            "webPush": {"endpoint": "http://127.0.0.1:1/x", "p256dh": "x", "auth": "y"}}),
        ),
        (
            "/push/register",
            json!({"deviceId": "d", "userId": U, "type": 1, "pushToken": "t",
            "apnsEnvironment": "staging"}),
        ),
        ("/push/send", json!({"type": 0, "payload": {}})),
        (
            "/push/send",
            json!({"userId": U, "type": 77, "payload": {}}),
        ),
        ("/push/delete", json!({})),
    ];
    for (path, body) in cases {
        let (status, answer) = call(&server, "POST", path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    let (status, answer) = call(&server, "POST", "/push/register", json!("[")).await;
    assert_eq!(status, 400, "{answer}");
    // A browser subscription on a private address is refused unless the operator allows it.
    let sub = p.web.subscribe();
    let (status, answer) = call(
        &server,
        "POST",
        "/push/register",
        json!({"deviceId": "d", "userId": U, "type": 9,
               "webPush": {"endpoint": sub.endpoint, "p256dh": sub.p256dh, "auth": sub.auth}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap_or("").contains("refused"),
        "{answer}"
    );
    let (status, answer) = call(
        &server,
        "POST",
        "/push/register",
        json!({"deviceId": "d", "userId": U, "type": 9,
               "webPush": {"endpoint": "https://10.1.2.3/push/x", "p256dh": sub.p256dh, "auth": sub.auth}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap_or("").contains("private"),
        "{answer}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dead_tokens_remove_their_registrations() {
    let p = Providers::start().await;
    let server = start(p.config()).await;
    let (fcm_dead, apns_dead, apns_bad) = (token('1'), token('2'), token('3'));
    register_phone(&server, "fcm-dead", U, 0, &fcm_dead).await;
    register_phone(&server, "apns-dead", U, 1, &apns_dead).await;
    register_phone(&server, "apns-bad", U, 1, &apns_bad).await;
    let browser = p.web.subscribe();
    register_browser(&server, "web-dead", U, &browser).await;
    p.fcm.script(&fcm_dead, Reply::new(404, "UNREGISTERED"), 1);
    p.apns
        .script(&apns_dead, Reply::new(410, "Unregistered"), 1);
    p.apns
        .script(&apns_bad, Reply::new(400, "BadDeviceToken"), 1);
    p.web.script(browser.id(), Reply::new(410, "gone"), 1);
    assert_eq!(
        queued(
            &server,
            json!({"userId": U, "type": 4, "payload": {"userId": U}})
        )
        .await,
        4
    );
    for device in ["fcm-dead", "apns-dead", "apns-bad", "web-dead"] {
        wait_unregistered(&server, device).await;
    }
    wait_pending(&server, 0).await;
    assert_eq!(
        queued(
            &server,
            json!({"userId": U, "type": 4, "payload": {"userId": U}})
        )
        .await,
        0
    );
    let text = metrics_text(server.addr).await;
    assert!(common::metric_sum(&text, "pushwarden_push_registrations_removed_total") >= 4.0);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_honouring_retry_after() {
    let p = Providers::start().await;
    let server = start(p.config()).await;
    let (fcm_busy, apns_busy) = (token('4'), token('5'));
    register_phone(&server, "fcm-busy", U, 0, &fcm_busy).await;
    register_phone(&server, "apns-busy", U, 1, &apns_busy).await;
    let browser = p.web.subscribe();
    register_browser(&server, "web-busy", U, &browser).await;
    p.fcm.script(
        &fcm_busy,
        Reply::new(503, "UNAVAILABLE").with_retry_after(1),
        2,
    );
    p.apns
        .script(&apns_busy, Reply::new(429, "TooManyRequests"), 2);
    p.web.script(browser.id(), Reply::new(500, "oops"), 1);
    let started = tokio::time::Instant::now();
    assert_eq!(
        queued(
            &server,
            json!({"userId": U, "type": 4, "payload": {"userId": U}})
        )
        .await,
        3
    );
    only(p.fcm.wait_for(1, WAIT).await, 1);
    only(p.apns.wait_for(1, WAIT).await, 1);
    only(p.web.wait_for(1, WAIT).await, 1);
    // Two Retry-After: 1 answers mean at least two seconds before FCM's success.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.fcm.requests_for(&fcm_busy), 3);
    assert_eq!(p.apns.requests_for(&apns_busy), 3);
    assert_eq!(p.web.requests_for(browser.id()), 2);
    wait_pending(&server, 0).await;
    // Nobody was unregistered for being busy.
    assert!(server
        .push
        .store()
        .registrations()
        .get("fcm-busy")
        .await
        .expect("lookup")
        .is_some());
    server.shutdown().await.expect("shutdown");
}

/// FCM's 429 is about the project's quota: the FCM lane halves and pauses for the Retry-After,
/// its other deliveries wait in the queue (not in memory) until then, and APNs goes on as if
/// nothing happened.
#[tokio::test]
async fn an_fcm_429_pauses_fcm_alone_for_its_retry_after() {
    let p = Providers::start().await;
    let mut c = p.config();
    c.push.concurrency = 4;
    let server = start(c).await;
    let (throttled, later, iphone) = (token('6'), token('7'), token('8'));
    register_phone(&server, "fcm-throttled", U, 0, &throttled).await;
    register_phone(&server, "fcm-later", V, 0, &later).await;
    register_phone(&server, "iphone", V, 1, &iphone).await;
    p.fcm.script(
        &throttled,
        Reply::new(429, "QUOTA_EXCEEDED").with_retry_after(3),
        1,
    );
    assert_eq!(
        queued(
            &server,
            json!({"userId": U, "type": 4, "payload": {"userId": U}})
        )
        .await,
        1
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.fcm.requests_for(&throttled) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "FCM never asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let throttled_at = tokio::time::Instant::now();
    // While FCM is paused: V's iPhone gets its push at once, V's Android phone only after the
    // pause, and the throttled push's retry no sooner than its Retry-After.
    assert_eq!(
        queued(
            &server,
            json!({"userId": V, "type": 4, "payload": {"userId": V}})
        )
        .await,
        2
    );
    only(p.apns.wait_for(1, WAIT).await, 1);
    assert_eq!(
        p.fcm.requests_for(&throttled),
        1,
        "APNs waited for FCM's pause"
    );
    assert_eq!(p.fcm.requests_for(&later), 0, "FCM was not paused");
    let fcm = p.fcm.wait_for(2, WAIT).await;
    assert!(
        throttled_at.elapsed() >= Duration::from_millis(2_900),
        "FCM went on after {:?}, before the Retry-After",
        throttled_at.elapsed()
    );
    let mut tokens: Vec<&str> = fcm.iter().map(|r| r.token.as_str()).collect();
    tokens.sort();
    let mut expected = [throttled.as_str(), later.as_str()];
    expected.sort();
    assert_eq!(tokens, expected);
    assert_eq!(p.fcm.requests_for(&later), 1, "sent once, after the pause");
    wait_pending(&server, 0).await;
    let metrics = metrics_text(server.addr).await;
    assert!(
        metrics.contains("pushwarden_push_throttled_total{provider=\"fcm\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"provider_throttled\""),
        "{metrics}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn rejected_and_expired_pushes_are_dropped_counted_and_logged() {
    let p = Providers::start().await;
    let mut c = p.config();
    c.push.max_age = Duration::from_secs(1);
    let server = start(c).await;
    let (too_large, always_busy) = (token('6'), token('7'));
    register_phone(&server, "too-large", U, 1, &too_large).await;
    register_phone(&server, "always-busy", U, 0, &always_busy).await;
    p.apns
        .script(&too_large, Reply::new(413, "PayloadTooLarge"), 1);
    p.fcm
        .script(&always_busy, Reply::new(503, "UNAVAILABLE"), 1000);
    let before = metrics_text(server.addr).await;
    let dropped = |text: &str, reason: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("pushwarden_push_dropped_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    ok(
        &server,
        "POST",
        "/push/send",
        json!({"userId": U, "type": 4, "payload": {"userId": U}}),
    )
    .await;
    wait_pending(&server, 0).await;
    let after = metrics_text(server.addr).await;
    assert!(
        dropped(&after, "rejected") > dropped(&before, "rejected"),
        "{after}"
    );
    assert!(
        dropped(&after, "expired") > dropped(&before, "expired"),
        "{after}"
    );
    assert!(
        p.fcm.requests_for(&always_busy) >= 2,
        "it was retried before expiring"
    );
    // Neither device is unregistered: the push was the problem, not the token.
    assert!(server
        .push
        .store()
        .registrations()
        .get("too-large")
        .await
        .expect("lookup")
        .is_some());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_configuration_error_shows_in_health_and_keeps_the_push() {
    let p = Providers::start().await;
    let mut c = p.config();
    // A key the fake does not know: every push fails InvalidProviderToken.
    let (other_key, _) = pushwarden_fakes::apns::generate_key();
    let wrong = p.dir.join("wrong.p8");
    common::write_private(&wrong, other_key.as_bytes());
    c.apns.key_file = Some(wrong);
    let server = start(c).await;
    register_phone(&server, "iphone", U, 1, &token('8')).await;
    ok(
        &server,
        "POST",
        "/push/send",
        json!({"userId": U, "type": 4, "payload": {"userId": U}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let health = loop {
        let health = health(&server).await;
        if health["status"] == "degraded" {
            break health;
        }
        assert!(tokio::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        health["providers"]["apns"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("InvalidProviderToken"),
        "{health}"
    );
    assert_eq!(health["providers"]["fcm"]["error"], Value::Null);
    // Kept for a retry once the configuration is fixed, not dropped.
    assert_eq!(
        server
            .push
            .store()
            .deliveries()
            .pending()
            .await
            .expect("pending"),
        1
    );
    assert!(p.apns.received().is_empty());
    server.shutdown().await.expect("shutdown");
}

/// Accepted pushes are in the store before the answer and survive a restart: the first server
/// fails its attempt (the provider is down) and stops; the second one, on the same database,
/// delivers.
async fn restart_delivers_pending(database_url: Option<String>) {
    let p = Providers::start().await;
    let phone = token('9');
    let mut c = p.config();
    c.database_url = database_url;
    // The retry after the failed attempt falls 1–2 s later, after the first server stopped.
    c.push.retry_base = Duration::from_secs(2);
    c.push.retry_max = Duration::from_secs(2);
    let first = start(c.clone()).await;
    register_phone(&first, "phone", U, 0, &phone).await;
    p.fcm.script(&phone, Reply::new(503, "UNAVAILABLE"), 1);
    ok(
        &first,
        "POST",
        "/push/send",
        json!({"userId": U, "type": 11, "payload": {"userId": U}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.fcm.requests_for(&phone) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.shutdown().await.expect("shutdown");
    assert!(
        p.fcm.received().is_empty(),
        "nothing delivered before the restart"
    );

    let second = start(c).await;
    let received = only(p.fcm.wait_for(1, WAIT).await, 1);
    assert_eq!(received[0].token, phone);
    assert_eq!(received[0].body["data"]["type"], "11");
    assert_eq!(p.fcm.requests_for(&phone), 2);
    wait_pending(&second, 0).await;
    second.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pending_pushes_survive_a_restart_on_sqlite() {
    restart_delivers_pending(None).await;
}

#[tokio::test]
async fn pending_pushes_survive_a_restart_on_postgres() {
    let db = postgres_database().await;
    restart_delivers_pending(Some(db.clone())).await;
    drop_postgres_database(&db).await;
}
