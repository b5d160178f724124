//! `pushwarden doctor` against the real server, directly and through a small proxy broken on
//! purpose in each of the four usual ways (no upgrade headers, anonymous hub not routed,
//! buffering, a short read timeout), and over TLS with a CA of the test's own.
//!
//! Times are scaled down: the server answers long polls after 3 s and pings every second,
//! doctor holds its idle connections for 2 s and gives each step 3 s.

#[path = "../common/mod.rs"]
mod common;
mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pushwarden::config::Config;
use pushwarden::server::Server;
use pushwarden_doctor::{render, Options, Problem, Proxy, Report, Verdict};
use serde_json::Value;

use common::*;
use proxy::Breakage;

const LONG_POLL: Duration = Duration::from_secs(3);
const IDLE: Duration = Duration::from_secs(2);

fn server_config() -> Config {
    let mut config = common::config();
    config.transport.long_poll_timeout = LONG_POLL;
    config.hub.keep_alive_interval = Duration::from_secs(1);
    config
}

async fn server() -> Server {
    start(server_config()).await
}

fn options(url: String) -> Options {
    Options {
        idle: IDLE,
        timeout: Duration::from_secs(3),
        ..Options::new(url)
    }
}

async fn doctor(options: &Options) -> Report {
    // Doctor bounds every step itself; this only keeps a hang from stalling the suite.
    tokio::time::timeout(Duration::from_secs(30), pushwarden_doctor::run(options))
        .await
        .expect("doctor finishes")
        .expect("valid options")
}

fn verdict(report: &Report, id: &str) -> Verdict {
    report
        .check(id)
        .unwrap_or_else(|| panic!("no check {id} in {}", render::text(report)))
        .verdict
}

/// The fix lines `report` prints for `id`, for the proxy it recognised.
fn fix_lines(report: &Report, id: &str) -> String {
    let json = render::json(report);
    let check = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"));
    check["fixes"]
        .as_array()
        .expect("fixes")
        .iter()
        .flat_map(|fix| fix["lines"].as_array().expect("lines").clone())
        .map(|line| line.as_str().expect("line").to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_fails_with(report: &Report, id: &str, problem: Problem, line: &str) {
    let text = render::text(report);
    let check = report
        .check(id)
        .unwrap_or_else(|| panic!("no {id}: {text}"));
    assert_eq!(check.verdict, Verdict::Fail, "{text}");
    assert_eq!(check.problem, Some(problem), "{text}");
    assert!(
        fix_lines(report, id).contains(line),
        "{id} should say `{line}`:\n{text}"
    );
    assert!(text.contains(&format!("      nginx: {line}")), "{text}");
    assert_eq!(report.exit_code(), 1);
}

async fn through_proxy(breakage: Breakage) -> (Server, SocketAddr) {
    let server = server().await;
    let proxy = proxy::start(server.addr, breakage).await;
    (server, proxy)
}

#[tokio::test]
async fn a_correct_proxy_passes_every_check_but_the_http_warning() {
    let (_server, proxy) = through_proxy(Breakage::default()).await;
    let report = doctor(&Options {
        token: Some(user_token(
            "66666666-aaaa-4aaa-8aaa-000000000001",
            None,
            Value::Null,
        )),
        ..options(format!("http://{proxy}"))
    })
    .await;
    let text = render::text(&report);
    assert_eq!(report.proxy, Some(Proxy::Nginx), "{text}");
    assert_eq!(verdict(&report, "scheme"), Verdict::Warn, "{text}");
    assert!(text.contains("official clients need https"), "{text}");
    for id in [
        "websocket.anonymous_hub",
        "websocket.hub",
        "negotiate",
        "sse",
        "long_polling",
        "idle.websocket",
        "idle.long_polling",
        "exposure.send",
        "exposure.push",
        "clock",
    ] {
        assert_eq!(verdict(&report, id), Verdict::Pass, "{id}:\n{text}");
    }
    assert!(report.check("tls.chain").is_none(), "{text}");
    assert!(text.contains("handshake with the token"), "{text}");
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test]
async fn directly_at_pushwarden_with_the_notifications_url() {
    let server = server().await;
    let report = doctor(&Options {
        idle: Duration::ZERO,
        ..options(format!("http://{}/notifications/", server.addr))
    })
    .await;
    let text = render::text(&report);
    assert_eq!(report.proxy, None, "{text}");
    assert_eq!(
        verdict(&report, "websocket.anonymous_hub"),
        Verdict::Pass,
        "{text}"
    );
    // Without --token, reaching pushwarden's own 401 is what can be checked.
    assert_eq!(verdict(&report, "websocket.hub"), Verdict::Pass, "{text}");
    assert!(text.contains("give --token"), "{text}");
    assert_eq!(verdict(&report, "sse"), Verdict::Pass, "{text}");
    assert_eq!(verdict(&report, "idle.websocket"), Verdict::Warn, "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");
}

#[tokio::test]
async fn a_proxy_that_drops_the_upgrade_headers_is_told_to_set_them() {
    let (_server, proxy) = through_proxy(Breakage {
        strip_upgrade: true,
        ..Breakage::default()
    })
    .await;
    let report = doctor(&options(format!("http://{proxy}"))).await;
    assert_fails_with(
        &report,
        "websocket.anonymous_hub",
        Problem::UpgradeHeaders,
        "proxy_set_header Upgrade $http_upgrade;",
    );
    assert_fails_with(
        &report,
        "websocket.hub",
        Problem::UpgradeHeaders,
        "proxy_set_header Connection $connection_upgrade;",
    );
    let text = render::text(&report);
    assert!(
        text.contains("without its Upgrade/Connection headers"),
        "{text}"
    );
    // The transports that need no upgrade still work through it.
    assert_eq!(verdict(&report, "sse"), Verdict::Pass, "{text}");
    assert_eq!(verdict(&report, "long_polling"), Verdict::Pass, "{text}");
}

#[tokio::test]
async fn an_unrouted_anonymous_hub_is_named_with_the_proxy_that_answered() {
    let (_server, proxy) = through_proxy(Breakage {
        anonymous_hub_unrouted: true,
        ..Breakage::default()
    })
    .await;
    let report = doctor(&options(format!("http://{proxy}"))).await;
    assert_fails_with(
        &report,
        "websocket.anonymous_hub",
        Problem::RouteAnonymousHub,
        "location /notifications/ {",
    );
    let text = render::text(&report);
    assert!(text.contains("404 from nginx, not pushwarden"), "{text}");
    assert_eq!(verdict(&report, "websocket.hub"), Verdict::Pass, "{text}");
    assert_eq!(verdict(&report, "exposure.send"), Verdict::Pass, "{text}");
}

#[tokio::test]
async fn a_buffering_proxy_is_told_to_turn_buffering_off() {
    let (_server, proxy) = through_proxy(Breakage {
        buffer_event_stream: true,
        ..Breakage::default()
    })
    .await;
    let report = doctor(&options(format!("http://{proxy}"))).await;
    assert_fails_with(&report, "sse", Problem::Buffering, "proxy_buffering off;");
    let text = render::text(&report);
    assert!(
        text.contains("the proxy buffers the event stream"),
        "{text}"
    );
    assert_eq!(
        verdict(&report, "websocket.anonymous_hub"),
        Verdict::Pass,
        "{text}"
    );
    assert_eq!(verdict(&report, "long_polling"), Verdict::Pass, "{text}");
}

#[tokio::test]
async fn a_read_timeout_shorter_than_the_long_poll_is_told_to_raise_it() {
    let (_server, proxy) = through_proxy(Breakage {
        read_timeout: Some(Duration::from_secs(1)),
        ..Breakage::default()
    })
    .await;
    let report = doctor(&options(format!("http://{proxy}"))).await;
    assert_fails_with(
        &report,
        "idle.long_polling",
        Problem::ReadTimeout,
        "proxy_read_timeout 1h;",
    );
    let text = render::text(&report);
    assert!(
        text.contains("504 from nginx, not pushwarden after 1."),
        "{text}"
    );
    // pushwarden's pings keep a WebSocket open through the same proxy.
    assert_eq!(verdict(&report, "idle.websocket"), Verdict::Pass, "{text}");
}

#[tokio::test]
async fn an_empty_200_from_the_proxy_is_not_an_open_endpoint() {
    let (_server, proxy) = through_proxy(Breakage {
        push_unrouted_empty_200: true,
        ..Breakage::default()
    })
    .await;
    let report = doctor(&Options {
        idle: Duration::ZERO,
        ..options(format!("http://{proxy}"))
    })
    .await;
    let text = render::text(&report);
    let push = report.check("exposure.push").expect("exposure.push");
    assert_eq!(push.verdict, Verdict::Pass, "{text}");
    assert!(
        push.detail
            .contains("is not forwarded to pushwarden: 200 from nginx"),
        "{text}"
    );
    // /notifications/send still reaches pushwarden, which wants credentials.
    let send = report.check("exposure.send").expect("exposure.send");
    assert!(send.detail.contains("401 from pushwarden"), "{text}");
}

#[tokio::test]
async fn a_refused_token_fails_the_hub_without_blaming_the_proxy() {
    let (_server, proxy) = through_proxy(Breakage::default()).await;
    let report = doctor(&Options {
        idle: Duration::ZERO,
        token: Some("not-a-jwt".into()),
        ..options(format!("http://{proxy}"))
    })
    .await;
    let text = render::text(&report);
    let hub = report.check("websocket.hub").expect("websocket.hub");
    assert_eq!(hub.verdict, Verdict::Fail, "{text}");
    assert_eq!(hub.problem, None, "{text}");
    assert!(
        hub.detail
            .contains("pushwarden refused the token: 401 from pushwarden"),
        "{text}"
    );
    assert_eq!(
        verdict(&report, "websocket.anonymous_hub"),
        Verdict::Pass,
        "{text}"
    );
}

/// A CA and a certificate it signs for `names`, written as PEM files.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pushwarden-doctor-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("test PKI");
        let ca_key = KeyPair::generate().expect("test PKI");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("test PKI");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pushwarden doctor test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("test PKI");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("test PKI");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .expect("test PKI")
            .signed_by(&key, &issuer)
            .expect("test PKI");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("test PKI");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("test PKI");
        write_private(&dir.join("key.pem"), &key.serialize_pem());
        Pki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn write_private(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("test PKI");
    std::io::Write::write_all(&mut file, contents.as_bytes()).expect("test PKI");
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn https_server(pki: &Pki) -> Server {
    let mut config = server_config();
    config.tls.cert_file = Some(pki.file("cert.pem"));
    config.tls.key_file = Some(pki.file("key.pem"));
    start(config).await
}

#[tokio::test]
async fn tls_signed_by_a_trusted_ca_for_the_host_passes() {
    let pki = Pki::new(&["127.0.0.1"]);
    let server = https_server(&pki).await;
    let report = doctor(&Options {
        ca_file: Some(pki.file("ca.pem")),
        idle: Duration::ZERO,
        ..options(format!("https://{}", server.addr))
    })
    .await;
    let text = render::text(&report);
    for id in [
        "scheme",
        "tls.chain",
        "tls.name",
        "tls.expiry",
        "websocket.anonymous_hub",
        "sse",
        "long_polling",
        "clock",
    ] {
        assert_eq!(verdict(&report, id), Verdict::Pass, "{id}:\n{text}");
    }
    // Port 80 on this host is not ours to assume; tls.redirect's verdict is not asserted.
    assert!(report.check("tls.redirect").is_some(), "{text}");

    // The same server without the CA: the chain is not trusted, and nothing else gets through.
    let untrusted = doctor(&Options {
        idle: Duration::ZERO,
        ..options(format!("https://{}", server.addr))
    })
    .await;
    let text = render::text(&untrusted);
    assert_eq!(verdict(&untrusted, "tls.chain"), Verdict::Fail, "{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert_eq!(verdict(&untrusted, "tls.name"), Verdict::Pass, "{text}");
    assert_eq!(
        verdict(&untrusted, "websocket.anonymous_hub"),
        Verdict::Fail,
        "{text}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_naming_its_names() {
    let pki = Pki::new(&["vault.example.com", "www.example.com"]);
    let server = https_server(&pki).await;
    let report = doctor(&Options {
        ca_file: Some(pki.file("ca.pem")),
        idle: Duration::ZERO,
        ..options(format!("https://{}", server.addr))
    })
    .await;
    let text = render::text(&report);
    let name = report.check("tls.name").expect("tls.name");
    assert_eq!(name.verdict, Verdict::Fail, "{text}");
    assert_eq!(name.problem, Some(Problem::TlsName));
    assert!(
        name.detail
            .contains("the certificate is for vault.example.com, www.example.com, not 127.0.0.1"),
        "{text}"
    );
    assert_eq!(verdict(&report, "tls.chain"), Verdict::Pass, "{text}");
    assert_eq!(report.exit_code(), 1);
}

fn run_cli(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pushwarden"))
        .arg("doctor")
        .args(args)
        // Doctor reads no local configuration: a broken one must not matter.
        .env("PUSHWARDEN_LISTEN", "not an address")
        .output()
        .expect("run pushwarden doctor");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_exits_0_1_or_2_and_prints_json() {
    let (_server, good) = through_proxy(Breakage::default()).await;
    let (_server2, broken) = through_proxy(Breakage {
        anonymous_hub_unrouted: true,
        ..Breakage::default()
    })
    .await;
    let good_url = format!("http://{good}");
    let broken_url = format!("http://{broken}");
    let (ok, broken_run) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            run_cli(&[&good_url, "--json", "--idle", "1s", "--timeout", "3s"])
        }),
        tokio::task::spawn_blocking(move || {
            run_cli(&[
                &broken_url,
                "--idle",
                "0s",
                "--timeout",
                "3s",
                "--proxy",
                "haproxy",
            ])
        }),
    );
    let (code, stdout) = ok.unwrap();
    assert_eq!(code, 0, "{stdout}");
    let json: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(json["proxy"], "nginx");
    assert_eq!(json["summary"]["fail"], 0);
    let ids: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "scheme",
            "websocket.anonymous_hub",
            "websocket.hub",
            "negotiate",
            "sse",
            "long_polling",
            "idle.websocket",
            "idle.long_polling",
            "exposure.send",
            "exposure.push",
            "clock"
        ]
    );

    let (code, stdout) = broken_run.unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  websocket.anonymous_hub: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("      haproxy: acl pushwarden path_beg /notifications/"),
        "{stdout}"
    );
    assert!(!stdout.contains("nginx: location"), "{stdout}");

    assert_eq!(run_cli(&["vault.example.com"]).0, 2);
    assert_eq!(run_cli(&["http://127.0.0.1:1", "--idle", "soon"]).0, 2);
}
