//! Outbound pushes cannot be turned against the server (issue 13, rows 4, 5 and 7): against
//! real sockets on loopback, a push endpoint that answers with a huge body, one that never
//! answers, and a proxy that must not be used unless configured.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig};
use pushwarden_fakes::webpush::FakeWebPush;
use pushwarden_model::{
    DeviceRegistration, DeviceTarget, PushChannel, PushGateway as _, PushMessage, PushType,
    Recipient, Target,
};
use pushwarden_push::backoff::Backoff;
use pushwarden_push::fcm::{self, FcmClient, ServiceAccount};
use pushwarden_push::outcome::Outcome;
use pushwarden_push::providers::{Providers, ProvidersConfig, WebPushConfig, WebPushLimits};
use pushwarden_push::registration::{Channel, Platform};
use pushwarden_push::store::ClaimedDevice;
use pushwarden_push::webpush::VapidKey;
use pushwarden_push::DeliveryOptions;
use pushwarden_push::PushService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn webpush_config() -> WebPushConfig {
    WebPushConfig {
        vapid: VapidKey::generate(),
        subject: "mailto:ops@example.com".into(),
        ttl: Duration::from_secs(60),
    }
}

/// A Web Push device for `endpoint`, with keys a fake user agent made.
fn device(fake: &FakeWebPush, endpoint: &str) -> ClaimedDevice {
    let mut sub = fake.subscribe();
    sub.endpoint = endpoint.to_owned();
    subscribed(sub)
}

/// The device a subscription of the fake push service makes.
fn subscribed(sub: pushwarden_fakes::webpush::Subscription) -> ClaimedDevice {
    let endpoint = sub.endpoint;
    ClaimedDevice {
        platform: Platform::WebPush,
        channel: Channel::WebPush {
            endpoint,
            p256dh: sub.p256dh,
            auth: sub.auth,
        },
        apns_environment: None,
        updated_ms: 0,
    }
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body); false if the peer left.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut have = buf.len() - end - 4;
            while have < length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => have += n,
                }
            }
            return true;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The peak resident set of this process so far (`VmHWM`), in KiB: a body read whole and
/// freed again shows here even after the memory went back.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits for `done` to hold, polling every 10 ms, for at most `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An HTTP/1.1 server for one request that answers `400` with a chunked body of 200 MiB,
/// written lazily in 64 KiB chunks until done or the client goes away.
struct HugeBody {
    addr: std::net::SocketAddr,
    /// Body bytes written so far.
    written: Arc<AtomicU64>,
    /// 1 once the server stopped writing.
    finished: Arc<AtomicUsize>,
}

impl HugeBody {
    const TOTAL: u64 = 200 * 1024 * 1024;

    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let written = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (w, f) = (written.clone(), finished.clone());
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            if read_request(&mut stream).await {
                let head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
                             transfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head).await.is_ok() {
                    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
                    chunk.extend(std::iter::repeat_n(b'x', 64 * 1024));
                    chunk.extend_from_slice(b"\r\n");
                    while w.load(Ordering::Relaxed) < Self::TOTAL {
                        if stream.write_all(&chunk).await.is_err() {
                            break;
                        }
                        w.fetch_add(64 * 1024, Ordering::Relaxed);
                    }
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                }
            }
            f.store(1, Ordering::Relaxed);
        });
        Self {
            addr,
            written,
            finished,
        }
    }

    /// Waits until the server stopped writing (its writes fail once the client dropped the
    /// connection) and answers how much of the body it wrote.
    async fn written_when_done(&self) -> u64 {
        wait_for(
            Duration::from_secs(10),
            "the server to stop writing",
            || self.finished.load(Ordering::Relaxed) == 1,
        )
        .await;
        self.written.load(Ordering::Relaxed)
    }
}

/// Row 4: an endpoint answering 400 with a 200 MB chunked body. The push settles as rejected
/// (a 400 is permanent) and the client stops reading after the cap, so the server manages to
/// write only what the socket buffers hold, not the 200 MB, and memory stays flat.
/// Web Push only, to endpoints on loopback (where the test servers are).
fn local_webpush_providers() -> Providers {
    Providers::new(ProvidersConfig {
        webpush: Some(webpush_config()),
        allow_private_endpoints: true,
        ..ProvidersConfig::default()
    })
    .expect("providers")
}

#[tokio::test]
async fn a_huge_error_body_is_read_only_up_to_the_cap() {
    let server = HugeBody::start().await;
    let addr = server.addr;
    let fake = FakeWebPush::start(None).await.expect("fake web push");
    let providers = local_webpush_providers();
    let target = device(&fake, &format!("http://{addr}/push/huge"));
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let outcome = providers.deliver(&target, 0, "{}", None).await;
    let took = started.elapsed();
    let rss_after = peak_rss_kib();
    match &outcome {
        Outcome::Rejected { reason } => {
            assert!(reason.starts_with("Web Push 400"), "{reason}");
            assert!(
                reason.len() < 4096,
                "the reason kept {} bytes",
                reason.len()
            );
        }
        other => panic!("a 400 is rejected, got {other:?}"),
    }
    let written = server.written_when_done().await;
    eprintln!(
        "huge body: settled in {took:?}; server wrote {} KiB of 200 MiB; peak RSS {} -> {} KiB",
        written / 1024,
        rss_before,
        rss_after
    );
    assert!(
        written < 24 * 1024 * 1024,
        "the client kept reading: the server wrote {written} bytes"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 32 * 1024,
        "peak resident memory grew from {rss_before} to {rss_after} KiB"
    );
}

/// Row 4, FCM's OAuth token endpoint (a URL from the service-account file): a 400 with a huge
/// body is read only up to the cap too, and the push settles as a configuration error.
#[tokio::test]
async fn a_huge_token_endpoint_answer_is_read_only_up_to_the_cap() {
    let server = HugeBody::start().await;
    let fcm = FakeFcm::start(FakeFcmConfig::new("outbound-test"))
        .await
        .expect("fake FCM");
    let mut account: serde_json::Value =
        serde_json::from_str(&fcm.service_account_json()).expect("service account");
    account["token_uri"] = format!("http://{}/token", server.addr).into();
    let account = ServiceAccount::from_json(&account.to_string()).expect("account");
    let client =
        FcmClient::new(account, Some(url::Url::parse(&fcm.url()).expect("url"))).expect("client");
    let outcome = client.send("token", &serde_json::Map::new()).await;
    match outcome {
        fcm::Outcome::Permanent { reason, .. } => {
            assert!(reason.len() < 4096, "{} bytes kept", reason.len())
        }
        other => panic!("an OAuth 400 is permanent, got {other:?}"),
    }
    let written = server.written_when_done().await;
    eprintln!(
        "token endpoint: server wrote {} KiB of 200 MiB",
        written / 1024
    );
    assert!(
        written < 24 * 1024 * 1024,
        "the server wrote {written} bytes"
    );
}

/// A listening socket standing in for a proxy: counts connections and keeps each request line
/// (`CONNECT host:443 HTTP/1.1`), then hangs up.
struct FakeProxy {
    url: String,
    lines: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl FakeProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let lines = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = lines.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&buf[..n]);
                    seen.lock()
                        .push(text.lines().next().unwrap_or("").to_owned());
                });
            }
        });
        Self { url, lines }
    }

    fn requests(&self) -> Vec<String> {
        self.lines.lock().clone()
    }
}

/// The environment variables any HTTP client might take a proxy from.
const PROXY_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
];

/// Runs only inside the process [`the_environment_proxy_is_never_used`] starts: a push to a
/// fake push service on loopback, with every proxy variable pointing at a listening socket.
#[tokio::test]
async fn child_push_with_proxy_variables() {
    if std::env::var_os("PUSHWARDEN_OUTBOUND_CHILD").is_none() {
        return;
    }
    let fake = FakeWebPush::start(None).await.expect("fake web push");
    let providers = local_webpush_providers();
    let target = subscribed(fake.subscribe());
    let outcome = providers.deliver(&target, 0, "{}", None).await;
    println!("CHILD OUTCOME: {outcome:?}");
}

/// Row 5: `HTTPS_PROXY` (and the rest) in the server's environment are ignored: the push goes
/// straight to its endpoint and the proxy receives nothing.
#[tokio::test]
async fn the_environment_proxy_is_never_used() {
    let proxy = FakeProxy::start().await;
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
    child
        .args(["child_push_with_proxy_variables", "--exact", "--nocapture"])
        .env("PUSHWARDEN_OUTBOUND_CHILD", "1")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for variable in PROXY_VARIABLES {
        child.env(variable, &proxy.url);
    }
    let output = tokio::task::spawn_blocking(move || child.output())
        .await
        .expect("join")
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    assert!(
        stdout.contains("CHILD OUTCOME: Delivered"),
        "the push went straight to its endpoint: {stdout}"
    );
    assert_eq!(proxy.requests(), Vec::<String>::new(), "the proxy was used");
}

/// Row 5: with a proxy configured, the SSRF guard still applies. The proxy would resolve the
/// endpoint's name itself, so the name is resolved here first: one that points at loopback is
/// refused before anything reaches the proxy, while a public one goes through it.
#[tokio::test]
async fn a_configured_proxy_is_used_and_the_guard_still_applies() {
    let proxy = FakeProxy::start().await;
    let fake = FakeWebPush::start(None).await.expect("fake web push");
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
    let public: IpAddr = "203.0.114.7".parse().expect("ip");
    let providers = Providers::new(ProvidersConfig {
        webpush: Some(webpush_config()),
        proxy: Some(url::Url::parse(&proxy.url).expect("proxy url")),
        resolve_overrides: HashMap::from([
            ("inside.example.test".to_owned(), vec![loopback]),
            ("mixed.example.test".to_owned(), vec![public, loopback]),
            ("public.example.test".to_owned(), vec![public]),
        ]),
        ..ProvidersConfig::default()
    })
    .expect("providers");
    for name in ["inside.example.test", "mixed.example.test"] {
        let target = device(&fake, &format!("https://{name}/push/x"));
        match providers.deliver(&target, 0, "{}", None).await {
            Outcome::Rejected { reason } => {
                assert!(reason.contains("special-purpose"), "{name}: {reason}")
            }
            other => panic!("{name} must be refused, got {other:?}"),
        }
    }
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "nothing reached the proxy"
    );
    // A public name is handed to the proxy (which hangs up: a retry).
    let target = device(&fake, "https://public.example.test/push/x");
    let outcome = providers.deliver(&target, 0, "{}", None).await;
    assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");
    wait_for(Duration::from_secs(5), "the proxy's CONNECT", || {
        !proxy.requests().is_empty()
    })
    .await;
    assert_eq!(
        proxy.requests(),
        vec!["CONNECT public.example.test:443 HTTP/1.1".to_owned()]
    );
}

/// Row 7: 200 subscriptions on an endpoint that accepts connections and never answers, then
/// one push to a healthy endpoint. The healthy push is delivered at once; the silent origin
/// never has more than its limit of requests in flight; its deliveries stay queued and are
/// tried again later, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_delays_only_its_own_subscriptions() {
    const SILENT: usize = 200;
    const LIMIT: usize = 4;
    // The silent push service: reads whatever comes and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    {
        let (accepted, open, most_open) = (accepted.clone(), open.clone(), most_open.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = silent.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now_open, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    let fake = FakeWebPush::start(None).await.expect("fake web push");
    let store = support::sqlite().await;
    let providers = Providers::new(ProvidersConfig {
        webpush: Some(webpush_config()),
        allow_private_endpoints: true,
        webpush_limits: WebPushLimits {
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            origin_concurrency: LIMIT,
        },
        ..ProvidersConfig::default()
    })
    .expect("providers");
    let options = DeliveryOptions {
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        poll_interval: Duration::from_millis(100),
        ..DeliveryOptions::default()
    };
    let service = PushService::new(store.store.clone(), providers, None, options);
    let register = |device_id: String, user: &str, endpoint: String| {
        let sub = fake.subscribe();
        DeviceRegistration {
            device_id,
            user_id: user.to_owned(),
            identifier: None,
            device_type: 9, // a browser
            channel: PushChannel::WebPush {
                endpoint,
                p256dh: sub.p256dh,
                auth: sub.auth,
            },
            organization_ids: Vec::new(),
            installation_id: None,
            apns_environment: None,
            owner: None,
        }
    };
    for i in 0..SILENT {
        let device = register(
            format!("silent-{i}"),
            "silent-user",
            format!("http://{silent_addr}/push/{i}"),
        );
        service.register(device, None).await.expect("register");
    }
    let healthy = fake.subscribe();
    let mut device = register("healthy".into(), "healthy-user", healthy.endpoint.clone());
    device.channel = PushChannel::WebPush {
        endpoint: healthy.endpoint.clone(),
        p256dh: healthy.p256dh.clone(),
        auth: healthy.auth.clone(),
    };
    service.register(device, None).await.expect("register");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = service.start_worker(stopped).await.expect("worker");
    let to = |user: &str| DeviceTarget {
        target: Target {
            recipient: Recipient::User(user.to_owned()),
            client_type: None,
        },
        exclude_identifier: None,
    };
    let message = PushMessage {
        push_type: PushType::SyncVault,
        payload: "{}".into(),
        context_id: None,
    };
    let queued = service
        .send(to("silent-user"), message.clone())
        .await
        .expect("send");
    assert_eq!(queued, SILENT as u64);
    // A new origin gets one request (a probe) until it answers in time.
    wait_for(Duration::from_secs(5), "the silent request", || {
        accepted.load(Ordering::SeqCst) >= 1
    })
    .await;
    // The silent origin holds its deliveries: now the healthy push.
    let started = Instant::now();
    service
        .send(to("healthy-user"), message)
        .await
        .expect("send");
    wait_for(Duration::from_secs(30), "the healthy push", || {
        fake.received().len() == 1
    })
    .await;
    let latency = started.elapsed();
    // The silent request times out (2 s), the origin backs off, then one probe goes: the
    // deliveries are tried again, and all 200 are still queued.
    wait_for(
        Duration::from_secs(10),
        "a retry to the silent origin",
        || accepted.load(Ordering::SeqCst) >= 2,
    )
    .await;
    let pending = service
        .store()
        .deliveries()
        .pending()
        .await
        .expect("pending");
    eprintln!(
        "silent origin: healthy push in {latency:?}; {} connections to the silent origin, \
         at most {} at once; {pending} pending",
        accepted.load(Ordering::SeqCst),
        most_open.load(Ordering::SeqCst)
    );
    assert!(
        latency < Duration::from_secs(2),
        "healthy push took {latency:?}"
    );
    assert!(
        most_open.load(Ordering::SeqCst) <= LIMIT,
        "{} requests at once to one origin",
        most_open.load(Ordering::SeqCst)
    );
    assert_eq!(
        pending, SILENT as i64,
        "every silent delivery is still queued"
    );
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    store.remove().await;
}

/// The per-origin limit does not slow a healthy push service down: 300 subscriptions on one
/// origin, 4 requests at a time, are all delivered within a few seconds (the ones beyond the
/// limit wait in memory for a slot rather than going back to the queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fan_out_to_one_healthy_origin_runs_at_full_speed() {
    const DEVICES: usize = 300;
    let fake = FakeWebPush::start(None).await.expect("fake web push");
    let store = support::sqlite().await;
    let providers = Providers::new(ProvidersConfig {
        webpush: Some(webpush_config()),
        allow_private_endpoints: true,
        webpush_limits: WebPushLimits {
            origin_concurrency: 4,
            ..WebPushLimits::default()
        },
        ..ProvidersConfig::default()
    })
    .expect("providers");
    let service = PushService::new(
        store.store.clone(),
        providers,
        None,
        DeliveryOptions::default(),
    );
    for i in 0..DEVICES {
        let sub = fake.subscribe();
        let device = DeviceRegistration {
            device_id: format!("browser-{i}"),
            user_id: "org-member".into(),
            identifier: None,
            device_type: 9,
            channel: PushChannel::WebPush {
                endpoint: sub.endpoint,
                p256dh: sub.p256dh,
                auth: sub.auth,
            },
            organization_ids: vec!["org".into()],
            installation_id: None,
            apns_environment: None,
            owner: None,
        };
        service.register(device, None).await.expect("register");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = service.start_worker(stopped).await.expect("worker");
    let started = Instant::now();
    let queued = service
        .send(
            DeviceTarget {
                target: Target {
                    recipient: Recipient::Organization("org".into()),
                    client_type: None,
                },
                exclude_identifier: None,
            },
            PushMessage {
                push_type: PushType::SyncVault,
                payload: "{}".into(),
                context_id: None,
            },
        )
        .await
        .expect("send");
    assert_eq!(queued, DEVICES as u64);
    wait_for(Duration::from_secs(10), "every push", || {
        fake.received().len() == DEVICES
    })
    .await;
    let took = started.elapsed();
    eprintln!("fan-out: {DEVICES} pushes to one origin, 4 at a time, in {took:?}");
    // The first push probes the new origin; the rest follow once it answered.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    store.remove().await;
}
