//! The push providers' fakes, a server configured for them, and the push API, for the push
//! and relay tests.

use std::path::PathBuf;
use std::time::Duration;

use pushwarden::config::Config;
use pushwarden::server::Server;
use pushwarden_fakes::apns::{FakeApns, FakeApnsConfig};
use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig};
use pushwarden_fakes::webpush::FakeWebPush;
use pushwarden_fakes::Received;
use pushwarden_push::webpush::VapidKey;
use serde_json::Value;

use super::{config, http, SEND_KEY};

pub const TOPIC: &str = "com.8bit.bitwarden";
pub const WAIT: Duration = Duration::from_secs(10);

/// The three fakes and the configuration that points pushwarden at them.
pub struct Providers {
    pub apns: FakeApns,
    pub fcm: FakeFcm,
    pub web: FakeWebPush,
    pub dir: PathBuf,
}

impl Providers {
    pub async fn start() -> Self {
        let dir = super::fresh_data_dir();
        std::fs::create_dir_all(&dir).expect("dir");
        let (apns_config, p8) = FakeApnsConfig::with_new_key("ABC123DEFG", "DEF123GHIJ", TOPIC);
        super::write_private(&dir.join("AuthKey.p8"), p8.as_bytes());
        let apns = FakeApns::start(apns_config).await.expect("fake APNs");
        let fcm = FakeFcm::start(FakeFcmConfig::new("pushwarden-test"))
            .await
            .expect("fake FCM");
        super::write_private(&dir.join("fcm.json"), fcm.service_account_json().as_bytes());
        let vapid = VapidKey::generate().to_pem().expect("pem");
        super::write_private(&dir.join("vapid.pem"), vapid.as_bytes());
        let web = FakeWebPush::start(None).await.expect("fake web push");
        Self {
            apns,
            fcm,
            web,
            dir,
        }
    }

    /// A server configuration with every provider, fast retries, and its own database.
    pub fn config(&self) -> Config {
        let mut c = config();
        c.data_dir = self.dir.join("data");
        c.apns.key_file = Some(self.dir.join("AuthKey.p8"));
        c.apns.key_id = Some("ABC123DEFG".into());
        c.apns.team_id = Some("DEF123GHIJ".into());
        c.apns.topic = Some(TOPIC.into());
        c.apns.endpoint = Some(self.apns.url());
        c.fcm.service_account = Some(self.dir.join("fcm.json"));
        c.fcm.endpoint = Some(self.fcm.url());
        c.webpush.vapid_private_key = Some(self.dir.join("vapid.pem"));
        c.webpush.vapid_subject = Some("mailto:ops@example.com".into());
        c.push.allow_private_endpoints = true;
        c.push.retry_base = Duration::from_millis(50);
        c.push.retry_max = Duration::from_millis(400);
        c
    }
}

/// Calls the push API with the `/send` key, or with `bearer` when given.
pub async fn call_as(
    server: &Server,
    bearer: Option<&str>,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let url = format!("http://{}{path}", server.addr);
    let request = match method {
        "PUT" => http().put(url),
        "DELETE" => http().delete(url),
        _ => http().post(url),
    };
    let response = request
        .header(
            "authorization",
            format!("Bearer {}", bearer.unwrap_or(SEND_KEY)),
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn call(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    call_as(server, None, method, path, body).await
}

pub async fn ok(server: &Server, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(server, method, path, body.clone()).await;
    assert_eq!(status, 200, "{method} {path} {body} answered {answer}");
    answer
}

pub fn token(fill: char) -> String {
    std::iter::repeat_n(fill, 64).collect()
}

pub async fn wait_pending(server: &Server, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pending = server
            .push
            .store()
            .deliveries()
            .pending()
            .await
            .expect("pending");
        if pending == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} deliveries pending, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_unregistered(server: &Server, device: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server
        .push
        .store()
        .registrations()
        .get(device)
        .await
        .expect("lookup")
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{device} still registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn only(received: Vec<Received>, n: usize) -> Vec<Received> {
    assert_eq!(received.len(), n, "received {received:#?}");
    received
}

pub fn postgres_base() -> String {
    std::env::var("PUSHWARDEN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A new database on the local PostgreSQL (scripts/test.sh starts it; a missing server fails
/// the test rather than skipping it).
pub async fn postgres_database() -> String {
    use sqlx::Connection;
    let name = format!("pushwarden_app_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_base()))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    format!("{}/{name}", postgres_base())
}

pub async fn drop_postgres_database(url: &str) {
    use sqlx::Connection;
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    if let Ok(mut admin) =
        sqlx::PgConnection::connect(&format!("{}/postgres", postgres_base())).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

/// `POST /push/send` with the `/send` key; answers how many deliveries were queued.
pub async fn queued(server: &Server, body: Value) -> u64 {
    let answer = ok(server, "POST", "/push/send", body).await;
    answer["queued"]
        .as_u64()
        .unwrap_or_else(|| panic!("/push/send answered {answer}"))
}

/// `GET /health`.
pub async fn health(server: &Server) -> Value {
    http()
        .get(format!("http://{}/health", server.addr))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health JSON")
}
