//! Per-origin admission for Web Push and UnifiedPush, whose endpoints are user-supplied: at
//! most `limit` requests in flight to one origin (scheme, host, port), and a backoff once the
//! origin stops answering, so a slow or silent push service delays only its own subscriptions.
//!
//! The worker asks before it starts a delivery ([`Origins::admit`]):
//! - an origin that has answered in time since the start (proven) takes up to `limit` requests
//!   at once; deliveries beyond that wait for a slot in memory ([`Ticket::enter`]), without
//!   holding any of the worker's slots, up to [`MAX_WAITING_PER_ORIGIN`] per origin and
//!   [`MAX_WAITING`] in all, so a large fan-out to one push service runs at full speed;
//! - a new origin, or one that failed, gets one request at a time (a probe) until one is
//!   answered in time;
//! - anything else (an origin backing off, a probe already out, too many waiting) is deferred:
//!   put back in the durable queue for later, its attempts unchanged.
//!
//! After a request its result is recorded ([`Origins::record`]): no answer (connect failure,
//! timeout) or an answer after half the request timeout is a failure. A failure backs the origin
//! off, doubling from one request timeout up to [`MAX_BACKOFF`] (failures of requests that were
//! in flight together count once); waiting deliveries then go back to the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::backoff::Backoff;

/// The longest an origin is backed off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Deliveries waiting in memory for a slot of one proven origin.
pub const MAX_WAITING_PER_ORIGIN: usize = 1024;
/// Deliveries waiting in memory for a slot, all origins together.
pub const MAX_WAITING: usize = 4096;

/// Origins remembered before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

/// The origin a push endpoint's requests are limited by: `https://host:port`.
pub fn origin_key(endpoint: &Url) -> String {
    endpoint.origin().ascii_serialization()
}

/// Whether a delivery may start.
pub enum Admission {
    /// It may, once [`Ticket::enter`] has a slot for it.
    Queued(Ticket),
    /// Not now: put it back in the queue until `after` has passed.
    Deferred {
        after: Duration,
        /// For metrics: `origin_busy` or `origin_backoff`.
        reason: &'static str,
    },
}

struct State {
    slots: Arc<Semaphore>,
    in_flight: usize,
    waiting: usize,
    /// Answered in time since the start (or since it was last forgotten).
    proven: bool,
    /// Failure windows in a row; 0 when the origin is healthy.
    failures: u32,
    /// Backed off until then.
    until: Option<Instant>,
}

impl State {
    fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            in_flight: 0,
            waiting: 0,
            proven: false,
            failures: 0,
            until: None,
        }
    }

    fn idle(&self, now: Instant) -> bool {
        self.in_flight == 0 && self.waiting == 0 && self.until.is_none_or(|u| u <= now)
    }
}

struct Inner {
    limit: usize,
    /// How long a request may take: the first backoff, and how long a delivery waits for a slot.
    timeout: Duration,
    state: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    origins: HashMap<String, State>,
    waiting: usize,
}

/// The per-origin limits and backoff, shared by the worker and the Web Push sender.
#[derive(Clone)]
pub struct Origins(Arc<Inner>);

/// A delivery admitted to wait for a slot of its origin; gives its place up when dropped.
pub struct Ticket {
    origins: Arc<Inner>,
    key: String,
    slots: Arc<Semaphore>,
    counted: bool,
}

/// A slot of an origin's limit, held while its request runs.
pub struct Pass {
    origins: Arc<Inner>,
    key: String,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.counted {
            let mut table = self.origins.state.lock();
            table.waiting = table.waiting.saturating_sub(1);
            if let Some(s) = table.origins.get_mut(&self.key) {
                s.waiting = s.waiting.saturating_sub(1);
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut table = self.origins.state.lock();
        if let Some(s) = table.origins.get_mut(&self.key) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

impl Ticket {
    /// Waits for a slot of the origin, at most one request timeout. `Err(after)`: not now,
    /// defer the delivery by `after` (no slot came, or the origin started backing off).
    pub async fn enter(mut self) -> Result<Pass, Duration> {
        let slot = tokio::time::timeout(self.origins.timeout, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        let mut table = self.origins.state.lock();
        let now = Instant::now();
        if self.counted {
            self.counted = false;
            table.waiting = table.waiting.saturating_sub(1);
        }
        let Some(s) = table.origins.get_mut(&self.key) else {
            return Err(Duration::ZERO);
        };
        s.waiting = s.waiting.saturating_sub(1);
        if let Some(until) = s.until.filter(|u| *u > now) {
            return Err(until - now);
        }
        let Some(slot) = slot else {
            return Err(busy_delay(self.origins.timeout));
        };
        s.in_flight += 1;
        Ok(Pass {
            origins: self.origins.clone(),
            key: self.key.clone(),
            _slot: slot,
        })
    }
}

/// How long a delivery to a busy origin waits in the queue before it is looked at again: a
/// fraction of the request timeout, with jitter so the waiting ones spread.
fn busy_delay(timeout: Duration) -> Duration {
    let base = (timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    base + base.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// While a probe is out: soon, since a proven origin answers it quickly.
fn probe_delay() -> Duration {
    Duration::from_millis(rand::rng().random_range(500..=1500))
}

impl Origins {
    /// `limit` requests in flight per origin; `timeout` is the Web Push request timeout.
    pub fn new(limit: usize, timeout: Duration) -> Self {
        Self(Arc::new(Inner {
            limit: limit.max(1),
            timeout,
            state: Mutex::new(Table::default()),
        }))
    }

    /// Admits a delivery to `key`'s origin, or says how long to defer it.
    pub fn admit(&self, key: &str) -> Admission {
        let now = Instant::now();
        let mut table = self.0.state.lock();
        if table.origins.len() >= MAX_TRACKED && !table.origins.contains_key(key) {
            table.origins.retain(|_, s| !s.idle(now));
        }
        let all_waiting = table.waiting;
        let limit = self.0.limit;
        let s = table
            .origins
            .entry(key.to_owned())
            .or_insert_with(|| State::new(limit));
        if let Some(until) = s.until.filter(|u| *u > now) {
            // Spread the deferred ones over a second past the end of the backoff.
            let spread = Duration::from_millis(rand::rng().random_range(0..=1000));
            return Admission::Deferred {
                after: until - now + spread,
                reason: "origin_backoff",
            };
        }
        let probing = !s.proven || s.failures > 0;
        let room = if probing {
            s.in_flight == 0 && s.waiting == 0
        } else {
            s.waiting < MAX_WAITING_PER_ORIGIN && all_waiting < MAX_WAITING
        };
        if !room {
            return Admission::Deferred {
                after: if probing {
                    probe_delay()
                } else {
                    busy_delay(self.0.timeout)
                },
                reason: "origin_busy",
            };
        }
        s.waiting += 1;
        let slots = s.slots.clone();
        table.waiting += 1;
        Admission::Queued(Ticket {
            origins: self.0.clone(),
            key: key.to_owned(),
            slots,
            counted: true,
        })
    }

    /// Records how a request to `key`'s origin went: `answered` (any HTTP status) and how long
    /// it took.
    pub fn record(&self, key: &str, answered: bool, took: Duration) {
        let healthy = answered && took <= self.0.timeout / 2;
        let now = Instant::now();
        let limit = self.0.limit;
        let mut table = self.0.state.lock();
        let s = table
            .origins
            .entry(key.to_owned())
            .or_insert_with(|| State::new(limit));
        if healthy {
            if s.failures > 0 {
                tracing::info!(origin = key, "web push origin answers again");
            }
            s.proven = true;
            s.failures = 0;
            s.until = None;
            return;
        }
        // Requests that were in flight together fail together: one window counts once.
        if s.until.is_some_and(|u| u > now) {
            return;
        }
        let backoff = Backoff {
            base: self.0.timeout.max(Duration::from_secs(1)),
            max: MAX_BACKOFF,
        };
        let wait = backoff.delay(s.failures, None);
        s.failures = s.failures.saturating_add(1);
        s.until = Some(now + wait);
        metrics::counter!("pushwarden_push_origin_backoffs_total", "provider" => "webpush")
            .increment(1);
        tracing::warn!(
            origin = key,
            failures = s.failures,
            backoff = ?wait,
            answered,
            took = ?took,
            "web push origin is not answering in time; its pushes wait in the queue"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(a: Admission) -> Ticket {
        match a {
            Admission::Queued(ticket) => ticket,
            Admission::Deferred { reason, .. } => panic!("deferred: {reason}"),
        }
    }

    fn deferred(a: Admission) -> (Duration, &'static str) {
        match a {
            Admission::Queued(_) => panic!("queued"),
            Admission::Deferred { after, reason } => (after, reason),
        }
    }

    fn state<T>(origins: &Origins, key: &str, f: impl FnOnce(&mut State) -> T) -> T {
        f(origins.0.state.lock().origins.get_mut(key).expect("state"))
    }

    #[tokio::test]
    async fn a_new_origin_is_probed_then_runs_limit_at_once_with_the_rest_waiting() {
        let timeout = Duration::from_secs(4);
        let origins = Origins::new(2, timeout);
        // New: one probe; the next is deferred briefly, other origins are not affected.
        let probe = queued(origins.admit("https://a"))
            .enter()
            .await
            .expect("probe");
        let (after, reason) = deferred(origins.admit("https://a"));
        assert_eq!(reason, "origin_busy");
        assert!(after <= Duration::from_millis(1500), "{after:?}");
        let _b = queued(origins.admit("https://b"));
        origins.record("https://a", true, Duration::from_millis(5));
        drop(probe);
        // Proven: two at once, the third waits for a slot and gets the first one freed.
        let one = queued(origins.admit("https://a")).enter().await.expect("1");
        let _two = queued(origins.admit("https://a")).enter().await.expect("2");
        let third = tokio::spawn(queued(origins.admit("https://a")).enter());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "only two at once");
        drop(one);
        let third = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("a freed slot is taken")
            .expect("join");
        assert!(third.is_ok());
    }

    #[tokio::test]
    async fn failures_back_off_and_send_the_waiting_back_to_the_queue() {
        let timeout = Duration::from_secs(2);
        let origins = Origins::new(2, timeout);
        origins.record("https://a", true, Duration::from_millis(5));
        let passes = [
            queued(origins.admit("https://a")).enter().await.expect("1"),
            queued(origins.admit("https://a")).enter().await.expect("2"),
        ];
        let waiting = tokio::spawn(queued(origins.admit("https://a")).enter());
        // Both requests time out together: one failure window.
        origins.record("https://a", false, timeout);
        origins.record("https://a", false, timeout);
        assert_eq!(state(&origins, "https://a", |s| s.failures), 1);
        drop(passes);
        // The waiting delivery gets a slot but the origin is backing off: back to the queue.
        let back = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiting one is released")
            .expect("join");
        let after = back.err().expect("deferred");
        assert!(
            after >= Duration::from_millis(900) && after <= timeout,
            "{after:?}"
        );
        let (after, reason) = deferred(origins.admit("https://a"));
        assert_eq!(reason, "origin_backoff");
        assert!(after <= Duration::from_secs(3), "{after:?}");
        // After the backoff, one probe; a slow answer is a failure too, and backs off longer.
        state(&origins, "https://a", |s| s.until = None);
        let probe = queued(origins.admit("https://a"))
            .enter()
            .await
            .expect("probe");
        assert_eq!(deferred(origins.admit("https://a")).1, "origin_busy");
        origins.record("https://a", true, timeout);
        drop(probe);
        let (after, _) = deferred(origins.admit("https://a"));
        assert!(after >= Duration::from_secs(2), "{after:?}");
        // A timely answer ends it.
        state(&origins, "https://a", |s| s.until = None);
        let probe = queued(origins.admit("https://a"))
            .enter()
            .await
            .expect("probe");
        origins.record("https://a", true, Duration::from_millis(5));
        drop(probe);
        let _a = queued(origins.admit("https://a"));
        let _b = queued(origins.admit("https://a"));
        assert_eq!(origins.0.state.lock().waiting, 2);
    }
}
