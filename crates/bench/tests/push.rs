//! The `push` mode, tiny, against an in-process pushwarden: the bench starts its fake FCM and
//! writes the service account, the server is started with it (as scripts/bench.sh does), and
//! every delivery must arrive exactly once. Timings are not asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pushwarden::config::Config;
use serde_json::Value;

const SEND_KEY: &str = "bench-push-smoke-send-key";
const DEVICES: u64 = 20;
const USERS: u64 = 5;
const SENDS: u64 = 30;

/// A port free a moment ago, for the server the bench waits for.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[allow(clippy::field_reassign_with_default)]
async fn start_server(
    port: u16,
    dir: &Path,
    account: &Path,
    fcm: &str,
) -> pushwarden::server::Server {
    pushwarden::metrics::install();
    let mut config = Config::default();
    config.listen = format!("127.0.0.1:{port}").parse().expect("address");
    config.jwt.hs256_secret = Some("bench-push-smoke-secret".into());
    config.send.api_key = Some(SEND_KEY.into());
    config.shutdown_timeout = Duration::from_secs(2);
    config.data_dir = dir.join("data");
    config.fcm.service_account = Some(account.to_path_buf());
    config.fcm.endpoint = Some(fcm.to_owned());
    pushwarden::server::start(config)
        .await
        .expect("server starts")
}

/// Runs `pushwarden-bench push` with `args` against a fresh in-process server; its JSON result.
async fn push_bench(name: &str, args: &[&str]) -> Value {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "pushwarden-bench-push-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let account = dir.join("fcm-service-account.json");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushwarden-bench"))
        .arg("push")
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--send-key", SEND_KEY, "--fake-listen", "127.0.0.1:0"])
        .args(["--service-account", account.to_str().expect("path")])
        .args([
            "--devices",
            &DEVICES.to_string(),
            "--users",
            &USERS.to_string(),
        ])
        .args(["--sends", &SENDS.to_string()])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--ready-timeout", "20s", "--drain", "10s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bench starts");

    // The readiness line names the fake's URL; the rest of stderr is kept for failures.
    let stderr = child.stderr.take().expect("stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut kept = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("push: fake FCM at ") {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = ready_tx.send(url);
            }
            kept.push_str(&line);
            kept.push('\n');
        }
        kept
    });
    let fcm = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the bench announces its fake FCM");
    assert!(
        account.is_file(),
        "service account written before the readiness line"
    );
    let server = start_server(port, &dir, &account, &fcm).await;

    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("bench runs");
    let stderr = log.join().expect("stderr reader");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench push {args:?} failed: {stderr}\n{stdout}"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("push {args:?}: {stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("bench push {args:?}: not JSON ({e}): {stdout}\n{stderr}"))
}

fn u(result: &Value, field: &str) -> u64 {
    result[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {result}"))
}

/// Every push accepted and every delivery at the fake exactly once, nothing left queued.
fn assert_all_delivered(result: &Value) {
    let expected = SENDS * DEVICES / USERS;
    assert_eq!(u(result, "sent"), SENDS, "{result}");
    assert_eq!(u(result, "send_ok"), SENDS, "{result}");
    assert_eq!(u(result, "send_failures"), 0, "{result}");
    assert_eq!(u(result, "queued"), expected, "{result}");
    assert_eq!(u(result, "deliveries_expected"), expected, "{result}");
    assert_eq!(u(result, "deliveries"), expected, "{result}");
    assert_eq!(u(result, "deliveries_missing"), 0, "{result}");
    assert_eq!(u(result, "deliveries_duplicate"), 0, "{result}");
    assert_eq!(u(result, "deliveries_unexpected"), 0, "{result}");
    assert_eq!(u(result, "error_count"), 0, "{result}");
    assert_eq!(u(result, "server_pending_after"), 0, "{result}");
    assert_eq!(u(&result["accept_latency_us"], "count"), SENDS, "{result}");
    assert_eq!(
        u(&result["delivery_latency_us"], "count"),
        expected,
        "{result}"
    );
    assert_eq!(u(&result["push_latency_us"], "count"), SENDS, "{result}");
    assert!(u(result, "server_rss_end_kib") > 0, "{result}");
    assert!(
        result["deliveries_per_second"].as_f64().is_some(),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_delivers_everything() {
    let max = push_bench("max", &["--rate", "max", "--send-concurrency", "4"]).await;
    assert_all_delivered(&max);
    assert!(max["target_rate"].is_null(), "{max}");
    let baseline = &max["baseline"];
    let expected = SENDS * DEVICES / USERS;
    assert_eq!(u(baseline, "deliveries"), expected, "{max}");
    assert_eq!(u(baseline, "deliveries_at_fake"), expected, "{max}");
    assert_eq!(u(baseline, "failures"), 0, "{max}");
    assert!(max["ratio_to_baseline"].as_f64().is_some(), "{max}");

    let paced = push_bench("paced", &["--rate", "300", "--no-baseline"]).await;
    assert_all_delivered(&paced);
    assert_eq!(paced["target_rate"].as_f64(), Some(300.0), "{paced}");
    assert!(paced.get("baseline").is_none(), "{paced}");
}
