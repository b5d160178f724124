//! What a fake saw: accepted pushes, request counts, refusals, and a live feed of all three.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

/// One push the fake accepted (answered with success).
#[derive(Clone, Debug)]
pub struct Received {
    /// APNs: the device token from the path; FCM: `message.token` (`/topics/{topic}` or the
    /// condition for the other targets); Web Push: the subscription id (last path segment of
    /// the endpoint).
    pub token: String,
    /// APNs: the JSON body; FCM: the `message` object of the request; Web Push: the decrypted
    /// plaintext parsed as JSON (or a JSON string if it is not JSON).
    pub body: serde_json::Value,
    /// Request headers, lower-case names; repeated headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
}

/// Something a fake did with a push request, as it happened.
#[derive(Clone, Debug)]
pub enum Event {
    /// The push passed every check and was answered with success.
    Accepted(Received),
    /// The push was refused: a protocol violation, or a token/subscription the service does
    /// not know. `token` is `None` when the request did not get far enough to name one.
    Refused {
        token: Option<String>,
        status: u16,
        reason: String,
    },
    /// The push was valid but a scripted reply answered it.
    Scripted {
        token: String,
        status: u16,
        reason: String,
    },
}

/// Enough for a burst in a test or a human watching the binary; a slower reader sees `Lagged`.
const EVENT_CAPACITY: usize = 1024;

pub(crate) struct Recorder {
    received: Mutex<Vec<Received>>,
    /// The number of accepted pushes, watched by `wait_for`.
    accepted: watch::Sender<usize>,
    requests: AtomicUsize,
    per_token: Mutex<HashMap<String, usize>>,
    rejections: Mutex<Vec<String>>,
    delay: Mutex<Duration>,
    events: broadcast::Sender<Event>,
    provider: &'static str,
}

impl Recorder {
    pub(crate) fn new(provider: &'static str) -> Self {
        Self {
            received: Mutex::new(Vec::new()),
            accepted: watch::Sender::new(0),
            requests: AtomicUsize::new(0),
            per_token: Mutex::new(HashMap::new()),
            rejections: Mutex::new(Vec::new()),
            delay: Mutex::new(Duration::ZERO),
            events: broadcast::Sender::new(EVENT_CAPACITY),
            provider,
        }
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Called once the request names a token, so per-token counts include refused requests.
    pub(crate) fn count_token(&self, token: &str) {
        *self.per_token.lock().entry(token.to_owned()).or_default() += 1;
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn requests_for(&self, token: &str) -> usize {
        self.per_token.lock().get(token).copied().unwrap_or(0)
    }

    pub(crate) fn accept(&self, received: Received) {
        tracing::debug!(provider = self.provider, token = %received.token, "push accepted");
        self.received.lock().push(received.clone());
        self.accepted.send_modify(|n| *n += 1);
        let _ = self.events.send(Event::Accepted(received));
    }

    /// A request that broke the protocol: kept for diagnostics as well as announced.
    pub(crate) fn reject(&self, token: Option<&str>, status: u16, reason: &str, detail: &str) {
        // Status 0: the request got no answer at all (its connection was closed).
        let line = if status == 0 {
            format!("{reason}: {detail}")
        } else if detail.is_empty() {
            format!("{status} {reason}")
        } else {
            format!("{status} {reason}: {detail}")
        };
        tracing::debug!(provider = self.provider, rejection = %line, "request refused");
        self.rejections.lock().push(line.clone());
        let _ = self.events.send(Event::Refused {
            token: token.map(str::to_owned),
            status,
            reason: line,
        });
    }

    /// A well-formed request for something that does not exist (a gone subscription): the
    /// client did nothing wrong, so it is announced but not listed among the rejections.
    pub(crate) fn refuse_quietly(&self, token: &str, status: u16, reason: &str) {
        let _ = self.events.send(Event::Refused {
            token: Some(token.to_owned()),
            status,
            reason: format!("{status} {reason}"),
        });
    }

    pub(crate) fn scripted(&self, token: &str, status: u16, reason: &str) {
        let _ = self.events.send(Event::Scripted {
            token: token.to_owned(),
            status,
            reason: reason.to_owned(),
        });
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut rx = self.accepted.subscribe();
        // Timing out is an answer too: the caller compares what arrived with what it expected.
        let _ = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        self.received()
    }

    pub(crate) fn rejections(&self) -> Vec<String> {
        self.rejections.lock().clone()
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        *self.delay.lock() = delay;
    }

    /// Holds the answer back, so that tests can make requests overlap.
    pub(crate) async fn pause(&self) {
        let delay = *self.delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Request headers as [`Received`] keeps them.
pub(crate) fn header_map(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// The single value of a header, `None` if absent or not visible ASCII.
pub(crate) fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random bytes as lower-case hex, for ids that only need to be unique.
pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
