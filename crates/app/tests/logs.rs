//! What the service writes to its logs: plain text or JSON lines as configured, no terminal
//! colour codes when the output is not a terminal, and no secret, token or push token whole.
//!
//! One full run of the real binary at `debug` for every crate: hub connections with access
//! tokens (good and forged), `/send` (right and wrong keys), devices of every platform
//! registered and pushed to (one of each whose token the provider then calls dead), a relay
//! installation exchanging its key for a token and pushing with it, a wrong key, `/metrics`
//! with its bearer token. Then every secret the run used is looked for in everything the
//! process printed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http;
use common::providers::{Providers, WAIT};
use pushwarden_auth::Minter;
use pushwarden_fakes::Reply;
use serde_json::{json, Value};

const JWT_SECRET: &str = "log-test-jwt-secret-7f3c9a1e5b2d4c6e8f0a";
const SEND_KEY: &str = "log-test-send-key-2b4d6f8a0c1e3a5b7c9d";
const WRONG_SEND_KEY: &str = "log-test-wrong-send-key-9e8d7c6b5a4f";
const METRICS_TOKEN: &str = "log-test-metrics-token-1a2b3c4d5e6f";
const RELAY_SECRET: &str = "log-test-relay-token-secret-5c4b3a2910";
const ADMIN_TOKEN: &str = "log-test-admin-token-8d7e6f5a4b3c";
const USER: &str = "d2ea5b72-5555-4a4a-9f9f-000000000001";

/// Polls `probe` every 20 ms until it gives a value, for up to [`WAIT`].
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `pushwarden serve` process whose standard output and error go to files (a pipe nobody
/// reads would fill up and stall the server), killed if dropped before [`Serve::stop`].
struct Serve {
    child: Child,
    addr: String,
    out: PathBuf,
    err: PathBuf,
}

impl Serve {
    fn start(env: &[(String, String)], logs: &Path) -> Self {
        let (out, err) = (logs.join("stdout.log"), logs.join("stderr.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pushwarden"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .unwrap();
        let addr = env
            .iter()
            .find(|(k, _)| k == "PUSHWARDEN_LISTEN")
            .map(|(_, v)| v.clone())
            .unwrap();
        Self {
            child,
            addr,
            out,
            err,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the process gracefully (SIGTERM) and returns (stdout, stderr).
    fn stop(mut self) -> (String, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no graceful stop within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (
            std::fs::read_to_string(&self.out).unwrap(),
            std::fs::read_to_string(&self.err).unwrap(),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spare_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn path_of(p: &Option<PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap()
}

fn environment(p: &Providers, data_dir: &Path, format: &str) -> Vec<(String, String)> {
    let c = p.config();
    [
        ("PUSHWARDEN_LISTEN", spare_addr()),
        ("PUSHWARDEN_DATA_DIR", data_dir.display().to_string()),
        ("PUSHWARDEN_LOG", "debug".into()),
        ("PUSHWARDEN_LOG_FORMAT", format.into()),
        ("PUSHWARDEN_JWT_HS256_SECRET", JWT_SECRET.into()),
        ("PUSHWARDEN_SEND_API_KEY", SEND_KEY.into()),
        ("PUSHWARDEN_METRICS_TOKEN", METRICS_TOKEN.into()),
        ("PUSHWARDEN_RELAY_TOKEN_SECRET", RELAY_SECRET.into()),
        ("PUSHWARDEN_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("PUSHWARDEN_TRUSTED_PROXIES", "none".into()),
        ("PUSHWARDEN_APNS_KEY_FILE", path_of(&c.apns.key_file)),
        ("PUSHWARDEN_APNS_KEY_ID", c.apns.key_id.clone().unwrap()),
        ("PUSHWARDEN_APNS_TEAM_ID", c.apns.team_id.clone().unwrap()),
        ("PUSHWARDEN_APNS_TOPIC", c.apns.topic.clone().unwrap()),
        ("PUSHWARDEN_APNS_ENDPOINT", c.apns.endpoint.clone().unwrap()),
        (
            "PUSHWARDEN_FCM_SERVICE_ACCOUNT",
            path_of(&c.fcm.service_account),
        ),
        ("PUSHWARDEN_FCM_ENDPOINT", c.fcm.endpoint.clone().unwrap()),
        (
            "PUSHWARDEN_VAPID_PRIVATE_KEY",
            path_of(&c.webpush.vapid_private_key),
        ),
        ("PUSHWARDEN_VAPID_SUBJECT", "mailto:ops@example.com".into()),
        ("PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS", "true".into()),
        ("PUSHWARDEN_PUSH_RETRY_BASE", "50ms".into()),
        ("PUSHWARDEN_PUSH_RETRY_MAX", "400ms".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A push token of `len` characters that appears nowhere else.
fn push_token(tag: char, len: usize) -> String {
    let mut t = format!("{tag}{}", uuid::Uuid::new_v4().simple());
    while t.len() < len {
        t.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    t.truncate(len);
    t
}

async fn post(url: &str, bearer: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(url)
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Everything a run does that handles a secret; returns the secrets it used.
async fn exercise(p: &Providers, serve: &Serve, data_env: &[(String, String)]) -> Vec<String> {
    let mut secrets: Vec<String> = vec![
        JWT_SECRET.into(),
        SEND_KEY.into(),
        WRONG_SEND_KEY.into(),
        METRICS_TOKEN.into(),
        RELAY_SECRET.into(),
        ADMIN_TOKEN.into(),
    ];
    eventually("the server to answer /alive", || async {
        http().get(serve.url("/alive")).send().await.ok()
    })
    .await;

    // Hub connections: a valid access token in the query (as the official clients send it),
    // and a forged one.
    let access = Minter::Hs256(JWT_SECRET.as_bytes().to_vec())
        .mint(&common::user_claims(USER, None, json!({})))
        .unwrap();
    secrets.push(access.clone());
    let hub = format!("http://{}/hub", serve.addr);
    let mut client =
        common::connect(&hub, Some(access), pushwarden_client::Protocol::MessagePack).await;
    let forged = Minter::Hs256(b"someone-else's-secret-entirely-3f2e1d".to_vec())
        .mint(&json!({"sub": USER, "exp": common::unix_now() + 3600}))
        .unwrap();
    secrets.push(forged.clone());
    let refused = format!("http://{}/hub?access_token={forged}", serve.addr);
    assert_eq!(common::upgrade_status(&refused).await, 401);

    // /send with the right key reaches the client; with a wrong one it is refused.
    let (status, _) = post(
        &serve.url("/send"),
        SEND_KEY,
        json!({"type": 5, "payload": {"userId": USER, "date": "2026-12-03T10:00:00Z"}}),
    )
    .await;
    assert_eq!(status, 200);
    common::expect_invocation(&mut client, WAIT).await;
    let (status, _) = post(&serve.url("/send"), WRONG_SEND_KEY, json!({"type": 5})).await;
    assert_eq!(status, 401);

    // Devices of every platform; one of each is then called dead by its provider.
    let (fcm, fcm_dead) = (push_token('f', 163), push_token('g', 163));
    let (apns, apns_dead) = (push_token('a', 64), push_token('b', 64));
    let browser = p.web.subscribe();
    let dead_browser = p.web.subscribe();
    secrets.extend([
        fcm.clone(),
        fcm_dead.clone(),
        apns.clone(),
        apns_dead.clone(),
    ]);
    for s in [&browser, &dead_browser] {
        secrets.extend([s.endpoint.clone(), s.p256dh.clone(), s.auth.clone()]);
    }
    p.fcm.script(&fcm_dead, Reply::new(404, "UNREGISTERED"), 1);
    p.apns
        .script(&apns_dead, Reply::new(410, "Unregistered"), 1);
    p.web.script(dead_browser.id(), Reply::new(410, "gone"), 1);
    for (device, kind, token) in [
        ("log-fcm", 0, &fcm),
        ("log-fcm-dead", 0, &fcm_dead),
        ("log-apns", 1, &apns),
        ("log-apns-dead", 1, &apns_dead),
    ] {
        let (status, answer) = post(
            &serve.url("/push/register"),
            SEND_KEY,
            json!({"deviceId": device, "userId": USER, "identifier": format!("ident-{device}"),
                   "type": kind, "pushToken": token}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    for (device, s) in [("log-web", &browser), ("log-web-dead", &dead_browser)] {
        let (status, answer) = post(
            &serve.url("/push/register"),
            SEND_KEY,
            json!({"deviceId": device, "userId": USER, "identifier": format!("ident-{device}"),
                   "type": 9, "webPush": {"endpoint": s.endpoint, "p256dh": s.p256dh, "auth": s.auth}}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = post(
        &serve.url("/push/send"),
        SEND_KEY,
        json!({"userId": USER, "type": 4, "payload": {"userId": USER}}),
    )
    .await;
    assert_eq!((status, answer["queued"].as_u64()), (200, Some(6)));
    p.fcm.wait_for(1, WAIT).await;
    p.apns.wait_for(1, WAIT).await;
    p.web.wait_for(1, WAIT).await;

    // A relay installation: its key exchanged for a token (and a wrong key refused), a push.
    let (id, key) = common::create_installation_with_cli(data_env);
    secrets.push(key.clone());
    let wrong_key = format!("{}x", &key[..key.len() - 1]);
    secrets.push(wrong_key.clone());
    let form = |secret: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", "api.push")
            .append_pair("client_id", &format!("installation.{id}"))
            .append_pair("client_secret", secret)
            .finish()
    };
    let token_request = |secret: String| {
        let url = serve.url("/connect/token");
        async move {
            http()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&secret))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(token_request(wrong_key).await.status().as_u16(), 400);
    let answer: Value = token_request(key).await.json().await.unwrap();
    let installation_token = answer["access_token"].as_str().unwrap().to_owned();
    secrets.push(installation_token.clone());
    let relayed = push_token('r', 163);
    secrets.push(relayed.clone());
    let (status, answer) = post(
        &serve.url("/push/register"),
        &installation_token,
        json!({"deviceId": "11111111-aaaa-4aaa-8aaa-00000000000a", "identifier": "relay-ident",
               "pushToken": relayed, "type": 0, "userId": USER, "organizationIds": [],
               "installationId": id}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(
        &serve.url("/push/send"),
        &installation_token,
        json!({"userId": USER, "type": 5, "payload": {"userId": USER, "date": "2026-12-03T10:00:00Z"},
               "installationId": id}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    eventually("the relayed push to reach FCM", || async {
        (p.fcm.requests_for(&relayed) > 0).then_some(())
    })
    .await;

    // /metrics with its bearer token, from a peer that is not trusted as local.
    let metrics = http()
        .get(serve.url("/metrics"))
        .header("authorization", format!("Bearer {METRICS_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);

    // The admin page: a wrong token, then the right one and the session it opens.
    let admin_login = |token: &'static str| {
        let url = serve.url("/admin/login");
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}"))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        admin_login("log-test-wrong-admin-token-0a9b8c")
            .await
            .status()
            .as_u16(),
        401
    );
    secrets.push("log-test-wrong-admin-token-0a9b8c".into());
    let session = admin_login(ADMIN_TOKEN).await;
    assert_eq!(session.status().as_u16(), 303);
    let cookie = session.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let session_id = cookie.split_once('=').unwrap().1.to_owned();
    secrets.push(session_id);
    let page = http()
        .get(serve.url("/admin"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);

    // The dead tokens' registrations are removed (and that is logged) before the run ends.
    eventually("the three dead registrations to be removed", || async {
        let text = http()
            .get(serve.url("/metrics"))
            .header("authorization", format!("Bearer {METRICS_TOKEN}"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (common::metric_sum(&text, "pushwarden_push_registrations_removed_total") >= 3.0)
            .then_some(())
    })
    .await;
    drop(client);
    secrets
}

async fn full_run(format: &str) -> (String, String, Vec<String>) {
    let p = Providers::start().await;
    let data_dir = common::fresh_data_dir();
    let logs = common::fresh_data_dir();
    std::fs::create_dir_all(&logs).unwrap();
    let env = environment(&p, &data_dir, format);
    let serve = Serve::start(&env, &logs);
    let secrets = exercise(&p, &serve, &env).await;
    let (out, err) = serve.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_dir_all(&logs);
    // The run must have produced real logs for the search below to mean anything.
    assert!(err.contains("push gateway ready"), "{err}");
    // …and have logged the events that handle secrets, for the search to cover them.
    for event in [
        "authentication failed",
        "installation token refused",
        "relay push queued",
    ] {
        assert!(err.contains(event), "no {event:?} in the logs:\n{err}");
    }
    assert_eq!(
        err.matches("removed a dead push registration").count(),
        3,
        "{err}"
    );
    (out, err, secrets)
}

fn assert_no_secret(output: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            secret.len() >= 16,
            "test secret too short to search for: {secret}"
        );
        if let Some(at) = output.find(secret.as_str()) {
            let line = output[..at].rsplit('\n').next().unwrap_or_default();
            panic!("a secret was logged whole: {secret}\nin the line starting: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_json_lines_without_colour_or_secrets() {
    let (out, err, secrets) = full_run("json").await;
    assert!(!err.contains('\u{1b}') && !out.contains('\u{1b}'));
    for line in err.lines() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
    }
    assert_no_secret(&out, &secrets);
    assert_no_secret(&err, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_pipe_have_no_colour_codes_or_secrets() {
    let (out, err, secrets) = full_run("text").await;
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in logs written to a pipe"
    );
    assert!(err.lines().any(|l| l.contains(" INFO ")), "{err}");
    assert_no_secret(&out, &secrets);
    assert_no_secret(&err, &secrets);
}
