//! `push-org`: organization-wide pushes through the relay, and fairness between installations.
//!
//! The bench hosts a fake FCM (with its OAuth token endpoint), a fake APNs and a fake Web Push
//! service, and writes into `--dir` what the server started next needs: the FCM service
//! account, the APNs `.p8` key, a VAPID key, and last `server.env`, the server's variables
//! (`PUSHWARDEN_FCM_*`, `PUSHWARDEN_APNS_*`, `PUSHWARDEN_VAPID_*`,
//! `PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS`). Two relay installations, A and B, were created
//! beforehand with `pushwarden installation create` on the server's database; the bench reads
//! their ids and keys from what that command printed. Then it
//! 1. waits until the server answers `GET /alive` and trades each installation's key for a
//!    token at `POST /connect/token`;
//! 2. registers `--b-devices` devices of B over the relay (each its own user, the platforms in
//!    turn), and `--org-devices` devices of A in one organization: device `i` is Android (FCM)
//!    when `i mod 10` is 0–4, iOS (APNs) for 5–7 and Web Push for 8–9, with a subscription the
//!    fake made (real P-256 keys, restricted to the server's VAPID key), two devices per user.
//!    `--org-register relay` registers them with A's token; `local` with the `/send` key and
//!    the ids already carrying A's prefix, which stores the same rows without an owner and so
//!    skips the relay's count of the installation's devices on every registration (see
//!    [`OrgRegister`]);
//! 3. warms up with one push of B to each of its devices (the providers' tokens, first
//!    connections), not measured;
//! 4. idle phase: B pushes to one device at a time, `--b-rate` per second, for `--idle`;
//! 5. load phase: A sends `--org-pushes` organization pushes, each answered before the next,
//!    while B keeps pushing at the same rate, until the last of A's deliveries arrived (at most
//!    `--drain` after the last answer);
//! 6. checks the fakes' complete records: each expected (push, device) pair exactly once.
//!
//! Every payload carries `bench:<seq>:<unix ns>` (org push `p` has seq `p`, B's push `j` seq
//! `B_SEQ_BASE + j`); send → provider is that timestamp → the fake accepted the message, from
//! the fakes' live feeds. The load phase ends at the last of A's deliveries the feeds saw; a feed
//! that fell behind (`feed_lagged`) may have dropped some, and then the end is when the fakes'
//! complete records hold them all (`last_delivery_exact: false`). What arrived is decided from
//! those records alone: every expected (push, device) pair not there is missing, every pair seen
//! twice a duplicate, every other message (a push to another installation's device, a push that
//! was not accepted) unexpected.
//!
//! The JSON has the idle and load phases (B's accept and send → provider latencies, the ratio of
//! B's p99 under load to idle), each org push's accept time, send → provider of its deliveries
//! and its last delivery, each provider's last delivery, the deliveries by provider, the server's CPU per phase and resident memory (start, after registering, at the
//! end of the load, end, peak `VmHWM`), the baseline, and `targets`: org push accept p99 under
//! 1 s, B's p99 within 3× idle, nothing lost.
//!
//! The baseline sends one organization push's worth of deliveries (the same devices, the same
//! bodies) straight from the provider clients the server uses (`FcmClient`, `ApnsClient`,
//! `webpush::build_request` + `webpush::send`) to fresh fakes of the same kinds,
//! `--baseline-concurrency` in flight per provider, all three at once: no HTTP API, no queue, no
//! database. Its time to the last delivery is set against the server's for the first org push.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use pushwarden_fakes::apns::{FakeApns, FakeApnsConfig};
use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig};
use pushwarden_fakes::webpush::{FakeWebPush, Subscription};
use pushwarden_fakes::{Event, Received};
use pushwarden_push::apns::{self, ApnsClient, ApnsConfig, Environment, SendOptions};
use pushwarden_push::fcm::{self, FcmClient, ServiceAccount};
use pushwarden_push::providers::web_push_body;
use pushwarden_push::webpush::{self, Urgency, VapidKey};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;

use crate::cli::{Cli, Mode, OrgRegister, PushOrgArgs};
use crate::push::{
    device_id, device_of_token, fcm_token, message_marker, origin, per, read_pid_file, round,
    write_atomically, Api, PUSH_TYPE, SENDER_IDENTIFIER, WARMUP_SEQ,
};
use crate::stats::{self, ErrorCounts};
use crate::{ids, marker};

/// B's push `j` carries seq `B_SEQ_BASE + j`; org pushes are numbered from 0, far below.
const B_SEQ_BASE: u64 = 1_000_000;
/// Hex, so that with the device index in hex the token is APNs' 64 hex digits.
const APNS_TOKEN_PREFIX: &str = "be11c0de";
const APNS_KEY_ID: &str = "BENCHKEY01";
const APNS_TEAM_ID: &str = "BENCHTEAM1";
const APNS_TOPIC: &str = "com.8bit.bitwarden";
const VAPID_SUBJECT: &str = "mailto:bench@example.com";
/// The Web Push TTL the server sends by default (`PUSHWARDEN_WEBPUSH_TTL`), for the baseline.
const WEBPUSH_TTL_SECS: u32 = 24 * 3600;
/// Bitwarden's DeviceType for Android, iOS and a Chrome browser.
const TYPE_ANDROID: u8 = 0;
const TYPE_IOS: u8 = 1;
const TYPE_BROWSER: u8 = 9;
/// How long the end-of-run checks (warm-up, B's last deliveries, the queue emptying) wait.
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Fcm,
    Apns,
    WebPush,
}

impl Provider {
    const ALL: [Provider; 3] = [Provider::Fcm, Provider::Apns, Provider::WebPush];

    fn name(self) -> &'static str {
        match self {
            Provider::Fcm => "fcm",
            Provider::Apns => "apns",
            Provider::WebPush => "webpush",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The platform of A's device `i`: half Android, 30 % iOS, 20 % browsers, interleaved so every
/// stretch of the organization is mixed.
fn org_platform(i: usize) -> Provider {
    match i % 10 {
        0..=4 => Provider::Fcm,
        5..=7 => Provider::Apns,
        _ => Provider::WebPush,
    }
}

fn apns_token(i: usize) -> String {
    format!("{APNS_TOKEN_PREFIX}{i:056x}")
}

fn device_of_apns_token(token: &str) -> Option<usize> {
    let hex = token.strip_prefix(APNS_TOKEN_PREFIX)?;
    if hex.len() != 56 {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

/// Which devices exist: A's are `0..org`, B's `org..org + b`, and the Web Push ones have a
/// subscription at a fake.
struct Devices {
    org: usize,
    b: usize,
    subscriptions: HashMap<usize, Subscription>,
    by_subscription: HashMap<String, usize>,
}

impl Devices {
    fn new(org: usize, b: usize) -> Self {
        Devices {
            org,
            b,
            subscriptions: HashMap::new(),
            by_subscription: HashMap::new(),
        }
    }

    /// Subscribes every Web Push device at `fake`, restricted to the server's VAPID key as
    /// `pushManager.subscribe({applicationServerKey})` would.
    fn subscribe(&mut self, fake: &FakeWebPush, vapid_public: &str) -> Result<()> {
        for i in 0..self.org + self.b {
            if self.platform(i) == Provider::WebPush {
                let sub = fake.subscribe_with_key(vapid_public)?;
                self.by_subscription.insert(sub.id().to_owned(), i);
                self.subscriptions.insert(i, sub);
            }
        }
        Ok(())
    }

    fn platform(&self, i: usize) -> Provider {
        if i < self.org {
            org_platform(i)
        } else {
            Provider::ALL[(i - self.org) % 3]
        }
    }

    /// B's device that push `j` goes to (B's user `k` owns device `org + k` alone).
    fn b_device(&self, j: u64) -> usize {
        self.org + (j % self.b as u64) as usize
    }

    /// The device a message at `provider` was for.
    fn device_of(&self, provider: Provider, token: &str) -> Option<usize> {
        match provider {
            Provider::Fcm => device_of_token(token),
            Provider::Apns => device_of_apns_token(token),
            Provider::WebPush => self.by_subscription.get(token).copied(),
        }
    }

    fn org_count(&self, provider: Provider) -> u64 {
        (0..self.org)
            .filter(|&i| org_platform(i) == provider)
            .count() as u64
    }

    /// The `/push/register` body of device `i`; with `prefix`, its ids carry it already (and
    /// `installationId` names the installation), as the relay would have stored them.
    fn registration(&self, i: usize, installation: Option<&str>) -> Value {
        let prefixed = |id: String| match installation {
            Some(inst) => format!("{inst}_{id}"),
            None => id,
        };
        let (device, user, identifier, orgs) = if i < self.org {
            (
                device_id(i),
                ids::user_id(i / 2),
                format!("bench-org-device-{i}"),
                vec![prefixed(ids::org_id(0))],
            )
        } else {
            // B's ids may equal A's: the relay keeps installations apart by their prefixes.
            let k = i - self.org;
            (
                device_id(k),
                ids::user_id(k),
                format!("bench-b-device-{k}"),
                Vec::new(),
            )
        };
        let mut body = json!({
            "deviceId": prefixed(device),
            "userId": prefixed(user),
            "identifier": prefixed(identifier),
            "organizationIds": orgs,
        });
        if let Some(inst) = installation {
            body["installationId"] = json!(inst);
        }
        match self.platform(i) {
            Provider::Fcm => {
                body["type"] = json!(TYPE_ANDROID);
                body["pushToken"] = json!(fcm_token(i));
            }
            Provider::Apns => {
                body["type"] = json!(TYPE_IOS);
                body["pushToken"] = json!(apns_token(i));
            }
            Provider::WebPush => {
                body["type"] = json!(TYPE_BROWSER);
                if let Some(sub) = self.subscriptions.get(&i) {
                    body["webPush"] =
                        json!({"endpoint": sub.endpoint, "p256dh": sub.p256dh, "auth": sub.auth});
                }
            }
        }
        body
    }
}

/// An installation as `pushwarden installation create` printed it.
fn read_installation(path: &Path) -> Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match (field("id:"), field("key:")) {
        (Some(id), Some(key)) => Ok((id, key)),
        _ => bail!(
            "{} has no `id:` and `key:` lines (the output of `pushwarden installation create`)",
            path.display()
        ),
    }
}

/// Trades an installation's key for a token, as a vault server does.
async fn installation_token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    key: &str,
) -> Result<String> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", "api.push")
        .append_pair("client_id", &format!("installation.{id}"))
        .append_pair("client_secret", key)
        .finish();
    let response = http
        .post(format!("{base}/connect/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .context("/connect/token")?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    match answer.get("access_token").and_then(Value::as_str) {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => bail!("/connect/token for installation {id}: HTTP {status}: {answer}"),
    }
}

/// How a registration run went.
struct Registered {
    seconds: f64,
    /// Registrations per second in each tenth of the run, to show a rate that decays as the
    /// installation grows.
    rate_by_tenth: Vec<f64>,
}

/// Registers `devices` with `api`; bails if any registration fails (nothing would add up).
async fn register(
    api: &Arc<Api>,
    devices: &Arc<Devices>,
    range: std::ops::Range<usize>,
    installation: Option<String>,
    concurrency: usize,
    label: &str,
) -> Result<Registered> {
    let total = range.len();
    let concurrency = concurrency.clamp(1, 1024);
    let permits = Arc::new(Semaphore::new(concurrency));
    let errors = Arc::new(Mutex::new(ErrorCounts::default()));
    let done = Arc::new(AtomicU64::new(0));
    let tenths = Arc::new(Mutex::new(Vec::new()));
    let tenth = (total / 10).max(1) as u64;
    let start = Instant::now();
    let progress = {
        let (done, label) = (done.clone(), label.to_owned());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let now = done.load(Relaxed);
                eprintln!(
                    "push-org: {label}: {now} of {total} registered, {:.0} /s in the last 10 s",
                    (now - last) as f64 / 10.0
                );
                last = now;
            }
        })
    };
    for i in range {
        let permit = permits.clone().acquire_owned().await?;
        let (api, devices, errors) = (api.clone(), devices.clone(), errors.clone());
        let (done, tenths, installation) = (done.clone(), tenths.clone(), installation.clone());
        tokio::spawn(async move {
            let body = devices.registration(i, installation.as_deref());
            let wanted = devices.platform(i).name();
            match api.post("/push/register", &body).await {
                Ok(answer) if answer.get("platform").and_then(Value::as_str) == Some(wanted) => {}
                Ok(answer) => errors
                    .lock()
                    .add(&format!("/push/register answered {answer}")),
                Err(e) => errors.lock().add(&e),
            }
            let n = done.fetch_add(1, Relaxed) + 1;
            if n % tenth == 0 {
                tenths.lock().push(start.elapsed().as_secs_f64());
            }
            drop(permit);
        });
    }
    let _ = permits.acquire_many(concurrency as u32).await;
    progress.abort();
    let seconds = start.elapsed().as_secs_f64();
    let errors = errors.lock();
    if errors.total() > 0 {
        bail!(
            "{label}: {} of {total} registrations failed: {}",
            errors.total(),
            errors.to_json()
        );
    }
    let mut marks = tenths.lock().clone();
    marks.sort_by(f64::total_cmp);
    let mut rate_by_tenth = Vec::new();
    let mut previous = 0.0;
    for t in marks.into_iter().take(10) {
        rate_by_tenth.push(round(tenth as f64 / (t - previous).max(1e-6), 1));
        previous = t;
    }
    Ok(Registered {
        seconds,
        rate_by_tenth,
    })
}

/// What the fakes' live feeds showed.
struct Feed {
    /// Per org push: deliveries seen, the last one's arrival (unix ns), and send → provider
    /// of each delivery (whether a push's deliveries come out together or spread over the run).
    per_push: Vec<(u64, u64, Histogram<u64>)>,
    /// A's deliveries seen, and the last one's arrival, by provider: one slow provider holds
    /// up the last delivery of every push.
    a_by_provider: [u64; 3],
    a_last_by_provider: [u64; 3],
    a_seen: u64,
    a_last: u64,
    /// B's deliveries: (j, sent, arrived), unix ns.
    b: Vec<(u64, u64, u64)>,
    warmups: u64,
    lagged: u64,
    unmatched: u64,
    refused: ErrorCounts,
}

impl Feed {
    fn new(pushes: u64) -> Self {
        Feed {
            per_push: (0..pushes).map(|_| (0, 0, stats::histogram())).collect(),
            a_by_provider: [0; 3],
            a_last_by_provider: [0; 3],
            a_seen: 0,
            a_last: 0,
            b: Vec::new(),
            warmups: 0,
            lagged: 0,
            unmatched: 0,
            refused: ErrorCounts::default(),
        }
    }

    fn accepted(&mut self, provider: Provider, body: &Value, now: u64) {
        match message_marker(body) {
            Some((WARMUP_SEQ, _)) => self.warmups += 1,
            Some((seq, sent)) if seq >= B_SEQ_BASE => self.b.push((seq - B_SEQ_BASE, sent, now)),
            Some((seq, sent)) => match usize::try_from(seq)
                .ok()
                .and_then(|s| self.per_push.get_mut(s))
            {
                Some(slot) => {
                    slot.0 += 1;
                    slot.1 = slot.1.max(now);
                    slot.2
                        .saturating_record(now.saturating_sub(sent).div_ceil(1000).max(1));
                    self.a_by_provider[provider.index()] += 1;
                    let last = &mut self.a_last_by_provider[provider.index()];
                    *last = (*last).max(now);
                    self.a_seen += 1;
                    self.a_last = self.a_last.max(now);
                }
                None => self.unmatched += 1,
            },
            None => self.unmatched += 1,
        }
    }
}

/// Follows one fake's feed until it closes or the task is aborted.
fn follow(
    provider: Provider,
    mut events: broadcast::Receiver<Event>,
    feed: Arc<Mutex<Feed>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Accepted(received)) => {
                    let now = marker::unix_nanos();
                    feed.lock().accepted(provider, &received.body, now);
                }
                Ok(Event::Refused { reason, .. }) => feed
                    .lock()
                    .refused
                    .add(&format!("{}: {reason}", provider.name())),
                Ok(Event::Scripted { status, reason, .. }) => feed
                    .lock()
                    .refused
                    .add(&format!("{}: {status} {reason}", provider.name())),
                Err(broadcast::error::RecvError::Lagged(n)) => feed.lock().lagged += n,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// The payload of a push, as JSON: `key` names the user or organization it is about.
fn payload(key: &str, id: &str, seq: u64, nanos: u64) -> Value {
    let mut payload = Map::new();
    payload.insert(key.into(), json!(id));
    payload.insert("bench".into(), json!(marker::context_id(seq, nanos)));
    Value::Object(payload)
}

/// One of B's pushes.
#[derive(Clone, Copy, Default)]
struct BSend {
    sent: u64,
    accept_us: u64,
    accepted: bool,
}

/// B's pushes so far, indexed by `j`.
#[derive(Default)]
struct BLog {
    sends: Vec<BSend>,
    errors: ErrorCounts,
}

/// Sends B's single-device pushes at `rate` until `stop`; returns the requests still to be
/// awaited.
async fn b_sender(
    api: Arc<Api>,
    devices: Arc<Devices>,
    rate: f64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<BLog>>,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    let start = tokio::time::Instant::now();
    for j in 0u64.. {
        tokio::time::sleep_until(start + Duration::from_secs_f64(j as f64 / rate)).await;
        if stop.load(Relaxed) {
            break;
        }
        let k = devices.b_device(j) - devices.org;
        let user = ids::user_id(k);
        let nanos = marker::unix_nanos();
        log.lock().sends.push(BSend {
            sent: nanos,
            ..BSend::default()
        });
        let body = json!({
            "userId": user,
            "identifier": SENDER_IDENTIFIER,
            "type": PUSH_TYPE,
            "payload": payload("userId", &user, B_SEQ_BASE + j, nanos),
        });
        let (api, log) = (api.clone(), log.clone());
        handles.push(tokio::spawn(async move {
            let began = Instant::now();
            let answer = api.post("/push/send", &body).await;
            let took = (began.elapsed().as_micros() as u64).max(1);
            let mut log = log.lock();
            let queued = answer
                .as_ref()
                .ok()
                .and_then(|a| a.get("queued"))
                .and_then(Value::as_u64);
            match (answer, queued) {
                (Ok(_), Some(1)) => {
                    if let Some(s) = log.sends.get_mut(j as usize) {
                        s.accept_us = took;
                        s.accepted = true;
                    }
                }
                (Ok(a), _) => log
                    .errors
                    .add(&format!("B's /push/send answered {a}, 1 queued expected")),
                (Err(e), _) => log.errors.add(&format!("B: {e}")),
            }
        }));
    }
    handles
}

/// B's pushes sent in `[from, to)` (unix ns): accept and send → provider latency.
struct BPhase {
    sent: u64,
    accepted: u64,
    accept: Histogram<u64>,
    delivery: Histogram<u64>,
    delivered: u64,
}

fn b_phase(log: &BLog, arrivals: &[(u64, u64, u64)], from: u64, to: u64) -> BPhase {
    let mut phase = BPhase {
        sent: 0,
        accepted: 0,
        accept: stats::histogram(),
        delivery: stats::histogram(),
        delivered: 0,
    };
    let within = |sent: u64| sent >= from && sent < to;
    for s in log.sends.iter().filter(|s| within(s.sent)) {
        phase.sent += 1;
        if s.accepted {
            phase.accepted += 1;
            phase.accept.saturating_record(s.accept_us);
        }
    }
    for &(_, sent, arrived) in arrivals.iter().filter(|a| within(a.1)) {
        phase.delivered += 1;
        phase
            .delivery
            .saturating_record(arrived.saturating_sub(sent).div_ceil(1000).max(1));
    }
    phase
}

fn b_phase_json(p: &BPhase, seconds: f64) -> Value {
    json!({
        "seconds": round(seconds, 3),
        "b_sent": p.sent,
        "b_accepted": p.accepted,
        "b_delivered_seen": p.delivered,
        "b_accept_latency_us": stats::summary(&p.accept),
        "b_delivery_latency_us": stats::summary(&p.delivery),
    })
}

/// What the fakes' records held, against what was expected.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    expected: [u64; 3],
    delivered: [u64; 3],
    duplicates: [u64; 3],
    unexpected: [u64; 3],
}

impl Tally {
    fn sum(a: &[u64; 3]) -> u64 {
        a.iter().sum()
    }

    fn missing(&self) -> u64 {
        Self::sum(&self.expected).saturating_sub(Self::sum(&self.delivered))
    }

    fn json(&self) -> Value {
        let mut by = Map::new();
        for p in Provider::ALL {
            let i = p.index();
            by.insert(
                p.name().into(),
                json!({
                    "expected": self.expected[i],
                    "delivered": self.delivered[i],
                    "missing": self.expected[i].saturating_sub(self.delivered[i]),
                    "duplicate": self.duplicates[i],
                    "unexpected": self.unexpected[i],
                }),
            );
        }
        json!({
            "expected": Self::sum(&self.expected),
            "delivered": Self::sum(&self.delivered),
            "missing": self.missing(),
            "duplicate": Self::sum(&self.duplicates),
            "unexpected": Self::sum(&self.unexpected),
            "by_provider": by,
        })
    }
}

/// Which pushes were accepted: org push `p` when `org[p]`, B's push `j` when `b[j]`.
struct Expected {
    org: Vec<bool>,
    b: Vec<bool>,
}

/// Counts every (push, device) pair in the fakes' records, one fake at a time (a record of
/// hundreds of thousands of messages is copied out of the fake to be read); warm-ups are left
/// out.
struct Counter<'a> {
    devices: &'a Devices,
    expected: &'a Expected,
    /// Times each (org push, device) pair arrived, at `p * org + device`.
    org_seen: Vec<u8>,
    b_seen: Vec<u8>,
    tally: Tally,
}

impl<'a> Counter<'a> {
    fn new(devices: &'a Devices, expected: &'a Expected) -> Self {
        let mut tally = Tally::default();
        let accepted = expected.org.iter().filter(|&&a| a).count() as u64;
        for p in Provider::ALL {
            tally.expected[p.index()] += accepted * devices.org_count(p);
        }
        for (j, _) in expected.b.iter().enumerate().filter(|(_, &a)| a) {
            let device = devices.b_device(j as u64);
            tally.expected[devices.platform(device).index()] += 1;
        }
        Counter {
            devices,
            expected,
            org_seen: vec![0; expected.org.len() * devices.org],
            b_seen: vec![0; expected.b.len()],
            tally,
        }
    }

    fn add(&mut self, provider: Provider, received: &[Received]) {
        let (devices, expected, n) = (self.devices, self.expected, self.devices.org);
        let t = &mut self.tally;
        let i = provider.index();
        for r in received {
            let (Some(device), Some((seq, _))) = (
                devices.device_of(provider, &r.token),
                message_marker(&r.body),
            ) else {
                t.unexpected[i] += 1;
                continue;
            };
            if seq == WARMUP_SEQ {
                continue;
            }
            let slot = if seq >= B_SEQ_BASE {
                let j = seq - B_SEQ_BASE;
                usize::try_from(j)
                    .ok()
                    .filter(|&j| expected.b.get(j).copied().unwrap_or(false))
                    .filter(|_| devices.b_device(j) == device)
                    .and_then(|j| self.b_seen.get_mut(j))
            } else {
                usize::try_from(seq)
                    .ok()
                    .filter(|&p| expected.org.get(p).copied().unwrap_or(false))
                    .filter(|_| device < n)
                    .and_then(|p| self.org_seen.get_mut(p * n + device))
            };
            match slot {
                None => t.unexpected[i] += 1,
                Some(count) if *count == 0 => {
                    *count = 1;
                    t.delivered[i] += 1;
                }
                Some(_) => t.duplicates[i] += 1,
            }
        }
    }
}

/// The [`Counter`] over all three fakes.
fn tally(fakes: &Fakes, devices: &Devices, expected: &Expected) -> Tally {
    let mut counter = Counter::new(devices, expected);
    counter.add(Provider::Fcm, &fakes.fcm.received());
    counter.add(Provider::Apns, &fakes.apns.received());
    counter.add(Provider::WebPush, &fakes.web.received());
    counter.tally
}

/// The three fakes the server delivers to.
struct Fakes {
    fcm: FakeFcm,
    apns: FakeApns,
    web: FakeWebPush,
}

impl Fakes {
    fn requests(&self) -> usize {
        self.fcm.requests() + self.apns.requests() + self.web.requests()
    }
}

/// Starts the fakes and writes the server's files and variables into `dir`; `server.env` last,
/// so a script that waits for it finds everything else in place.
async fn start_fakes(args: &PushOrgArgs) -> Result<(Fakes, VapidKey)> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fcm = FakeFcm::start(FakeFcmConfig {
        addr: Some(args.fcm_listen),
        ..FakeFcmConfig::default()
    })
    .await
    .with_context(|| format!("starting the fake FCM on {}", args.fcm_listen))?;
    let (mut apns_config, p8) = FakeApnsConfig::with_new_key(APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC);
    apns_config.addr = Some(args.apns_listen);
    let apns = FakeApns::start(apns_config)
        .await
        .with_context(|| format!("starting the fake APNs on {}", args.apns_listen))?;
    let web = FakeWebPush::start(Some(args.webpush_listen))
        .await
        .with_context(|| format!("starting the fake Web Push on {}", args.webpush_listen))?;
    let vapid = VapidKey::generate();
    let vapid_pem = vapid
        .to_pem()
        .map_err(|e| anyhow::anyhow!("the VAPID key: {e}"))?;

    let account = dir.join("fcm-service-account.json");
    let p8_path = dir.join("AuthKey.p8");
    let vapid_path = dir.join("vapid.pem");
    write_atomically(&account, &fcm.service_account_json())?;
    write_atomically(&p8_path, &p8)?;
    write_atomically(&vapid_path, &vapid_pem)?;
    let env = [
        (
            "PUSHWARDEN_FCM_SERVICE_ACCOUNT",
            account.display().to_string(),
        ),
        ("PUSHWARDEN_FCM_ENDPOINT", fcm.url()),
        ("PUSHWARDEN_APNS_KEY_FILE", p8_path.display().to_string()),
        ("PUSHWARDEN_APNS_KEY_ID", APNS_KEY_ID.to_owned()),
        ("PUSHWARDEN_APNS_TEAM_ID", APNS_TEAM_ID.to_owned()),
        ("PUSHWARDEN_APNS_TOPIC", APNS_TOPIC.to_owned()),
        ("PUSHWARDEN_APNS_ENDPOINT", apns.url()),
        (
            "PUSHWARDEN_VAPID_PRIVATE_KEY",
            vapid_path.display().to_string(),
        ),
        ("PUSHWARDEN_VAPID_SUBJECT", VAPID_SUBJECT.to_owned()),
        // The fake Web Push service is on loopback, plain http.
        ("PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS", "true".to_owned()),
    ];
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_atomically(&dir.join("server.env"), &text)?;
    Ok((Fakes { fcm, apns, web }, vapid))
}

/// Waits until the feeds saw `n` warm-up deliveries.
async fn wait_warmups(feed: &Mutex<Feed>, n: u64, fakes: &Fakes) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    while feed.lock().warmups < n {
        if Instant::now() > deadline {
            bail!(
                "warm-up: {} of {n} deliveries reached the fakes in {SETTLE:?}; refused: FCM {:?}, \
                 APNs {:?}, Web Push {:?}",
                feed.lock().warmups,
                fakes.fcm.rejections(),
                fakes.apns.rejections(),
                fakes.web.rejections()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn cpu_since(pid: Option<u32>, before: Option<f64>) -> Option<f64> {
    match (before, pid.and_then(stats::cpu_seconds)) {
        (Some(a), Some(b)) => Some(round(b - a, 3)),
        _ => None,
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let Mode::PushOrg(args) = &cli.mode else {
        bail!("not the push-org mode");
    };
    if args.org_devices == 0 || args.b_devices == 0 || args.org_pushes == 0 {
        bail!("--org-devices, --b-devices and --org-pushes must be at least 1");
    }
    if args.org_pushes >= B_SEQ_BASE {
        bail!("--org-pushes must be below {B_SEQ_BASE}");
    }
    if !(args.b_rate.is_finite() && args.b_rate > 0.0) {
        bail!("--b-rate must be a positive number");
    }
    let (a_id, a_key) = read_installation(&args.installation_a)?;
    let (b_id, b_key) = read_installation(&args.installation_b)?;
    let http = reqwest::Client::builder()
        // Accepting an organization push stores every one of its deliveries first.
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(1024)
        .build()?;
    let base = origin(&cli.common.url)?;
    let api_with = |key: Option<String>| {
        Arc::new(Api {
            http: http.clone(),
            base: base.clone(),
            key,
        })
    };
    let local = api_with(cli.common.send_key.clone());

    let (fakes, vapid) = start_fakes(args).await?;
    let mut devices = Devices::new(args.org_devices, args.b_devices);
    devices.subscribe(&fakes.web, vapid.public_key_base64url())?;
    let devices = Arc::new(devices);
    eprintln!(
        "push-org: fakes at {} (FCM), {} (APNs), {} (Web Push); the server's variables in {}; \
         waiting for {base}/alive",
        fakes.fcm.url(),
        fakes.apns.url(),
        fakes.web.url(),
        args.dir.join("server.env").display()
    );
    local.wait_alive(cli.common.ready_timeout).await?;
    let server_pid = match (&args.server_pid_file, cli.common.server_pid) {
        (_, Some(pid)) => Some(pid),
        (Some(path), None) => read_pid_file(path).await,
        (None, None) => None,
    };
    let rss_start = server_pid.and_then(stats::rss_kib);
    let a = api_with(Some(installation_token(&http, &base, &a_id, &a_key).await?));
    let b = api_with(Some(installation_token(&http, &base, &b_id, &b_key).await?));

    // Registration.
    let n = args.org_devices;
    let b_registered = register(
        &b,
        &devices,
        n..n + args.b_devices,
        None,
        args.register_concurrency,
        "B",
    )
    .await?;
    let (org_api, org_prefix) = match args.org_register {
        OrgRegister::Relay => (a.clone(), None),
        OrgRegister::Local => {
            if cli.common.send_key.is_none() {
                bail!("--org-register local needs --send-key");
            }
            (local.clone(), Some(a_id.clone()))
        }
    };
    let org_registered = register(
        &org_api,
        &devices,
        0..n,
        org_prefix,
        args.register_concurrency,
        "A",
    )
    .await?;
    eprintln!(
        "push-org: {n} devices of A registered in {:.1} s ({}), {} of B",
        org_registered.seconds,
        match args.org_register {
            OrgRegister::Relay => "with A's token",
            OrgRegister::Local => "with the /send key, ids prefixed",
        },
        args.b_devices
    );
    let rss_registered = server_pid.and_then(stats::rss_kib);

    let feed = Arc::new(Mutex::new(Feed::new(args.org_pushes)));
    let followers = [
        follow(Provider::Fcm, fakes.fcm.events(), feed.clone()),
        follow(Provider::Apns, fakes.apns.events(), feed.clone()),
        follow(Provider::WebPush, fakes.web.events(), feed.clone()),
    ];

    // Warm-up: one push of B to each of its devices, so each provider's token and first
    // connection are in place (and the Web Push origin has answered once); not measured.
    let warmup_started = Instant::now();
    for k in 0..args.b_devices {
        let user = ids::user_id(k);
        let body = json!({
            "userId": user,
            "identifier": SENDER_IDENTIFIER,
            "type": PUSH_TYPE,
            "payload": payload("userId", &user, WARMUP_SEQ, marker::unix_nanos()),
        });
        let answer = b
            .post("/push/send", &body)
            .await
            .map_err(|e| anyhow::anyhow!("warm-up push: {e}"))?;
        if answer.get("queued").and_then(Value::as_u64) != Some(1) {
            bail!("warm-up push to B's user {k}: the server answered {answer}, 1 queued expected");
        }
    }
    wait_warmups(&feed, args.b_devices as u64, &fakes).await?;
    let warmup_seconds = warmup_started.elapsed().as_secs_f64();

    // Idle phase: B alone.
    let bench_cpu_before = stats::own_cpu_seconds();
    let cpu_idle_before = server_pid.and_then(stats::cpu_seconds);
    let idle_start = marker::unix_nanos();
    let stop = Arc::new(AtomicBool::new(false));
    let b_log = Arc::new(Mutex::new(BLog::default()));
    let sender = tokio::spawn(b_sender(
        b.clone(),
        devices.clone(),
        args.b_rate,
        stop.clone(),
        b_log.clone(),
    ));
    tokio::time::sleep(args.idle).await;

    // Load phase: A's organization pushes, one after another, B going on.
    let cpu_idle = cpu_since(server_pid, cpu_idle_before);
    let cpu_load_before = server_pid.and_then(stats::cpu_seconds);
    let load_start = marker::unix_nanos();
    let mut org_sent = Vec::new();
    let mut org_accept = stats::histogram();
    let mut org_accept_ms = Vec::new();
    let mut org_accepted = Vec::new();
    let mut errors = ErrorCounts::default();
    let org = ids::org_id(0);
    for p in 0..args.org_pushes {
        let nanos = marker::unix_nanos();
        let body = json!({
            "organizationId": org,
            "identifier": SENDER_IDENTIFIER,
            "type": PUSH_TYPE,
            "payload": payload("organizationId", &org, p, nanos),
        });
        let began = Instant::now();
        let answer = a.post("/push/send", &body).await;
        let took = began.elapsed();
        org_sent.push(nanos);
        org_accept.saturating_record((took.as_micros() as u64).max(1));
        org_accept_ms.push(round(took.as_secs_f64() * 1e3, 2));
        match answer.map(|a| a.get("queued").and_then(Value::as_u64)) {
            Ok(Some(q)) if q == n as u64 => org_accepted.push(true),
            Ok(q) => {
                errors.add(&format!("org push queued {q:?}, {n} expected"));
                // Whatever it queued may still arrive; it is not counted as expected.
                org_accepted.push(false);
            }
            Err(e) => {
                errors.add(&format!("org push: {e}"));
                org_accepted.push(false);
            }
        }
    }
    let last_answer = Instant::now();
    let expected_a = org_accepted.iter().filter(|&&x| x).count() as u64 * n as u64;

    // Until A's last delivery: from the feed, or, when the feed lagged and may have missed
    // some, from the complete records.
    let deadline = last_answer + args.drain;
    let mut last_check = Instant::now();
    let (a_done, a_done_exact) = loop {
        let (seen, lagged, last) = {
            let f = feed.lock();
            (f.a_seen, f.lagged, f.a_last)
        };
        if seen >= expected_a {
            break (last.max(load_start), true);
        }
        if Instant::now() > deadline {
            errors.add("A's deliveries still incomplete at the --drain deadline");
            break (marker::unix_nanos(), false);
        }
        if lagged > 0
            && seen + lagged >= expected_a
            && last_check.elapsed() > Duration::from_secs(5)
            && fakes.requests() as u64 >= expected_a
        {
            last_check = Instant::now();
            let expected = Expected {
                org: org_accepted.clone(),
                b: Vec::new(),
            };
            let t = tally(&fakes, &devices, &expected);
            if Tally::sum(&t.delivered) >= expected_a {
                break (marker::unix_nanos(), false);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let cpu_load = cpu_since(server_pid, cpu_load_before);
    let rss_loaded = server_pid.and_then(stats::rss_kib);
    stop.store(true, Relaxed);
    let handles = sender.await.unwrap_or_default();
    for h in handles {
        let _ = h.await;
    }
    let b_log = std::mem::take(&mut *b_log.lock());
    let b_accepted: Vec<bool> = b_log.sends.iter().map(|s| s.accepted).collect();
    let b_expected = b_accepted.iter().filter(|&&x| x).count();
    // B's last pushes, then the queue: both settle quickly once A is done.
    let settle = Instant::now() + SETTLE;
    while feed.lock().b.len() < b_expected && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut pending = local.pending().await;
    while pending.is_some_and(|p| p > 0) && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pending = local.pending().await;
    }
    let bench_cpu = stats::own_cpu_seconds() - bench_cpu_before;
    let rss_end = server_pid.and_then(stats::rss_kib);
    let rss_peak = server_pid.and_then(stats::peak_rss_kib);
    for f in followers {
        f.abort();
    }
    let feed = std::mem::replace(&mut *feed.lock(), Feed::new(0));

    let expected = Expected {
        org: org_accepted.clone(),
        b: b_accepted,
    };
    let tally = tally(&fakes, &devices, &expected);
    drop(fakes);

    // Figures.
    let idle = b_phase(&b_log, &feed.b, idle_start, load_start);
    let load = b_phase(&b_log, &feed.b, load_start, a_done);
    let idle_p99 = (!idle.delivery.is_empty()).then(|| idle.delivery.value_at_quantile(0.99));
    let load_p99 = (!load.delivery.is_empty()).then(|| load.delivery.value_at_quantile(0.99));
    let b_ratio = match (idle_p99, load_p99) {
        (Some(i), Some(l)) if i > 0 => Some(round(l as f64 / i as f64, 3)),
        _ => None,
    };
    let window = a_done.saturating_sub(load_start) as f64 / 1e9;
    let first_sent = org_sent.first().copied().unwrap_or(load_start);
    let to_last = a_done.saturating_sub(first_sent) as f64 / 1e9;
    let a_delivered: u64 = feed.a_seen;
    let per_push: Vec<Value> = feed
        .per_push
        .iter()
        .zip(&org_sent)
        .zip(&org_accept_ms)
        .map(|((&(count, last, ref latency), &sent), &accept_ms)| {
            json!({
                "accept_ms": accept_ms,
                "deliveries_seen": count,
                "last_delivery_seconds": (count > 0)
                    .then(|| round(last.saturating_sub(sent) as f64 / 1e9, 3)),
                "delivery_latency_us": stats::summary(latency),
            })
        })
        .collect();
    let first_push_seconds = feed.per_push.first().and_then(|&(count, last, _)| {
        (count >= n as u64).then(|| last.saturating_sub(first_sent) as f64 / 1e9)
    });
    // The pushes' deliveries overlap in the queue, so the first push's own time includes
    // deliveries of the later ones; the whole run per push is the other reading of "one push".
    let seconds_per_push =
        (a_done_exact || a_delivered >= expected_a).then(|| to_last / args.org_pushes as f64);

    let mut by_provider = Map::new();
    for p in Provider::ALL {
        let (seen, last) = (
            feed.a_by_provider[p.index()],
            feed.a_last_by_provider[p.index()],
        );
        by_provider.insert(
            p.name().into(),
            json!({
                "org_deliveries_seen": seen,
                "first_push_to_last_delivery_seconds": (seen > 0)
                    .then(|| round(last.saturating_sub(first_sent) as f64 / 1e9, 3)),
            }),
        );
    }
    let by_provider = Value::Object(by_provider);
    let missing = tally.missing();
    let duplicates = Tally::sum(&tally.duplicates);
    let unexpected = Tally::sum(&tally.unexpected);
    if missing > 0 {
        errors.add_n("deliveries missing at the fakes", missing);
    }
    if duplicates > 0 {
        errors.add_n("deliveries arrived twice", duplicates);
    }
    if unexpected > 0 {
        errors.add_n("unexpected messages at the fakes", unexpected);
    }
    errors.merge_json(&b_log.errors.to_json());
    if feed.refused.total() > 0 {
        errors.merge_json(&feed.refused.to_json());
    }
    if pending.is_some_and(|p| p > 0) {
        errors.add("deliveries still pending in the server's queue");
    }

    let mut out = Map::new();
    out.insert("mode".into(), json!("push-org"));
    out.insert("url".into(), json!(base));
    out.insert("installation_a".into(), json!(a_id));
    out.insert("installation_b".into(), json!(b_id));
    out.insert("org_devices".into(), json!(n));
    let mut platforms = Map::new();
    for p in Provider::ALL {
        platforms.insert(p.name().into(), json!(devices.org_count(p)));
    }
    out.insert("org_devices_by_provider".into(), Value::Object(platforms));
    out.insert("org_pushes".into(), json!(args.org_pushes));
    out.insert("b_devices".into(), json!(args.b_devices));
    out.insert("b_rate".into(), json!(args.b_rate));
    out.insert(
        "registration".into(),
        json!({
            "org_register": match args.org_register {
                OrgRegister::Relay => "relay",
                OrgRegister::Local => "local",
            },
            "org_seconds": round(org_registered.seconds, 3),
            "org_per_second": per(n as f64, org_registered.seconds),
            "org_per_second_by_tenth": org_registered.rate_by_tenth,
            "b_seconds": round(b_registered.seconds, 3),
            "concurrency": args.register_concurrency,
        }),
    );
    out.insert("warmup_seconds".into(), json!(round(warmup_seconds, 3)));
    let mut idle_json = b_phase_json(&idle, load_start.saturating_sub(idle_start) as f64 / 1e9);
    idle_json["server_cpu_seconds"] = json!(cpu_idle);
    out.insert("idle".into(), idle_json);
    let mut load_json = b_phase_json(&load, window);
    let load_fields = [
        ("org_accept_latency_us", stats::summary(&org_accept)),
        ("org_accept_ms", json!(org_accept_ms)),
        (
            "org_pushes_accepted",
            json!(org_accepted.iter().filter(|&&x| x).count()),
        ),
        (
            "first_push_to_last_delivery_seconds",
            json!(round(to_last, 3)),
        ),
        ("last_delivery_exact", json!(a_done_exact)),
        ("org_deliveries_seen", json!(a_delivered)),
        ("org_deliveries_expected", json!(expected_a)),
        ("deliveries_per_second", per(a_delivered as f64, to_last)),
        (
            "first_push_seconds",
            json!(first_push_seconds.map(|s| round(s, 3))),
        ),
        (
            "seconds_per_push",
            json!(seconds_per_push.map(|s| round(s, 3))),
        ),
        ("per_push", json!(per_push)),
        ("by_provider", by_provider),
        ("b_p99_ratio_to_idle", json!(b_ratio)),
        ("server_cpu_seconds", json!(cpu_load)),
        (
            "server_cpu_us_per_delivery",
            cpu_load.map_or(Value::Null, |c| per(c * 1e6, a_delivered as f64)),
        ),
    ];
    for (k, v) in load_fields {
        load_json[k] = v;
    }
    out.insert("load".into(), load_json);
    out.insert("deliveries".into(), tally.json());
    out.insert("feed_lagged".into(), json!(feed.lagged));
    out.insert("feed_unmatched".into(), json!(feed.unmatched));
    out.insert("server_pending_after".into(), json!(pending));
    out.insert("bench_cpu_seconds".into(), json!(round(bench_cpu, 3)));
    out.insert("server_rss_start_kib".into(), json!(rss_start));
    out.insert("server_rss_registered_kib".into(), json!(rss_registered));
    out.insert("server_rss_loaded_kib".into(), json!(rss_loaded));
    out.insert("server_rss_end_kib".into(), json!(rss_end));
    out.insert("server_rss_peak_kib".into(), json!(rss_peak));
    let accept_p99_ms =
        (!org_accept.is_empty()).then(|| org_accept.value_at_quantile(0.99) as f64 / 1e3);
    out.insert(
        "targets".into(),
        json!({
            "org_accept_p99_under_1s": accept_p99_ms.map(|ms| ms < 1000.0),
            "b_p99_within_3x_idle": b_ratio.map(|r| r <= 3.0),
            "nothing_lost": missing == 0 && duplicates == 0 && unexpected == 0,
        }),
    );

    let mut human = vec![
        format!(
            "registered {n} devices of A in {:.1} s ({} /s; by tenth {:?}), {} of B",
            org_registered.seconds,
            out["registration"]["org_per_second"],
            org_registered.rate_by_tenth,
            args.b_devices
        ),
        format!(
            "idle: B {} pushes, send -> provider {}",
            idle.sent,
            stats::human(&idle.delivery)
        ),
        format!(
            "org pushes: {} of {} accepted; accept {:?} ms (p99 {:?} ms)",
            org_accepted.iter().filter(|&&x| x).count(),
            args.org_pushes,
            org_accept_ms,
            accept_p99_ms
        ),
        format!(
            "first org push -> last delivery {to_last:.2} s ({} deliveries/s, {} s per push); \
             the first push's own last delivery after {}",
            out["load"]["deliveries_per_second"],
            out["load"]["seconds_per_push"],
            first_push_seconds.map_or("-".into(), |s| format!("{s:.2} s"))
        ),
        format!(
            "each org push's deliveries, send -> provider p50 / p99 / max (s): {}",
            feed.per_push
                .iter()
                .map(|(_, _, h)| if h.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{:.1} / {:.1} / {:.1}",
                        h.value_at_quantile(0.5) as f64 / 1e6,
                        h.value_at_quantile(0.99) as f64 / 1e6,
                        h.max() as f64 / 1e6
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "first org push -> last delivery by provider: FCM {} s, APNs {} s, Web Push {} s",
            out["load"]["by_provider"]["fcm"]["first_push_to_last_delivery_seconds"],
            out["load"]["by_provider"]["apns"]["first_push_to_last_delivery_seconds"],
            out["load"]["by_provider"]["webpush"]["first_push_to_last_delivery_seconds"]
        ),
        format!(
            "load: B {} pushes, send -> provider {}; p99 ratio to idle {}",
            load.sent,
            stats::human(&load.delivery),
            b_ratio.map_or("-".into(), |r| format!("{r:.2}"))
        ),
        format!(
            "deliveries: {} of {} ({missing} missing, {duplicates} duplicate, {unexpected} \
             unexpected); feed lagged {}",
            Tally::sum(&tally.delivered),
            Tally::sum(&tally.expected),
            feed.lagged
        ),
    ];
    if let (Some(s), Some(e), Some(p)) = (rss_start, rss_end, rss_peak) {
        human.push(format!("server RSS {s} -> {e} KiB (peak {p} KiB)"));
    }

    if !args.no_baseline {
        let limit = args.drain + Duration::from_secs(120);
        let base = tokio::time::timeout(limit, baseline(n, args.baseline_concurrency))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the baseline took too long")));
        match base {
            Ok(b) => {
                let over = |ours: Option<f64>| match (ours, b["seconds"].as_f64()) {
                    (Some(ours), Some(theirs)) if theirs > 0.0 => json!(round(ours / theirs, 3)),
                    _ => Value::Null,
                };
                let (first, each) = (over(first_push_seconds), over(seconds_per_push));
                if let Some(e) = b.get("errors") {
                    errors.merge_json(e);
                }
                human.push(format!(
                    "baseline (provider clients -> fresh fakes, {} in flight each): {} s for {n} \
                     deliveries; the server takes {first} times that for the first push, {each} \
                     per push over the run",
                    b["concurrency_per_provider"], b["seconds"]
                ));
                out.insert("baseline".into(), b);
                out.insert("first_push_over_baseline".into(), first);
                out.insert("seconds_per_push_over_baseline".into(), each);
            }
            Err(e) => {
                errors.add(&format!("baseline: {e:#}"));
                out.insert("baseline".into(), Value::Null);
                out.insert("first_push_over_baseline".into(), Value::Null);
                out.insert("seconds_per_push_over_baseline".into(), Value::Null);
            }
        }
    }

    out.insert("error_count".into(), json!(errors.total()));
    out.insert("errors".into(), errors.to_json());
    eprintln!("push-org {base}: {} errors", errors.total());
    for line in human {
        eprintln!("  {line}");
    }
    if errors.total() > 0 {
        eprintln!("  errors: {}", errors.to_json());
    }
    println!("{}", Value::Object(out));
    Ok(())
}

/// What one provider's part of the baseline did.
struct BaselinePart {
    deliveries: u64,
    seconds: f64,
    errors: ErrorCounts,
}

/// Sends `sends` with at most `concurrency` in flight; each returns whether it was delivered.
async fn drive<F>(concurrency: usize, sends: Vec<F>) -> BaselinePart
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let delivered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(ErrorCounts::default()));
    let start = Instant::now();
    for send in sends {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (delivered, errors) = (delivered.clone(), errors.clone());
        tokio::spawn(async move {
            match send.await {
                Ok(()) => {
                    delivered.fetch_add(1, Relaxed);
                }
                Err(e) => errors.lock().add(&e),
            }
            drop(permit);
        });
    }
    let _ = permits.acquire_many(concurrency as u32).await;
    let seconds = start.elapsed().as_secs_f64();
    let errors = std::mem::take(&mut *errors.lock());
    BaselinePart {
        deliveries: delivered.load(Relaxed),
        seconds,
        errors,
    }
}

/// One organization push's deliveries to the same `n` devices, straight from the provider
/// clients the server uses to fresh fakes, `concurrency` in flight per provider.
async fn baseline(n: usize, concurrency: usize) -> Result<Value> {
    let concurrency = concurrency.clamp(1, 10_000);
    let fcm_fake = FakeFcm::start(FakeFcmConfig::default())
        .await
        .context("starting the baseline's fake FCM")?;
    let (apns_config, p8) = FakeApnsConfig::with_new_key(APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC);
    let apns_fake = FakeApns::start(apns_config)
        .await
        .context("starting the baseline's fake APNs")?;
    let web_fake = FakeWebPush::start(None)
        .await
        .context("starting the baseline's fake Web Push")?;
    let vapid = Arc::new(VapidKey::generate());
    let mut devices = Devices::new(n, 0);
    devices.subscribe(&web_fake, vapid.public_key_base64url())?;

    let account = ServiceAccount::from_json(&fcm_fake.service_account_json())
        .map_err(|e| anyhow::anyhow!("the fake's service account: {e}"))?;
    let fcm_client = Arc::new(
        FcmClient::new(account, Some(url::Url::parse(&fcm_fake.url())?))
            .map_err(|e| anyhow::anyhow!("baseline FCM client: {e}"))?,
    );
    let apns_client = Arc::new(
        ApnsClient::new(ApnsConfig {
            key_pem: p8.into_bytes(),
            key_id: APNS_KEY_ID.into(),
            team_id: APNS_TEAM_ID.into(),
            topic: APNS_TOPIC.into(),
            endpoint: Some(url::Url::parse(&apns_fake.url())?),
            extra_ca_pem: None,
        })
        .map_err(|e| anyhow::anyhow!("baseline APNs client: {e}"))?,
    );
    // As the server builds its Web Push client (providers.rs): no redirects, its timeouts.
    let web_client = pushwarden_push::outbound::client_builder(None)?
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?;

    // Each delivery is built as the server's worker builds it, from the stored payload text.
    let send_fcm = {
        let client = fcm_client.clone();
        move |i: usize, text: Arc<str>| {
            let client = client.clone();
            async move {
                let data = fcm::bitwarden_data(PUSH_TYPE, &text, Some(SENDER_IDENTIFIER));
                match client.send(&fcm_token(i), &data).await {
                    fcm::Outcome::Delivered { .. } => Ok(()),
                    other => Err(format!("FCM: {other:?}")),
                }
            }
        }
    };
    let send_apns = {
        let client = apns_client.clone();
        move |i: usize, text: Arc<str>| {
            let client = client.clone();
            async move {
                let body = apns::bitwarden_payload(PUSH_TYPE, &text);
                match client
                    .send(
                        &apns_token(i),
                        Environment::Production,
                        &body,
                        SendOptions::default(),
                    )
                    .await
                {
                    apns::Outcome::Delivered { .. } => Ok(()),
                    other => Err(format!("APNs: {other:?}")),
                }
            }
        }
    };
    let send_web = {
        let (client, vapid) = (web_client.clone(), vapid.clone());
        move |sub: Subscription, text: Arc<str>| {
            let (client, vapid) = (client.clone(), vapid.clone());
            async move {
                let endpoint = url::Url::parse(&sub.endpoint).map_err(|e| e.to_string())?;
                let subscription =
                    webpush::Subscription::from_base64url(endpoint, &sub.p256dh, &sub.auth)
                        .map_err(|e| e.to_string())?;
                let body = web_push_body(PUSH_TYPE, &text);
                let request = webpush::build_request(
                    &subscription,
                    body.as_bytes(),
                    &vapid,
                    VAPID_SUBJECT,
                    WEBPUSH_TTL_SECS,
                    Urgency::Normal,
                )
                .map_err(|e| format!("Web Push: {e}"))?;
                match webpush::send(&client, &request).await {
                    webpush::Outcome::Delivered => Ok(()),
                    other => Err(format!("Web Push: {other:?}")),
                }
            }
        }
    };

    // Warm-up, like the server's: tokens and a first connection to each fake.
    let warm: Arc<str> = payload(
        "organizationId",
        "warm-up",
        WARMUP_SEQ,
        marker::unix_nanos(),
    )
    .to_string()
    .into();
    let first = |p: Provider| (0..n).find(|&i| org_platform(i) == p);
    if let Some(i) = first(Provider::Fcm) {
        send_fcm(i, warm.clone())
            .await
            .map_err(|e| anyhow::anyhow!("baseline warm-up: {e}"))?;
    }
    if let Some(i) = first(Provider::Apns) {
        send_apns(i, warm.clone())
            .await
            .map_err(|e| anyhow::anyhow!("baseline warm-up: {e}"))?;
    }
    if let Some(sub) = first(Provider::WebPush).and_then(|i| devices.subscriptions.get(&i)) {
        send_web(sub.clone(), warm.clone())
            .await
            .map_err(|e| anyhow::anyhow!("baseline warm-up: {e}"))?;
    }

    let text: Arc<str> = payload("organizationId", "baseline", 0, marker::unix_nanos())
        .to_string()
        .into();
    let of = |p: Provider| (0..n).filter(move |&i| org_platform(i) == p);
    let fcm_sends: Vec<_> = of(Provider::Fcm)
        .map(|i| send_fcm(i, text.clone()))
        .collect();
    let apns_sends: Vec<_> = of(Provider::Apns)
        .map(|i| send_apns(i, text.clone()))
        .collect();
    let web_sends: Vec<_> = of(Provider::WebPush)
        .filter_map(|i| devices.subscriptions.get(&i).cloned())
        .map(|sub| send_web(sub, text.clone()))
        .collect();
    let cpu_before = stats::own_cpu_seconds();
    let start = Instant::now();
    let (f, a, w) = tokio::join!(
        drive(concurrency, fcm_sends),
        drive(concurrency, apns_sends),
        drive(concurrency, web_sends)
    );
    let seconds = start.elapsed().as_secs_f64();
    let cpu = stats::own_cpu_seconds() - cpu_before;
    let delivered = f.deliveries + a.deliveries + w.deliveries;
    // The fakes' own counts, warm-ups included.
    let at = |count: usize, warm: bool| count.saturating_sub(usize::from(warm)) as u64;
    let arrived = at(
        fcm_fake
            .wait_for(f.deliveries as usize + 1, Duration::from_secs(5))
            .await
            .len(),
        first(Provider::Fcm).is_some(),
    ) + at(
        apns_fake
            .wait_for(a.deliveries as usize + 1, Duration::from_secs(5))
            .await
            .len(),
        first(Provider::Apns).is_some(),
    ) + at(
        web_fake
            .wait_for(w.deliveries as usize + 1, Duration::from_secs(5))
            .await
            .len(),
        first(Provider::WebPush).is_some(),
    );
    let mut errors = ErrorCounts::default();
    for part in [&f, &a, &w] {
        errors.merge_json(&part.errors.to_json());
    }
    let part = |p: &BaselinePart| {
        json!({
            "deliveries": p.deliveries,
            "seconds": round(p.seconds, 3),
            "deliveries_per_second": per(p.deliveries as f64, p.seconds),
        })
    };
    Ok(json!({
        "concurrency_per_provider": concurrency,
        "deliveries_expected": n,
        "deliveries": delivered,
        "deliveries_at_fakes": arrived,
        "seconds": round(seconds, 3),
        "deliveries_per_second": per(delivered as f64, seconds),
        "by_provider": {"fcm": part(&f), "apns": part(&a), "webpush": part(&w)},
        "bench_cpu_seconds": round(cpu, 3),
        "errors": errors.to_json(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn message(provider: Provider, devices: &Devices, device: usize, seq: u64) -> Received {
        let text = payload("userId", "u", seq, 123).to_string();
        let token = match provider {
            Provider::Fcm => fcm_token(device),
            Provider::Apns => apns_token(device),
            Provider::WebPush => devices
                .by_subscription
                .iter()
                .find(|(_, &d)| d == device)
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
        };
        Received {
            token,
            body: json!({"data": {"type": 5, "payload": text}}),
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn platforms_are_mixed_and_tokens_round_trip() {
        let devices = Devices::new(20, 3);
        let count = |p| devices.org_count(p);
        assert_eq!(
            (
                count(Provider::Fcm),
                count(Provider::Apns),
                count(Provider::WebPush)
            ),
            (10, 6, 4)
        );
        assert_eq!(devices.platform(20), Provider::Fcm);
        assert_eq!(devices.platform(21), Provider::Apns);
        assert_eq!(devices.platform(22), Provider::WebPush);
        assert_eq!(devices.b_device(4), 21);
        assert_eq!(apns_token(12345).len(), 64);
        assert_eq!(device_of_apns_token(&apns_token(12345)), Some(12345));
        assert_eq!(device_of_apns_token("be11c0de"), None);
    }

    #[test]
    fn registrations_carry_the_prefix_when_local() {
        let devices = Devices::new(10, 3);
        let relayed = devices.registration(5, None);
        assert_eq!(relayed["type"], 1);
        assert_eq!(relayed["organizationIds"], json!([ids::org_id(0)]));
        assert!(relayed.get("installationId").is_none());
        let local = devices.registration(0, Some("inst"));
        assert_eq!(local["deviceId"], format!("inst_{}", device_id(0)));
        assert_eq!(local["userId"], format!("inst_{}", ids::user_id(0)));
        assert_eq!(
            local["organizationIds"],
            json!([format!("inst_{}", ids::org_id(0))])
        );
        assert_eq!(local["installationId"], "inst");
        assert_eq!(local["pushToken"], fcm_token(0));
        let b = devices.registration(11, None);
        assert_eq!(b["userId"], ids::user_id(1));
        assert_eq!(b["organizationIds"], json!([]));
    }

    #[test]
    fn installation_files_are_read() {
        let dir = std::env::temp_dir().join(format!("push-org-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        std::fs::write(&path, "id:  abc-123\nkey: s3cret\n").unwrap();
        assert_eq!(
            read_installation(&path).unwrap(),
            ("abc-123".to_owned(), "s3cret".to_owned())
        );
        std::fs::write(&path, "nothing here\n").unwrap();
        assert!(read_installation(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tally_counts_every_kind_of_surprise() {
        let mut devices = Devices::new(10, 3);
        // Web Push devices without a fake: made-up subscription ids.
        let web: Vec<usize> = (0..13)
            .filter(|&i| devices.platform(i) == Provider::WebPush)
            .collect();
        for i in web {
            devices.by_subscription.insert(format!("sub-{i}"), i);
        }
        // Org push 0 accepted, 1 not; B's pushes 0 (device 10, FCM) and 1 (11, APNs) accepted.
        let expected = Expected {
            org: vec![true, false],
            b: vec![true, true, false],
        };
        let mut fcm: Vec<Received> = (0..5)
            .map(|i| message(Provider::Fcm, &devices, i, 0))
            .collect();
        fcm.push(message(Provider::Fcm, &devices, 0, 0)); // twice
        fcm.push(message(Provider::Fcm, &devices, 1, 1)); // push 1 was not accepted
        fcm.push(message(Provider::Fcm, &devices, 10, B_SEQ_BASE));
        fcm.push(message(Provider::Fcm, &devices, 0, B_SEQ_BASE)); // B's push to A's device
        fcm.push(message(Provider::Fcm, &devices, 3, WARMUP_SEQ)); // ignored
        let apns: Vec<Received> = (5..8)
            .map(|i| message(Provider::Apns, &devices, i, 0))
            .collect();
        // Device 9's Web Push never arrived; B's push 1 (APNs) neither.
        let web = vec![message(Provider::WebPush, &devices, 8, 0)];
        let mut counter = Counter::new(&devices, &expected);
        counter.add(Provider::Fcm, &fcm);
        counter.add(Provider::Apns, &apns);
        counter.add(Provider::WebPush, &web);
        let t = counter.tally;
        assert_eq!(t.expected, [6, 4, 2]);
        assert_eq!(t.delivered, [6, 3, 1]);
        assert_eq!(t.duplicates, [1, 0, 0]);
        assert_eq!(t.unexpected, [2, 0, 0]);
        assert_eq!(t.missing(), 2);
    }
}
