//! pushwarden serving HTTPS itself: certificate loading and TLS in the edge's accept loop, with
//! a small router of its own (not pushwarden's server).

// The module is compiled into this test directly so that it does not depend on how the
// library exports it.
#[allow(dead_code)]
use pushwarden::tls;

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;

use pushwarden::edge::{ConnectionCaps, EdgeOptions};
use tls::load_server_config;

/// The TLS handshake timeout these tests serve with unless they say otherwise.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const STEP: Duration = Duration::from_secs(5);

/// A directory of its own under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pushwarden-tls-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temporary directory");
        TempDir(dir)
    }

    /// Written readable by the owner only, as pushwarden requires of a private key file.
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .expect("create file");
        std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate (PEM) for `localhost` and 127.0.0.1, and its key (PKCS#8 PEM).
fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate certificate");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// Writes a fresh certificate and key and loads them.
fn config_in(dir: &TempDir) -> (Arc<ServerConfig>, String) {
    let (cert, key) = self_signed();
    let cert_file = dir.write("cert.pem", &cert);
    let key_file = dir.write("key.pem", &key);
    let config = load_server_config(&cert_file, &key_file).expect("load certificate and key");
    (config, cert)
}

/// Metrics recorded before the recorder exists are lost, so every test installs it first.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install metrics recorder")
    })
}

fn handshake_failures(reason: &str) -> f64 {
    metrics()
        .render()
        .lines()
        .filter(|line| {
            line.starts_with(tls::HANDSHAKE_FAILURES_METRIC)
                && line.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/version",
            get(|request: Request| async move { format!("{:?}", request.version()) }),
        )
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Serves `router()` over TLS exactly as pushwarden's server does: the edge's accept loop, with
/// `ConnectInfo<SocketAddr>` and a graceful shutdown.
async fn serve(config: Arc<ServerConfig>, handshake_timeout: Duration) -> Running {
    metrics();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let options = EdgeOptions {
        header_read_timeout: handshake_timeout,
        ..EdgeOptions::default()
    };
    let task = tokio::spawn(pushwarden::edge::serve(
        listener,
        router(),
        Some(config),
        options,
        ConnectionCaps::new(1000, 1000),
        async move {
            let _ = stopped.await;
        },
    ));
    Running { addr, stop, task }
}

/// A client that trusts only `cert` and resolves `localhost` to the server.
fn client(cert: &str, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(cert.as_bytes()).expect("certificate");
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([root])
        .resolve("localhost", addr)
        .timeout(STEP);
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().expect("client")
}

async fn get_text(client: &reqwest::Client, url: &str) -> (reqwest::Version, String) {
    let response = client.get(url).send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    let version = response.version();
    (version, response.text().await.expect("body"))
}

#[tokio::test]
async fn serves_https_over_http1_only_with_peer_address() {
    let dir = TempDir::new();
    let (config, cert) = config_in(&dir);
    let server = serve(config, HANDSHAKE_TIMEOUT).await;
    let base = format!("https://localhost:{}", server.addr.port());

    // A default client offers h2 and http/1.1 through ALPN and gets http/1.1, so that
    // browsers upgrade WebSockets the HTTP/1.1 way.
    let h2 = client(&cert, server.addr, false);
    let (version, body) = get_text(&h2, &format!("{base}/hello")).await;
    assert_eq!((version, body.as_str()), (reqwest::Version::HTTP_11, "hi"));
    let (_, seen) = get_text(&h2, &format!("{base}/version")).await;
    assert_eq!(seen, "HTTP/1.1");

    // A client that offers only http/1.1 gets it.
    let h1 = client(&cert, server.addr, true);
    let (version, body) = get_text(&h1, &format!("{base}/hello")).await;
    assert_eq!((version, body.as_str()), (reqwest::Version::HTTP_11, "hi"));
    let (_, seen) = get_text(&h1, &format!("{base}/version")).await;
    assert_eq!(seen, "HTTP/1.1");

    // ConnectInfo<SocketAddr> is the client's side of the TCP connection.
    for client in [&h1, &h2] {
        let (_, peer) = get_text(client, &format!("{base}/peer")).await;
        let peer: SocketAddr = peer.parse().expect("peer address");
        assert_eq!(peer.ip(), server.addr.ip());
        assert_ne!(peer.port(), server.addr.port());
        assert_ne!(peer.port(), 0);
    }

    // The certificate is also valid for the IP address.
    let by_ip = format!("https://127.0.0.1:{}/hello", server.addr.port());
    assert_eq!(get_text(&h1, &by_ip).await.1, "hi");

    let _ = server.stop.send(());
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let dir = TempDir::new();
    let (config, cert) = config_in(&dir);
    let server = serve(config, HANDSHAKE_TIMEOUT).await;

    // Connected and silent: its handshake waits, up to the 10 s timeout.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // One that stops in the middle of a ClientHello.
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let client = client(&cert, server.addr, true);
    let url = format!("https://localhost:{}/hello", server.addr.port());
    let (_, body) = tokio::time::timeout(STEP, get_text(&client, &url))
        .await
        .expect("not blocked by the silent connections");
    assert_eq!(body, "hi");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The silent connections were not dropped meanwhile: still open, nothing to read.
    for stream in silent.iter().chain([&partial]) {
        let mut buf = [0u8; 1];
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("silent connection should still be open: {other:?}"),
        }
    }

    let _ = server.stop.send(());
}

#[tokio::test]
async fn a_handshake_that_times_out_is_dropped_and_counted() {
    let dir = TempDir::new();
    let (config, cert) = config_in(&dir);
    let server = serve(config, Duration::from_millis(300)).await;
    let before = handshake_failures("timeout");

    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(STEP, silent.read(&mut buf))
        .await
        .expect("the server closes the connection after the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let deadline = Instant::now() + STEP;
    while handshake_failures("timeout") < before + 1.0 {
        assert!(Instant::now() < deadline, "timeout not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // And the listener still serves.
    let url = format!("https://localhost:{}/hello", server.addr.port());
    let (_, body) = get_text(&client(&cert, server.addr, false), &url).await;
    assert_eq!(body, "hi");

    let _ = server.stop.send(());
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_cleanly_and_serving_goes_on() {
    let dir = TempDir::new();
    let (config, cert) = config_in(&dir);
    let server = serve(config, HANDSHAKE_TIMEOUT).await;
    let before = handshake_failures("error");

    let plain = reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("client");
    let result = plain
        .get(format!("http://127.0.0.1:{}/hello", server.addr.port()))
        .send()
        .await;
    assert!(result.is_err(), "plain HTTP got an answer: {result:?}");

    // Raw garbage too: the server answers (at most) with an alert and closes.
    let mut garbage = TcpStream::connect(server.addr).await.expect("connect");
    garbage
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, garbage.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    assert!(
        !String::from_utf8_lossy(&answer).contains("hi"),
        "{answer:?}"
    );

    let deadline = Instant::now() + STEP;
    while handshake_failures("error") < before + 2.0 {
        assert!(Instant::now() < deadline, "handshake failures not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client that does not trust the certificate fails too, without harming the server.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(self_signed().0.as_bytes()).expect("certificate")
        ])
        .resolve("localhost", server.addr)
        .timeout(STEP)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/hello", server.addr.port());
    assert!(untrusting.get(&url).send().await.is_err());

    let (_, body) = get_text(&client(&cert, server.addr, false), &url).await;
    assert_eq!(body, "hi");

    let _ = server.stop.send(());
}

#[tokio::test]
async fn graceful_shutdown_closes_the_listening_socket() {
    let dir = TempDir::new();
    let (config, cert) = config_in(&dir);
    let server = serve(config, HANDSHAKE_TIMEOUT).await;
    let url = format!("https://localhost:{}/hello", server.addr.port());
    assert_eq!(
        get_text(&client(&cert, server.addr, false), &url).await.1,
        "hi"
    );

    // A handshake in progress must not hold the shutdown up either.
    let _silent = TcpStream::connect(server.addr).await.expect("connect");

    server.stop.send(()).expect("server running");
    tokio::time::timeout(STEP, server.task)
        .await
        .expect("serve returns")
        .expect("serve task")
        .expect("serve result");

    // The accept loop ended, and with it the listening socket.
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(server.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_of(cert_file: &Path, key_file: &Path) -> String {
    match load_server_config(cert_file, key_file) {
        Ok(_) => panic!("{} with {} loaded", cert_file.display(), key_file.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn configuration_errors_name_the_file() {
    let dir = TempDir::new();
    let (cert, key) = self_signed();
    let (other_cert, other_key) = self_signed();
    let cert_file = dir.write("cert.pem", &cert);
    let key_file = dir.write("key.pem", &key);
    let other_key_file = dir.write("other-key.pem", &other_key);
    let missing = dir.0.join("missing.pem");
    let garbage = dir.write("garbage.pem", "this is not PEM at all\n");
    let broken = dir.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n@@@not base64@@@\n-----END CERTIFICATE-----\n",
    );
    let not_a_cert = dir.write(
        "not-a-cert.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );

    let e = error_of(&missing, &key_file);
    assert!(
        e.contains("reading TLS certificate file") && e.contains("missing.pem"),
        "{e}"
    );
    let e = error_of(&cert_file, &missing);
    assert!(
        e.contains("reading TLS private key file") && e.contains("missing.pem"),
        "{e}"
    );

    let e = error_of(&garbage, &key_file);
    assert!(
        e.contains("no PEM certificate") && e.contains("garbage.pem"),
        "{e}"
    );
    // A key where the certificate should be is no certificate either.
    let e = error_of(&key_file, &key_file);
    assert!(
        e.contains("no PEM certificate") && e.contains("key.pem"),
        "{e}"
    );
    let e = error_of(&broken, &key_file);
    assert!(
        e.contains("parsing TLS certificate file") && e.contains("broken.pem"),
        "{e}"
    );
    let e = error_of(&not_a_cert, &key_file);
    assert!(e.contains("not-a-cert.pem"), "{e}");

    let e = error_of(&cert_file, &garbage);
    assert!(
        e.contains("no PEM private key") && e.contains("garbage.pem"),
        "{e}"
    );
    let e = error_of(&cert_file, &cert_file);
    assert!(
        e.contains("no PEM private key") && e.contains("cert.pem"),
        "{e}"
    );

    // Two certificates, keys swapped.
    let e = error_of(&cert_file, &other_key_file);
    assert!(
        e.contains("does not match") && e.contains("other-key.pem") && e.contains("cert.pem"),
        "{e}"
    );
    let other_cert_file = dir.write("other-cert.pem", &other_cert);
    let e = error_of(&other_cert_file, &key_file);
    assert!(e.contains("does not match"), "{e}");
}

#[test]
fn a_private_key_others_can_read_is_refused_with_the_fix() {
    let dir = TempDir::new();
    let (cert, key) = self_signed();
    let cert_file = dir.write("cert.pem", &cert);
    let key_file = dir.write("key.pem", &key);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = error_of(&cert_file, &key_file);
    assert!(
        e.contains("TLS private key") && e.contains(&format!("chmod 600 {}", key_file.display())),
        "{e}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    load_server_config(&cert_file, &key_file).expect("a private key file loads");
}

#[test]
fn accepted_pem_layouts() {
    let dir = TempDir::new();
    let (cert, key) = self_signed();
    let (intermediate, _) = self_signed();

    // Certificate and key in one file, in either order.
    let combined = dir.write("combined.pem", &format!("{cert}{key}"));
    load_server_config(&combined, &combined).expect("cert then key");
    let combined = dir.write("combined-reversed.pem", &format!("{key}{cert}"));
    load_server_config(&combined, &combined).expect("key then cert");

    // A chain: end-entity certificate first, then more.
    let chain = dir.write("chain.pem", &format!("{cert}{intermediate}"));
    let key_file = dir.write("key.pem", &key);
    load_server_config(&chain, &key_file).expect("chain");

    // Other key types than rcgen's default ECDSA P-256.
    for algorithm in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = rcgen::KeyPair::generate_for(algorithm).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("parameters")
            .self_signed(&key)
            .expect("certificate");
        let cert_file = dir.write("alg-cert.pem", &cert.pem());
        let key_file = dir.write("alg-key.pem", &key.serialize_pem());
        let config = load_server_config(&cert_file, &key_file).expect("key type");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
