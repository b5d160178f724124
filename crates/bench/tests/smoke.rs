//! Every mode, tiny, against an in-process pushwarden: the JSON result must add up (counts
//! match, no errors). Timings are not asserted.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pushwarden::config::Config;
use serde_json::Value;

const SECRET: &str = "bench-smoke-secret";
const SEND_KEY: &str = "bench-smoke-send-key";
const CONNECTIONS: u64 = 20;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[allow(clippy::field_reassign_with_default)]
async fn start_server() -> pushwarden::server::Server {
    pushwarden::metrics::install();
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.jwt.hs256_secret = Some(SECRET.into());
    config.jwt.rsa_public_key = Some(fixture("rsa_public.pem"));
    config.send.api_key = Some(SEND_KEY.into());
    config.hub.heartbeat_interval = Duration::from_secs(3600);
    config.shutdown_timeout = Duration::from_secs(2);
    // Churn connects thousands of times a second from one address, as scripts/bench.sh's
    // servers allow; the per-address rate limits have their own tests.
    config.limits.connects_per_minute = 0;
    config.limits.negotiates_per_minute = 0;
    config.limits.anonymous_connects_per_minute = 0;
    config.data_dir =
        std::env::temp_dir().join(format!("pushwarden-bench-smoke-{}", std::process::id()));
    pushwarden::server::start(config)
        .await
        .expect("server starts")
}

/// Runs the bench against `url` with `args`; returns its JSON result.
async fn bench(url: &str, args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushwarden-bench"));
    command
        .args(args)
        .args(["--url", url, "--send-key", SEND_KEY, "--source-ips", "4"])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--ready-timeout", "60s"]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed: {stderr}\n{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("bench {args:?}: not JSON ({e}): {stdout}\n{stderr}"));
    eprintln!("{args:?}: {stderr}");
    result
}

fn u(result: &Value, field: &str) -> u64 {
    result[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {result}"))
}

fn assert_clean(result: &Value, connections: u64) {
    assert_eq!(u(result, "connections"), connections, "{result}");
    assert_eq!(u(result, "connect_failures"), 0, "{result}");
    assert_eq!(u(result, "lost_connections"), 0, "{result}");
    assert_eq!(u(result, "error_count"), 0, "{result}");
    assert_eq!(u(result, "unmatched_messages"), 0, "{result}");
}

fn assert_fanout(result: &Value, members: u64) {
    assert_clean(result, members);
    let sent = u(result, "sent");
    assert!(sent > 0, "{result}");
    assert_eq!(u(result, "send_failures"), 0, "{result}");
    assert_eq!(u(result, "members"), members, "{result}");
    assert_eq!(u(result, "deliveries_expected"), sent * members, "{result}");
    assert_eq!(u(result, "deliveries"), sent * members, "{result}");
    assert_eq!(u(result, "notifications_complete"), sent, "{result}");
    assert_eq!(u(result, "notifications_incomplete"), 0, "{result}");
    assert_eq!(
        u(&result["delivery_latency_us"], "count"),
        sent * members,
        "{result}"
    );
    assert_eq!(
        u(&result["notification_latency_us"], "count"),
        sent,
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_adds_up() {
    let server = start_server().await;
    let url = format!("http://{}/hub", server.addr);
    let n = CONNECTIONS.to_string();
    let n = n.as_str();

    let idle = bench(
        &url,
        &[
            "idle",
            "-n",
            n,
            "--processes",
            "2",
            "--secret",
            SECRET,
            "--settle",
            "500ms",
        ],
    )
    .await;
    assert_clean(&idle, CONNECTIONS);
    assert!(u(&idle, "server_rss_after_kib") > 0, "{idle}");
    assert!(
        idle["server_rss_per_connection_bytes"].is_number(),
        "{idle}"
    );

    let unicast = bench(
        &url,
        &[
            "unicast",
            "-n",
            n,
            "--users",
            "10",
            "--secret",
            SECRET,
            "--rate",
            "40",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_clean(&unicast, CONNECTIONS);
    let sent = u(&unicast, "sent");
    assert!(sent > 0, "{unicast}");
    assert_eq!(u(&unicast, "send_failures"), 0, "{unicast}");
    // Ten users with two connections each: every notification reaches two.
    assert_eq!(u(&unicast, "deliveries_expected"), sent * 2, "{unicast}");
    assert_eq!(u(&unicast, "deliveries"), sent * 2, "{unicast}");

    let json_fanout = bench(
        &url,
        &[
            "fanout",
            "-n",
            n,
            "--processes",
            "2",
            "--protocol",
            "json",
            "--secret",
            SECRET,
            "--rate",
            "10",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_fanout(&json_fanout, CONNECTIONS);

    let window = bench(
        &url,
        &[
            "fanout",
            "-n",
            n,
            "--rsa-private-key",
            fixture("rsa_private.pem").to_str().expect("path"),
            "--in-flight",
            "2",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_fanout(&window, CONNECTIONS);
    assert_eq!(u(&window, "timed_out"), 0, "{window}");

    let raw = bench(
        &url,
        &[
            "raw",
            "-n",
            n,
            "--processes",
            "2",
            "--in-flight",
            "2",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_fanout(&raw, CONNECTIONS);
    assert!(u(&raw, "frame_bytes") > 100, "{raw}");

    for key in [
        vec!["--secret", SECRET],
        vec![
            "--rsa-private-key",
            fixture("rsa_private.pem").to_str().expect("path"),
        ],
    ] {
        let mut args = vec![
            "churn",
            "-n",
            "4",
            "--processes",
            "2",
            "--concurrency",
            "4",
            "--tokens",
            "8",
            "--duration",
            "1s",
        ];
        args.extend(key);
        let churn = bench(&url, &args).await;
        assert_clean(&churn, 4);
        let connects = u(&churn, "churn_connects");
        assert!(connects > 0, "{churn}");
        assert_eq!(u(&churn, "churn_connect_failures"), 0, "{churn}");
        assert_eq!(u(&churn, "churn_disconnects"), connects, "{churn}");
        assert_eq!(
            u(&churn["connect_latency_us"], "count"),
            connects,
            "{churn}"
        );
    }

    server.shutdown().await.expect("shutdown");
}
