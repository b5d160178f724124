//! The `push-org` mode, tiny, against an in-process pushwarden relay: the installations are
//! created on the server's database first, the bench starts its three fakes and writes
//! `server.env`, the server is started with those variables (as scripts/bench.sh does), and every
//! delivery must arrive exactly once. Timings are not asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pushwarden::config::Config;
use pushwarden_push::store::{now_ms, Store};
use serde_json::Value;

const SEND_KEY: &str = "bench-push-org-smoke-send-key";
const ORG_DEVICES: u64 = 40;
const ORG_PUSHES: u64 = 2;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[allow(clippy::field_reassign_with_default)]
fn config(port: u16, dir: &Path) -> Config {
    let mut config = Config::default();
    config.listen = format!("127.0.0.1:{port}").parse().expect("address");
    config.jwt.hs256_secret = Some("bench-push-org-smoke-secret".into());
    config.send.api_key = Some(SEND_KEY.into());
    config.shutdown_timeout = Duration::from_secs(2);
    config.data_dir = dir.join("data");
    // As scripts/bench.sh raises them.
    config.relay.requests_per_minute = 1_000_000_000;
    config.relay.pushes_per_minute = 1_000_000_000;
    config.relay.max_registrations = 1_000_000_000;
    config
}

/// Applies the bench's `server.env` to `config`; a variable this test does not know fails it,
/// so the test keeps up with what the bench writes.
fn apply_env(config: &mut Config, text: &str) {
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once('=').expect("NAME=value");
        let value = value.to_owned();
        match name {
            "PUSHWARDEN_FCM_SERVICE_ACCOUNT" => config.fcm.service_account = Some(value.into()),
            "PUSHWARDEN_FCM_ENDPOINT" => config.fcm.endpoint = Some(value),
            "PUSHWARDEN_APNS_KEY_FILE" => config.apns.key_file = Some(value.into()),
            "PUSHWARDEN_APNS_KEY_ID" => config.apns.key_id = Some(value),
            "PUSHWARDEN_APNS_TEAM_ID" => config.apns.team_id = Some(value),
            "PUSHWARDEN_APNS_TOPIC" => config.apns.topic = Some(value),
            "PUSHWARDEN_APNS_ENDPOINT" => config.apns.endpoint = Some(value),
            "PUSHWARDEN_VAPID_PRIVATE_KEY" => config.webpush.vapid_private_key = Some(value.into()),
            "PUSHWARDEN_VAPID_SUBJECT" => config.webpush.vapid_subject = Some(value),
            "PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS" => {
                config.push.allow_private_endpoints = value == "true"
            }
            other => panic!("server.env sets {other}, which this test does not apply"),
        }
    }
}

/// Two installations on the server's (not yet served) database, as `pushwarden installation
/// create` prints them.
async fn create_installations(config: &Config, dir: &Path) -> [PathBuf; 2] {
    std::fs::create_dir_all(&config.data_dir).expect("data dir");
    let store = Store::connect(&config.database_url())
        .await
        .expect("database");
    let mut files = Vec::new();
    for name in ["a", "b"] {
        let (installation, key) = store
            .installations()
            .create(Some("bench@example.com"), now_ms())
            .await
            .expect("installation");
        let path = dir.join(format!("installation-{name}.txt"));
        std::fs::write(&path, format!("id:  {}\nkey: {key}\n", installation.id))
            .expect("installation file");
        files.push(path);
    }
    store.close().await;
    [files[0].clone(), files[1].clone()]
}

/// Runs `pushwarden-bench push-org` with `args` against a fresh in-process relay.
async fn push_org_bench(name: &str, args: &[&str]) -> Value {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "pushwarden-bench-push-org-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let mut config = config(port, &dir);
    let [a, b] = create_installations(&config, &dir).await;
    let files = dir.join("files");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushwarden-bench"))
        .arg("push-org")
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--send-key", SEND_KEY])
        .args(["--dir", files.to_str().expect("path")])
        .args(["--installation-a", a.to_str().expect("path")])
        .args(["--installation-b", b.to_str().expect("path")])
        .args(["--org-devices", &ORG_DEVICES.to_string()])
        .args(["--org-pushes", &ORG_PUSHES.to_string()])
        .args(["--b-rate", "20", "--idle", "1s", "--drain", "20s"])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--ready-timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bench starts");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .fold(String::new(), |all, line| all + &line + "\n")
    });

    let env_file = files.join("server.env");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env_file.is_file() {
        assert!(Instant::now() < deadline, "the bench wrote no server.env");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    apply_env(
        &mut config,
        &std::fs::read_to_string(&env_file).expect("server.env"),
    );
    pushwarden::metrics::install();
    let server = pushwarden::server::start(config)
        .await
        .expect("server starts");

    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("bench runs");
    let stderr = log.join().expect("stderr reader");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench push-org {args:?} failed: {stderr}\n{stdout}"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("push-org {args:?}: {stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("bench push-org {args:?}: not JSON ({e}): {stdout}\n{stderr}"))
}

fn u(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
}

fn assert_all_delivered(result: &Value, register: &str) {
    assert_eq!(u(result, "error_count"), 0, "{result}");
    assert_eq!(result["registration"]["org_register"], register, "{result}");
    let load = &result["load"];
    assert_eq!(u(load, "org_pushes_accepted"), ORG_PUSHES, "{result}");
    assert_eq!(
        u(load, "org_deliveries_seen"),
        ORG_PUSHES * ORG_DEVICES,
        "{result}"
    );
    assert_eq!(u(&load["org_accept_latency_us"], "count"), ORG_PUSHES);
    assert!(load["first_push_seconds"].as_f64().is_some(), "{result}");
    let by_provider: u64 = ["fcm", "apns", "webpush"]
        .iter()
        .map(|p| u(&load["by_provider"][p], "org_deliveries_seen"))
        .sum();
    assert_eq!(by_provider, ORG_PUSHES * ORG_DEVICES, "{result}");
    let deliveries = &result["deliveries"];
    let idle = &result["idle"];
    assert!(u(idle, "b_sent") > 0, "{result}");
    // Every accepted push of B and every org push, to each of its devices, exactly once.
    let b_accepted = u(idle, "b_accepted") + u(load, "b_accepted");
    assert!(
        u(deliveries, "expected") >= ORG_PUSHES * ORG_DEVICES + b_accepted,
        "{result}"
    );
    assert_eq!(
        u(deliveries, "delivered"),
        u(deliveries, "expected"),
        "{result}"
    );
    for field in ["missing", "duplicate", "unexpected"] {
        assert_eq!(u(deliveries, field), 0, "{result}");
    }
    for provider in ["fcm", "apns", "webpush"] {
        assert!(
            u(&deliveries["by_provider"][provider], "delivered") > 0,
            "{result}"
        );
    }
    assert_eq!(u(result, "server_pending_after"), 0, "{result}");
    assert_eq!(
        u(idle, "b_delivered_seen"),
        u(idle, "b_accepted"),
        "{result}"
    );
    assert!(u(result, "server_rss_peak_kib") > 0, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_org_mode_delivers_everything() {
    let local = push_org_bench("local", &[]).await;
    assert_all_delivered(&local, "local");
    let baseline = &local["baseline"];
    assert_eq!(u(baseline, "deliveries"), ORG_DEVICES, "{local}");
    assert_eq!(u(baseline, "deliveries_at_fakes"), ORG_DEVICES, "{local}");
    assert!(
        local["first_push_over_baseline"].as_f64().is_some(),
        "{local}"
    );

    let relayed = push_org_bench("relay", &["--org-register", "relay", "--no-baseline"]).await;
    assert_all_delivered(&relayed, "relay");
    assert!(relayed.get("baseline").is_none(), "{relayed}");
}
