//! `push`: the push gateway end to end, on one box.
//!
//! The bench hosts a fake FCM (with its OAuth token endpoint) and writes the fake's service
//! account, so that the server started next delivers to it. Then it
//! 1. waits until the server answers `GET /alive`;
//! 2. registers `--devices` Android devices (type 0, distinct FCM tokens) over
//!    `/push/register`, device `i` belonging to user `i mod U`;
//! 3. sends one warm-up push, not measured: the server fetches its OAuth token and opens its
//!    first connections to the provider;
//! 4. makes `--sends` `/push/send` calls, call `s` to user `s mod U`, at `--rate` or as fast as
//!    `--send-concurrency` allows, each payload carrying `bench:<seq>:<unix ns>`;
//! 5. waits (at most `--drain` after the last answer) until every expected delivery arrived.
//!
//! Arrival times come from the fake's live feed of accepted messages. What arrived is decided
//! from the fake's complete record, which cannot lag: every (push, device) pair expected and
//! not seen is reported as missing, every pair seen twice as a duplicate, every message nobody
//! asked for (a failed `/push/send` that was stored anyway, a device of another user) as
//! unexpected.
//!
//! The baseline sends the same deliveries straight from [`FcmClient`] (the client the server
//! uses) to a second fake of the same kind, with the server's concurrency: no HTTP API, no
//! queue, no database. It is the provider path's ceiling on this machine.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig};
use pushwarden_fakes::{Event, Received};
use pushwarden_push::fcm::{bitwarden_data, FcmClient, Outcome, ServiceAccount};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, Semaphore};

use crate::cli::{Cli, Mode, PushArgs};
use crate::stats::{self, ErrorCounts};
use crate::{ids, marker};

/// The warm-up push's sequence number; never one of the measured ones.
pub(crate) const WARMUP_SEQ: u64 = 9_999_999_999;
/// The `identifier` of the (imaginary) device that caused each push, as a vault server sends
/// it: the server excludes that device, which is none of ours.
pub(crate) const SENDER_IDENTIFIER: &str = "bench-sender";
/// `SyncVault`.
pub(crate) const PUSH_TYPE: u8 = 5;
const TOKEN_PREFIX: &str = "bench-fcm-";
/// Real FCM registration tokens are about 160 characters.
const TOKEN_PADDING: &str = "APA91bHPRgkFLJu6dJ6FS7m0BkGlXIJo2nEZ8CLbOj0OHkqJ2HcT9uDh4W3zv8QfLp1rXsYtKe5nM9aVb7cUwR0dTgH3jNiO6lSyZfB2xAqC4kE8mP1oDrW5uI9tG7hJ3vL0nKsYbXzQaFeMcV";

/// FCM token of device `i`.
pub(crate) fn fcm_token(i: usize) -> String {
    format!("{TOKEN_PREFIX}{i:08}:{TOKEN_PADDING}")
}

/// The device an FCM token of [`fcm_token`] belongs to.
pub(crate) fn device_of_token(token: &str) -> Option<usize> {
    token.strip_prefix(TOKEN_PREFIX)?.get(..8)?.parse().ok()
}

/// Device `i`'s id, a GUID like the vault server's.
pub(crate) fn device_id(i: usize) -> String {
    format!("00000000-0000-4000-a000-{i:012x}")
}

/// Who owns which device, and who each push goes to.
#[derive(Clone, Copy, Debug)]
struct Layout {
    devices: usize,
    users: usize,
}

impl Layout {
    fn user_of_device(&self, device: usize) -> usize {
        device % self.users
    }

    fn user_of_send(&self, seq: u64) -> usize {
        (seq % self.users as u64) as usize
    }

    fn devices_of(&self, user: usize) -> impl Iterator<Item = usize> {
        (user..self.devices).step_by(self.users)
    }

    fn count(&self, user: usize) -> u64 {
        (self.devices / self.users + usize::from(user < self.devices % self.users)) as u64
    }
}

/// The payload of push `seq` to `user`, as JSON text.
fn payload(user: usize, seq: u64, nanos: u64) -> Value {
    json!({"userId": ids::user_id(user), "bench": marker::context_id(seq, nanos)})
}

/// The marker in a message the server (or the baseline) sent: `data.payload` holds the payload
/// as JSON text in all three bodies the fakes record (FCM's `message`, the APNs body, the
/// decrypted Web Push body).
pub(crate) fn message_marker(message: &Value) -> Option<(u64, u64)> {
    let text = message.get("data")?.get("payload")?.as_str()?;
    let mut found = None;
    marker::find_all(text.as_bytes(), |m| {
        if found.is_none() {
            found = m;
        }
    });
    found
}

/// `scheme://host:port` of `--url` (a hub URL works too).
pub(crate) fn origin(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
    let scheme = match parsed.scheme() {
        "ws" => "http",
        "wss" => "https",
        other => other,
    };
    let host = parsed.host_str().context("--url has no host")?;
    Ok(match parsed.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Writes `content` to `path` through a temporary file, so nobody reads half of it. The file is
/// readable by its owner only: pushwarden refuses a service account others may read.
pub(crate) fn write_atomically(path: &Path, content: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, content.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

pub(crate) fn per(numerator: f64, denominator: f64) -> Value {
    if denominator > 0.0 && numerator.is_finite() {
        json!(round(numerator / denominator, 3))
    } else {
        Value::Null
    }
}

/// The server's push API.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) key: Option<String>,
}

impl Api {
    /// POSTs a JSON body; the answer's JSON, or why not.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            let text: String = text.chars().take(200).collect();
            return Err(format!("{path}: HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: answer is not JSON ({e})"))
    }

    /// Waits until `GET /alive` answers 200.
    pub(crate) async fn wait_alive(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self
                .http
                .get(format!("{}/alive", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(&answer, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{}/alive did not answer within {limit:?}", self.base);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pendingDeliveries` of `GET /health`.
    pub(crate) async fn pending(&self) -> Option<u64> {
        let answer = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .ok()?;
        let health: Value = answer.json().await.ok()?;
        health.get("pendingDeliveries")?.as_u64()
    }
}

/// What the fake's live feed showed.
struct Feed {
    /// Send → accepted by the fake, per delivery, µs.
    latency: Histogram<u64>,
    /// Per measured push: deliveries seen, when it was sent and when the last one arrived
    /// (unix ns).
    per_seq: Vec<(u32, u64, u64)>,
    last_arrival: u64,
    /// Every measured arrival (unix ns).
    arrivals: Vec<u64>,
    samples: u64,
    lagged: u64,
    unmatched: u64,
    refused: ErrorCounts,
}

impl Feed {
    fn new(sends: u64) -> Self {
        Feed {
            latency: stats::histogram(),
            per_seq: vec![(0, 0, 0); usize::try_from(sends).unwrap_or(0)],
            last_arrival: 0,
            arrivals: Vec::new(),
            samples: 0,
            lagged: 0,
            unmatched: 0,
            refused: ErrorCounts::default(),
        }
    }

    fn arrived(&mut self, seq: u64, sent: u64, now: u64) {
        self.samples += 1;
        self.latency
            .saturating_record(now.saturating_sub(sent).div_ceil(1000).max(1));
        self.last_arrival = self.last_arrival.max(now);
        self.arrivals.push(now);
        if let Some(slot) = usize::try_from(seq)
            .ok()
            .and_then(|s| self.per_seq.get_mut(s))
        {
            slot.0 += 1;
            slot.1 = sent;
            slot.2 = slot.2.max(now);
        }
    }
}

/// Follows the fake's feed until it closes or the task is aborted.
fn follow(mut events: broadcast::Receiver<Event>, feed: Arc<Mutex<Feed>>) {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Accepted(received)) => {
                    let now = marker::unix_nanos();
                    let mut feed = feed.lock();
                    match message_marker(&received.body) {
                        Some((WARMUP_SEQ, _)) => {}
                        Some((seq, sent)) => feed.arrived(seq, sent, now),
                        None => feed.unmatched += 1,
                    }
                }
                Ok(Event::Refused { reason, .. }) => feed.lock().refused.add(&reason),
                Ok(Event::Scripted { status, reason, .. }) => {
                    feed.lock().refused.add(&format!("{status} {reason}"))
                }
                Err(broadcast::error::RecvError::Lagged(n)) => feed.lock().lagged += n,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// What arrived, from the fake's complete record.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// Distinct expected (push, device) pairs that arrived.
    delivered: u64,
    duplicates: u64,
    /// Messages for a push that was not accepted, a device of another user, or unreadable.
    unexpected: u64,
}

/// Counts the record against what was expected: push `seq` was accepted when `accepted[seq]`.
fn tally(received: &[Received], layout: &Layout, accepted: &[bool]) -> Tally {
    let mut seen = HashSet::with_capacity(received.len());
    let mut t = Tally::default();
    for r in received {
        let (Some(device), Some((seq, _))) = (device_of_token(&r.token), message_marker(&r.body))
        else {
            t.unexpected += 1;
            continue;
        };
        if seq == WARMUP_SEQ {
            continue;
        }
        let wanted = usize::try_from(seq)
            .ok()
            .and_then(|s| accepted.get(s))
            .copied()
            .unwrap_or(false)
            && device < layout.devices
            && layout.user_of_device(device) == layout.user_of_send(seq);
        if !wanted {
            t.unexpected += 1;
        } else if seen.insert((seq, device)) {
            t.delivered += 1;
        } else {
            t.duplicates += 1;
        }
    }
    t
}

/// What the `/push/send` calls did.
struct Sent {
    accepted: Vec<bool>,
    ok: u64,
    expected: u64,
    queued: u64,
    latency: Histogram<u64>,
    started_nanos: u64,
    finished_nanos: u64,
    seconds: f64,
    errors: ErrorCounts,
}

async fn send_all(api: &Arc<Api>, args: &PushArgs, layout: Layout) -> Sent {
    let concurrency = args.send_concurrency.clamp(1, 10_000);
    let permits = Arc::new(Semaphore::new(concurrency));
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.sends).map(|_| AtomicU64::new(0)).collect());
    struct Shared {
        latency: Histogram<u64>,
        errors: ErrorCounts,
        ok: u64,
        expected: u64,
        queued: u64,
    }
    let shared = Arc::new(Mutex::new(Shared {
        latency: stats::histogram(),
        errors: ErrorCounts::default(),
        ok: 0,
        expected: 0,
        queued: 0,
    }));
    let started_nanos = marker::unix_nanos();
    let start = tokio::time::Instant::now();
    for seq in 0..args.sends {
        if let Some(rate) = args.rate.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate)).await;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (api, shared, accepted) = (api.clone(), shared.clone(), accepted.clone());
        tokio::spawn(async move {
            let user = layout.user_of_send(seq);
            let nanos = marker::unix_nanos();
            let body = json!({
                "userId": ids::user_id(user),
                "identifier": SENDER_IDENTIFIER,
                "type": PUSH_TYPE,
                "payload": payload(user, seq, nanos),
            });
            let began = Instant::now();
            let answer = api.post("/push/send", &body).await;
            let took = began.elapsed().as_micros() as u64;
            let expected = layout.count(user);
            let mut shared = shared.lock();
            shared.latency.saturating_record(took.max(1));
            match answer {
                Ok(answer) => {
                    accepted[seq as usize].store(1, Relaxed);
                    shared.ok += 1;
                    shared.expected += expected;
                    let queued = answer.get("queued").and_then(Value::as_u64);
                    shared.queued += queued.unwrap_or(0);
                    if queued != Some(expected) {
                        shared.errors.add(&format!(
                            "/push/send queued {queued:?} deliveries, {expected} expected"
                        ));
                    }
                }
                Err(e) => shared.errors.add(&e),
            }
            drop(permit);
        });
    }
    // Every request has given its permit back once it finished.
    let _ = permits.acquire_many(concurrency as u32).await;
    let seconds = start.elapsed().as_secs_f64();
    let finished_nanos = marker::unix_nanos();
    let shared = std::mem::replace(
        &mut *shared.lock(),
        Shared {
            latency: stats::histogram(),
            errors: ErrorCounts::default(),
            ok: 0,
            expected: 0,
            queued: 0,
        },
    );
    Sent {
        accepted: accepted.iter().map(|a| a.load(Relaxed) == 1).collect(),
        ok: shared.ok,
        expected: shared.expected,
        queued: shared.queued,
        latency: shared.latency,
        started_nanos,
        finished_nanos,
        seconds,
        errors: shared.errors,
    }
}

/// Registers every device; bails if any registration fails (nothing would add up).
async fn register_all(api: &Arc<Api>, layout: Layout, concurrency: usize) -> Result<f64> {
    let concurrency = concurrency.clamp(1, 1024);
    let permits = Arc::new(Semaphore::new(concurrency));
    let errors = Arc::new(Mutex::new(ErrorCounts::default()));
    let start = Instant::now();
    for i in 0..layout.devices {
        let permit = permits.clone().acquire_owned().await?;
        let (api, errors) = (api.clone(), errors.clone());
        tokio::spawn(async move {
            let body = json!({
                "deviceId": device_id(i),
                "userId": ids::user_id(layout.user_of_device(i)),
                "identifier": format!("bench-device-{i}"),
                "type": 0,
                "pushToken": fcm_token(i),
            });
            match api.post("/push/register", &body).await {
                Ok(answer) if answer.get("platform").and_then(Value::as_str) == Some("fcm") => {}
                Ok(answer) => errors
                    .lock()
                    .add(&format!("/push/register answered {answer}")),
                Err(e) => errors.lock().add(&e),
            }
            drop(permit);
        });
    }
    let _ = permits.acquire_many(concurrency as u32).await;
    let seconds = start.elapsed().as_secs_f64();
    let errors = errors.lock();
    if errors.total() > 0 {
        bail!(
            "{} of {} registrations failed: {}",
            errors.total(),
            layout.devices,
            errors.to_json()
        );
    }
    Ok(seconds)
}

/// The same deliveries straight from [`FcmClient`] to a fresh fake: the provider ceiling.
async fn baseline(args: &PushArgs, layout: Layout) -> Result<Value> {
    let fake = FakeFcm::start(FakeFcmConfig::default())
        .await
        .context("starting the baseline's fake FCM")?;
    let account = ServiceAccount::from_json(&fake.service_account_json())
        .map_err(|e| anyhow::anyhow!("the fake's service account: {e}"))?;
    let endpoint = url::Url::parse(&fake.url())?;
    let client = Arc::new(
        FcmClient::new(account, Some(endpoint))
            .map_err(|e| anyhow::anyhow!("baseline FCM client: {e}"))?,
    );
    // Warm-up, like the server's: the OAuth token and a first connection.
    let warmup = payload(0, WARMUP_SEQ, marker::unix_nanos()).to_string();
    let data = bitwarden_data(PUSH_TYPE, &warmup, Some(SENDER_IDENTIFIER));
    match client.send(&fcm_token(0), &data).await {
        Outcome::Delivered { .. } => {}
        other => bail!("baseline warm-up delivery: {other:?}"),
    }

    let concurrency = args.baseline_concurrency.clamp(1, 10_000);
    let permits = Arc::new(Semaphore::new(concurrency));
    let delivered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(ErrorCounts::default()));
    let cpu_before = stats::own_cpu_seconds();
    let start = Instant::now();
    let mut total = 0u64;
    for seq in 0..args.sends {
        let user = layout.user_of_send(seq);
        let text: Arc<str> = payload(user, seq, marker::unix_nanos()).to_string().into();
        for device in layout.devices_of(user) {
            let permit = permits.clone().acquire_owned().await?;
            let (client, text) = (client.clone(), text.clone());
            let (delivered, errors) = (delivered.clone(), errors.clone());
            total += 1;
            tokio::spawn(async move {
                // Built per delivery, as the server's worker does.
                let data: Map<String, Value> =
                    bitwarden_data(PUSH_TYPE, &text, Some(SENDER_IDENTIFIER));
                match client.send(&fcm_token(device), &data).await {
                    Outcome::Delivered { .. } => {
                        delivered.fetch_add(1, Relaxed);
                    }
                    other => errors.lock().add(&format!("{other:?}")),
                }
                drop(permit);
            });
        }
    }
    let _ = permits.acquire_many(concurrency as u32).await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = stats::own_cpu_seconds() - cpu_before;
    let delivered = delivered.load(Relaxed);
    // The fake's own count, warm-up included.
    let arrived = fake
        .wait_for(total as usize + 1, Duration::from_secs(5))
        .await
        .len()
        .saturating_sub(1);
    let errors = errors.lock();
    Ok(json!({
        "concurrency": concurrency,
        "deliveries_expected": total,
        "deliveries": delivered,
        "deliveries_at_fake": arrived,
        "failures": total - delivered,
        "seconds": round(seconds, 3),
        "deliveries_per_second": per(delivered as f64, seconds),
        "bench_cpu_seconds": round(cpu, 3),
        "bench_cpu_us_per_delivery": per(cpu * 1e6, delivered as f64),
        "errors": errors.to_json(),
    }))
}

/// Reads the server's pid from `path`, waiting a little for the file to appear.
pub(crate) async fn read_pid_file(path: &Path) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(pid);
        }
        if Instant::now() > deadline {
            eprintln!(
                "push: no pid in {}; server memory and CPU not measured",
                path.display()
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let Mode::Push(args) = &cli.mode else {
        bail!("not the push mode");
    };
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let layout = Layout {
        devices: args.devices,
        users: cli.common.users.unwrap_or(100).clamp(1, args.devices),
    };
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()?,
        base: origin(&cli.common.url)?,
        key: cli.common.send_key.clone(),
    });

    let fake = FakeFcm::start(FakeFcmConfig {
        addr: Some(args.fake_listen),
        ..FakeFcmConfig::default()
    })
    .await
    .with_context(|| format!("starting the fake FCM on {}", args.fake_listen))?;
    write_atomically(&args.service_account, &fake.service_account_json())?;
    eprintln!(
        "push: fake FCM at {} (PUSHWARDEN_FCM_ENDPOINT), service account in {} \
         (PUSHWARDEN_FCM_SERVICE_ACCOUNT); waiting for {}/alive",
        fake.url(),
        args.service_account.display(),
        api.base
    );
    api.wait_alive(cli.common.ready_timeout).await?;
    let server_pid = match (&args.server_pid_file, cli.common.server_pid) {
        (_, Some(pid)) => Some(pid),
        (Some(path), None) => read_pid_file(path).await,
        (None, None) => None,
    };
    let rss_start = server_pid.and_then(stats::rss_kib);

    let register_seconds = register_all(&api, layout, args.register_concurrency).await?;
    eprintln!(
        "push: {} devices of {} users registered in {register_seconds:.2} s",
        layout.devices, layout.users
    );
    let rss_registered = server_pid.and_then(stats::rss_kib);

    let feed = Arc::new(Mutex::new(Feed::new(args.sends)));
    follow(fake.events(), feed.clone());

    // Warm-up: the server's OAuth token and first provider connections; not measured.
    let warmup_started = Instant::now();
    let body = json!({
        "userId": ids::user_id(0),
        "identifier": SENDER_IDENTIFIER,
        "type": PUSH_TYPE,
        "payload": payload(0, WARMUP_SEQ, marker::unix_nanos()),
    });
    let answer = api
        .post("/push/send", &body)
        .await
        .map_err(|e| anyhow::anyhow!("warm-up push: {e}"))?;
    let queued = answer.get("queued").and_then(Value::as_u64).unwrap_or(0);
    if queued != layout.count(0) {
        bail!(
            "warm-up push: the server queued {queued} deliveries for {} devices \
             (is PUSHWARDEN_FCM_SERVICE_ACCOUNT set, and the database fresh?)",
            layout.count(0)
        );
    }
    let got = fake
        .wait_for(queued as usize, Duration::from_secs(30))
        .await
        .len();
    if got < queued as usize {
        bail!(
            "warm-up push: {got} of {queued} deliveries reached the fake in 30 s; refused: {:?}",
            fake.rejections()
        );
    }
    let warmup_seconds = warmup_started.elapsed().as_secs_f64();

    // The measured run.
    let server_cpu_before = server_pid.and_then(stats::cpu_seconds);
    let bench_cpu_before = stats::own_cpu_seconds();
    let sent = send_all(&api, args, layout).await;
    let deadline = Instant::now() + args.drain;
    let mut target = got + sent.expected as usize;
    let (record, tally) = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let record = fake.wait_for(target, remaining).await;
        let t = tally(&record, &layout, &sent.accepted);
        if t.delivered >= sent.expected || Instant::now() >= deadline {
            break (record, t);
        }
        // Duplicates or stray messages made the count: wait for the rest.
        target = record.len() + (sent.expected - t.delivered) as usize;
    };
    let waited_nanos = marker::unix_nanos();
    let server_cpu = match (server_cpu_before, server_pid.and_then(stats::cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let bench_cpu = stats::own_cpu_seconds() - bench_cpu_before;
    // The feed runs a moment behind the record.
    let feed_deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let seen = {
            let f = feed.lock();
            f.samples + f.lagged + f.unmatched
        };
        if seen + got as u64 >= record.len() as u64 || Instant::now() > feed_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(record);
    // The last delivery is settled (removed from the queue) just after the fake answered it.
    let mut pending = api.pending().await;
    let pending_deadline = Instant::now() + Duration::from_secs(5);
    while pending.is_some_and(|p| p > 0) && Instant::now() < pending_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pending = api.pending().await;
    }
    let rss_end = server_pid.and_then(stats::rss_kib);
    let rss_peak = server_pid.and_then(stats::peak_rss_kib);

    let feed = std::mem::replace(&mut *feed.lock(), Feed::new(0));
    let end_nanos = if feed.lagged == 0 && feed.last_arrival > 0 {
        feed.last_arrival
    } else {
        waited_nanos
    };
    let window = end_nanos.saturating_sub(sent.started_nanos) as f64 / 1e9;
    let drain = end_nanos.saturating_sub(sent.finished_nanos) as f64 / 1e9;
    let deliveries_per_second = per(tally.delivered as f64, window);
    // Once the API is quiet, the worker has the database to itself.
    let after_sends = feed
        .arrivals
        .iter()
        .filter(|&&t| t > sent.finished_nanos)
        .count();
    let drain_rate = if drain > 0.1 {
        per(after_sends as f64, drain)
    } else {
        Value::Null
    };
    // Per push: until its last device had it (pushes the feed saw completely).
    let mut push_latency = stats::histogram();
    for (seq, &(count, sent_at, last)) in feed.per_seq.iter().enumerate() {
        let accepted = sent.accepted.get(seq).copied().unwrap_or(false);
        if accepted && u64::from(count) >= layout.count(layout.user_of_send(seq as u64)) {
            push_latency.saturating_record(last.saturating_sub(sent_at).div_ceil(1000).max(1));
        }
    }

    let mut errors = ErrorCounts::default();
    errors.merge_json(&sent.errors.to_json());
    let missing = sent.expected.saturating_sub(tally.delivered);
    if missing > 0 {
        errors.add_n("deliveries missing at the fake", missing);
    }
    if tally.duplicates > 0 {
        errors.add_n("deliveries arrived twice", tally.duplicates);
    }
    if tally.unexpected > 0 {
        errors.add_n("unexpected messages at the fake", tally.unexpected);
    }
    if feed.refused.total() > 0 {
        errors.merge_json(&feed.refused.to_json());
    }
    if pending.is_some_and(|p| p > 0) {
        errors.add("deliveries still pending in the server's queue");
    }

    let mut out = Map::new();
    out.insert("mode".into(), json!("push"));
    out.insert("url".into(), json!(api.base));
    out.insert("fake_url".into(), json!(fake.url()));
    out.insert("devices".into(), json!(layout.devices));
    out.insert("users".into(), json!(layout.users));
    out.insert(
        "devices_per_user".into(),
        json!(layout.devices as f64 / layout.users as f64),
    );
    out.insert("target_rate".into(), json!(args.rate.0));
    out.insert("send_concurrency".into(), json!(args.send_concurrency));
    out.insert("register_seconds".into(), json!(round(register_seconds, 3)));
    out.insert(
        "registrations_per_second".into(),
        per(layout.devices as f64, register_seconds),
    );
    out.insert("warmup_seconds".into(), json!(round(warmup_seconds, 3)));
    out.insert("sent".into(), json!(args.sends));
    out.insert("send_ok".into(), json!(sent.ok));
    out.insert("send_failures".into(), json!(args.sends - sent.ok));
    out.insert("send_seconds".into(), json!(round(sent.seconds, 3)));
    out.insert("achieved_rate".into(), per(args.sends as f64, sent.seconds));
    out.insert("accept_latency_us".into(), stats::summary(&sent.latency));
    out.insert("queued".into(), json!(sent.queued));
    out.insert("deliveries_expected".into(), json!(sent.expected));
    out.insert("deliveries".into(), json!(tally.delivered));
    out.insert("deliveries_missing".into(), json!(missing));
    out.insert("deliveries_duplicate".into(), json!(tally.duplicates));
    out.insert("deliveries_unexpected".into(), json!(tally.unexpected));
    out.insert("delivery_window_seconds".into(), json!(round(window, 3)));
    out.insert("drain_seconds".into(), json!(round(drain, 3)));
    out.insert(
        "deliveries_per_second".into(),
        deliveries_per_second.clone(),
    );
    out.insert("deliveries_after_sends".into(), json!(after_sends));
    out.insert("drain_deliveries_per_second".into(), drain_rate.clone());
    out.insert("delivery_latency_us".into(), stats::summary(&feed.latency));
    out.insert("push_latency_us".into(), stats::summary(&push_latency));
    out.insert("latency_samples".into(), json!(feed.samples));
    out.insert("feed_lagged".into(), json!(feed.lagged));
    out.insert("server_pending_after".into(), json!(pending));
    if let Some(cpu) = server_cpu {
        out.insert("server_cpu_seconds".into(), json!(round(cpu, 3)));
        out.insert(
            "server_cpu_us_per_delivery".into(),
            per(cpu * 1e6, tally.delivered as f64),
        );
    }
    out.insert("bench_cpu_seconds".into(), json!(round(bench_cpu, 3)));
    out.insert("server_rss_start_kib".into(), json!(rss_start));
    out.insert("server_rss_registered_kib".into(), json!(rss_registered));
    out.insert("server_rss_end_kib".into(), json!(rss_end));
    out.insert("server_rss_peak_kib".into(), json!(rss_peak));

    let mut human = vec![
        format!(
            "{} devices, {} users: registered in {register_seconds:.2} s ({} /s)",
            layout.devices, layout.users, out["registrations_per_second"]
        ),
        format!(
            "/push/send: {} of {} accepted in {:.2} s ({} /s); accept {}",
            sent.ok,
            args.sends,
            sent.seconds,
            out["achieved_rate"],
            stats::human(&sent.latency)
        ),
        format!(
            "deliveries: {} of {} arrived ({missing} missing, {} duplicate, {} unexpected), \
             {} /s; {after_sends} arrived after the last send, in {drain:.2} s ({} /s)",
            tally.delivered,
            sent.expected,
            tally.duplicates,
            tally.unexpected,
            deliveries_per_second,
            drain_rate
        ),
        format!(
            "send -> fake, per delivery: {}",
            stats::human(&feed.latency)
        ),
        format!(
            "send -> fake, per push (its last device): {}",
            stats::human(&push_latency)
        ),
    ];
    if let (Some(a), Some(b), Some(p)) = (rss_start, rss_end, rss_peak) {
        human.push(format!("server RSS {a} -> {b} KiB (peak {p} KiB)"));
    }

    drop(fake);
    if !args.no_baseline {
        let base =
            tokio::time::timeout(args.drain + Duration::from_secs(60), baseline(args, layout))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the baseline took too long")));
        match base {
            Ok(b) => {
                let ratio = match (
                    deliveries_per_second.as_f64(),
                    b["deliveries_per_second"].as_f64(),
                ) {
                    (Some(ours), Some(theirs)) if theirs > 0.0 => json!(round(ours / theirs, 4)),
                    _ => Value::Null,
                };
                if let Some(e) = b.get("errors") {
                    errors.merge_json(e);
                }
                human.push(format!(
                    "baseline (FcmClient -> fake, {} in flight): {} deliveries/s; ratio {ratio}",
                    b["concurrency"], b["deliveries_per_second"]
                ));
                out.insert("baseline".into(), b);
                out.insert("ratio_to_baseline".into(), ratio);
            }
            Err(e) => {
                errors.add(&format!("baseline: {e:#}"));
                out.insert("baseline".into(), Value::Null);
                out.insert("ratio_to_baseline".into(), Value::Null);
            }
        }
    }

    out.insert("error_count".into(), json!(errors.total()));
    out.insert("errors".into(), errors.to_json());
    eprintln!("push {}: {} errors", api.base, errors.total());
    for line in human {
        eprintln!("  {line}");
    }
    if missing > 0 {
        eprintln!("  MISSING: {missing} deliveries never reached the fake");
    }
    println!("{}", Value::Object(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn message(device: usize, seq: u64) -> Received {
        let user = device % 3;
        let text = payload(user, seq, 123).to_string();
        Received {
            token: fcm_token(device),
            body: json!({
                "token": fcm_token(device),
                "data": bitwarden_data(PUSH_TYPE, &text, Some(SENDER_IDENTIFIER)),
            }),
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn layout_spreads_devices_over_users() {
        let layout = Layout {
            devices: 10,
            users: 3,
        };
        assert_eq!(layout.count(0), 4);
        assert_eq!(layout.count(1), 3);
        assert_eq!(layout.count(2), 3);
        assert_eq!(layout.devices_of(1).collect::<Vec<_>>(), vec![1, 4, 7]);
        let total: u64 = (0..3).map(|u| layout.count(u)).sum();
        assert_eq!(total, 10);
        for u in 0..3 {
            assert!(layout.devices_of(u).all(|d| layout.user_of_device(d) == u));
            assert_eq!(layout.devices_of(u).count() as u64, layout.count(u));
        }
        assert_eq!(layout.user_of_send(5), 2);
    }

    #[test]
    fn tokens_and_markers_round_trip() {
        assert_eq!(device_of_token(&fcm_token(1234)), Some(1234));
        assert!(fcm_token(0).len() > 150);
        assert_eq!(device_of_token("someone-else"), None);
        let m = message(4, 17);
        assert_eq!(message_marker(&m.body), Some((17, 123)));
        assert_eq!(message_marker(&json!({"data": {"payload": "{}"}})), None);
        assert_eq!(
            origin("http://127.0.0.1:5555/hub").unwrap(),
            "http://127.0.0.1:5555"
        );
        assert_eq!(origin("ws://example.com/x").unwrap(), "http://example.com");
    }

    #[test]
    fn tally_counts_every_kind_of_surprise() {
        let layout = Layout {
            devices: 6,
            users: 3,
        };
        // Push 0 goes to user 0 (devices 0 and 3), push 1 to user 1 (1 and 4); push 2 failed.
        let accepted = [true, true, false];
        let record = vec![
            message(0, 0),
            message(3, 0),
            message(3, 0),          // twice
            message(1, 1),          // device 4 never got push 1
            message(2, 0),          // device 2 is user 2's
            message(2, 2),          // push 2 was not accepted
            message(0, WARMUP_SEQ), // ignored
            Received {
                token: "stranger".into(),
                body: json!({}),
                headers: BTreeMap::new(),
            },
        ];
        assert_eq!(
            tally(&record, &layout, &accepted),
            Tally {
                delivered: 3,
                duplicates: 1,
                unexpected: 3,
            }
        );
    }
}
