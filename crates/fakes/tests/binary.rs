//! `pushwarden-fake` as a person runs it: the printed environment variables and written files
//! are enough for pushwarden's clients to deliver, and each delivery shows up on stdout.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pushwarden_push::apns::{
    bitwarden_payload, ApnsClient, ApnsConfig, Environment, Outcome as ApnsOutcome, SendOptions,
};
use pushwarden_push::fcm::{bitwarden_data, FcmClient, Outcome as FcmOutcome, ServiceAccount};
use pushwarden_push::providers::parse_subscription;
use pushwarden_push::webpush::{build_request, send, Outcome as WebPushOutcome, Urgency, VapidKey};
use serde_json::Value;
use url::Url;

/// The running binary, killed when the test ends however it ends.
struct Fake {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn run(name: &str, args: &[&str]) -> Fake {
    let dir = std::env::temp_dir().join(format!(
        "pushwarden-fake-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushwarden-fake"))
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pushwarden-fake");
    let stdout = lines(child.stdout.take().expect("stdout"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    Fake {
        child,
        stdout,
        stderr,
        dir,
    }
}

impl Fake {
    /// Reads stderr up to the "Ctrl-C" line and returns the NAME=value lines seen on the way.
    fn env(&self) -> HashMap<String, String> {
        let mut vars = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no start-up banner: {e}; got {vars:?}"));
            if line.contains("Ctrl-C") {
                return vars;
            }
            if let Some((name, value)) = line.split_once('=') {
                if name.starts_with("PUSHWARDEN_") {
                    vars.insert(name.to_owned(), value.trim_matches('\'').to_owned());
                }
            }
        }
    }

    fn next_push(&self) -> Value {
        let line = self
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("a push on stdout");
        serde_json::from_str(&line).expect("stdout line is JSON")
    }
}

#[tokio::test]
async fn apns_prints_its_environment_and_the_pushes() {
    let fake = run(
        "apns",
        &["apns", "--listen", "127.0.0.1:0", "--key-dir", "keys"],
    );
    let env = fake.env();
    let key_file = &env["PUSHWARDEN_APNS_KEY_FILE"];
    assert!(
        key_file.ends_with("keys/AuthKey_ABC123DEFG.p8"),
        "{key_file}"
    );
    assert!(PathBuf::from(key_file).is_absolute());
    let client = ApnsClient::new(ApnsConfig {
        key_pem: std::fs::read(key_file).expect("key file"),
        key_id: env["PUSHWARDEN_APNS_KEY_ID"].clone(),
        team_id: env["PUSHWARDEN_APNS_TEAM_ID"].clone(),
        topic: env["PUSHWARDEN_APNS_TOPIC"].clone(),
        endpoint: Some(Url::parse(&env["PUSHWARDEN_APNS_ENDPOINT"]).expect("endpoint")),
        extra_ca_pem: None,
    })
    .expect("client");
    assert_eq!(env["PUSHWARDEN_APNS_TOPIC"], "com.8bit.bitwarden");
    let token = "0f".repeat(32);
    let body = bitwarden_payload(5, "{}");
    assert!(matches!(
        client
            .send(
                &token,
                Environment::Production,
                &body,
                SendOptions::default()
            )
            .await,
        ApnsOutcome::Delivered { .. }
    ));
    let push = fake.next_push();
    assert_eq!(push["provider"], "apns");
    assert_eq!(push["token"], token.as_str());
    assert_eq!(push["body"], body);

    // A refusal is reported on stderr with its reason.
    let bad = client
        .send(
            &token,
            Environment::Production,
            &body,
            SendOptions {
                priority: 10,
                ..SendOptions::default()
            },
        )
        .await;
    assert!(matches!(bad, ApnsOutcome::Permanent { status: 400, .. }));
    let line = fake
        .stderr
        .recv_timeout(Duration::from_secs(10))
        .expect("refusal line");
    assert!(line.contains("BadPriority"), "{line}");
}

#[tokio::test]
async fn fcm_writes_a_service_account_that_works() {
    let fake = run(
        "fcm",
        &[
            "fcm",
            "--listen",
            "127.0.0.1:0",
            "--project",
            "demo-project",
        ],
    );
    let env = fake.env();
    let file = &env["PUSHWARDEN_FCM_SERVICE_ACCOUNT"];
    assert!(file.ends_with("fcm-service-account.json"), "{file}");
    let account =
        ServiceAccount::from_json(&std::fs::read_to_string(file).expect("file")).expect("account");
    assert_eq!(account.project_id, "demo-project");
    let client = FcmClient::new(
        account,
        Some(Url::parse(&env["PUSHWARDEN_FCM_ENDPOINT"]).expect("endpoint")),
    )
    .expect("client");
    let data = bitwarden_data(1, "{}", None);
    assert!(matches!(
        client.send("android-device", &data).await,
        FcmOutcome::Delivered { .. }
    ));
    let push = fake.next_push();
    assert_eq!(push["provider"], "fcm");
    assert_eq!(push["token"], "android-device");
    assert_eq!(push["body"]["data"]["type"], "1");
}

#[tokio::test]
async fn webpush_writes_a_subscription_that_works() {
    let fake = run("webpush", &["webpush", "--listen", "127.0.0.1:0"]);
    let env = fake.env();
    assert_eq!(env["PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS"], "true");
    assert!(env.contains_key("PUSHWARDEN_VAPID_PRIVATE_KEY"));
    let sub: pushwarden_fakes::webpush::Subscription = serde_json::from_str(
        &std::fs::read_to_string(fake.dir.join("webpush-subscription.json")).expect("file"),
    )
    .expect("subscription JSON");
    let vapid = VapidKey::generate();
    let req = build_request(
        &parse_subscription(&sub.endpoint, &sub.p256dh, &sub.auth, true).expect("subscription"),
        br#"{"hello":"world"}"#,
        &vapid,
        "mailto:ops@example.org",
        60,
        Urgency::Normal,
    )
    .expect("build");
    let client = reqwest::Client::new();
    assert_eq!(send(&client, &req).await, WebPushOutcome::Delivered);
    let push = fake.next_push();
    assert_eq!(push["provider"], "webpush");
    assert_eq!(push["token"], sub.id());
    assert_eq!(push["body"], serde_json::json!({"hello": "world"}));
}
