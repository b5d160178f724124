//! Per-origin admission for Web Push and UnifiedPush, whose endpoints are user-supplied: at
//! most `limit` requests in flight to one origin (scheme, host, port), and a backoff once the
//! origin stops answering, so a slow or silent push service delays only its own subscriptions.
//!
//! The worker asks before it starts a delivery ([`Origins::admit`]); a delivery that is not
//! admitted is not awaited but put back in the durable queue for later (deferred, its attempts
//! unchanged), so it never holds a slot other origins need. After a request, its result is
//! recorded ([`Origins::record`]): a request that got no answer (connect failure, timeout) or
//! answered only after half the request timeout is a failure. Failures back the origin off,
//! doubling from one request timeout up to [`MAX_BACKOFF`] (failures of requests that were in
//! flight together count once); after the backoff a single request probes the origin, and one
//! success ends it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng as _;
use url::Url;

use crate::backoff::Backoff;

/// The longest an origin is backed off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Origins remembered before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

/// The origin a push endpoint's requests are limited by: `https://host:port`.
pub fn origin_key(endpoint: &Url) -> String {
    endpoint.origin().ascii_serialization()
}

/// Whether a delivery may start now.
pub enum Admission {
    /// Go ahead; the pass frees the slot when dropped.
    Admitted(Pass),
    /// Not now: put it back in the queue until `after` has passed.
    Deferred {
        after: Duration,
        /// For metrics: `origin_busy` or `origin_backoff`.
        reason: &'static str,
    },
}

#[derive(Default)]
struct State {
    in_flight: usize,
    /// Failure windows in a row; 0 when the origin is healthy.
    failures: u32,
    /// Backed off until then.
    until: Option<Instant>,
}

struct Inner {
    limit: usize,
    /// How long a request may take: the first backoff, and the delay for a busy origin.
    timeout: Duration,
    state: Mutex<HashMap<String, State>>,
}

/// The per-origin limits and backoff, shared by the worker and the Web Push sender.
#[derive(Clone)]
pub struct Origins(Arc<Inner>);

/// A slot of an origin's limit, held while its request runs.
pub struct Pass {
    origins: Arc<Inner>,
    key: String,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut state = self.origins.state.lock();
        if let Some(s) = state.get_mut(&self.key) {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 && s.failures == 0 {
                state.remove(&self.key);
            }
        }
    }
}

impl Origins {
    /// `limit` requests in flight per origin; `timeout` is the Web Push request timeout.
    pub fn new(limit: usize, timeout: Duration) -> Self {
        Self(Arc::new(Inner {
            limit: limit.max(1),
            timeout,
            state: Mutex::new(HashMap::new()),
        }))
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.0.timeout.max(Duration::from_secs(1)),
            max: MAX_BACKOFF,
        }
    }

    /// How long a delivery to a busy origin waits before it is looked at again: a fraction of
    /// the request timeout (the slots free within it), with jitter so the waiting ones spread.
    fn busy_delay(&self) -> Duration {
        let base = (self.0.timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        base + base.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Takes a slot of `key`'s origin, or says how long to wait.
    pub fn admit(&self, key: &str) -> Admission {
        let now = Instant::now();
        let mut state = self.0.state.lock();
        if state.len() >= MAX_TRACKED && !state.contains_key(key) {
            state.retain(|_, s| s.in_flight > 0 || s.until.is_some_and(|u| u > now));
        }
        let s = state.entry(key.to_owned()).or_default();
        if let Some(until) = s.until.filter(|u| *u > now) {
            // Spread the deferred ones over a second past the end of the backoff.
            let spread = Duration::from_millis(rand::rng().random_range(0..=1000));
            return Admission::Deferred {
                after: until - now + spread,
                reason: "origin_backoff",
            };
        }
        // After a failure, one request at a time probes the origin until one succeeds.
        let limit = if s.failures > 0 { 1 } else { self.0.limit };
        if s.in_flight >= limit {
            return Admission::Deferred {
                after: self.busy_delay(),
                reason: "origin_busy",
            };
        }
        s.in_flight += 1;
        Admission::Admitted(Pass {
            origins: self.0.clone(),
            key: key.to_owned(),
        })
    }

    /// Records how a request to `key`'s origin went: `answered` (any HTTP status) and how long
    /// it took.
    pub fn record(&self, key: &str, answered: bool, took: Duration) {
        let healthy = answered && took <= self.0.timeout / 2;
        let now = Instant::now();
        let mut state = self.0.state.lock();
        if healthy {
            if let Some(s) = state.get_mut(key) {
                if s.failures > 0 {
                    tracing::info!(origin = key, "web push origin answers again");
                }
                s.failures = 0;
                s.until = None;
                if s.in_flight == 0 {
                    state.remove(key);
                }
            }
            return;
        }
        let s = state.entry(key.to_owned()).or_default();
        // Requests that were in flight together fail together: one window counts once.
        if s.until.is_some_and(|u| u > now) {
            return;
        }
        let wait = self.backoff().delay(s.failures, None);
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

    fn admitted(a: Admission) -> Pass {
        match a {
            Admission::Admitted(pass) => pass,
            Admission::Deferred { reason, .. } => panic!("deferred: {reason}"),
        }
    }

    fn deferred(a: Admission) -> (Duration, &'static str) {
        match a {
            Admission::Admitted(_) => panic!("admitted"),
            Admission::Deferred { after, reason } => (after, reason),
        }
    }

    #[test]
    fn a_busy_origin_defers_only_its_own_deliveries() {
        let origins = Origins::new(2, Duration::from_secs(4));
        let a1 = admitted(origins.admit("https://a"));
        let _a2 = admitted(origins.admit("https://a"));
        let (after, reason) = deferred(origins.admit("https://a"));
        assert_eq!(reason, "origin_busy");
        assert!(after >= Duration::from_secs(1) && after <= Duration::from_secs(2));
        // Another origin is not affected.
        let _b = admitted(origins.admit("https://b"));
        // A slot freed is a slot taken.
        drop(a1);
        let _a3 = admitted(origins.admit("https://a"));
    }

    #[test]
    fn failures_back_off_then_one_probe_then_healthy_again() {
        let timeout = Duration::from_secs(2);
        let origins = Origins::new(4, timeout);
        let passes: Vec<Pass> = (0..4)
            .map(|_| admitted(origins.admit("https://a")))
            .collect();
        // Four requests time out together: one failure window.
        for _ in &passes {
            origins.record("https://a", false, timeout);
        }
        drop(passes);
        let (after, reason) = deferred(origins.admit("https://a"));
        assert_eq!(reason, "origin_backoff");
        // First backoff: half to all of one timeout, plus up to a second of spread.
        assert!(after >= Duration::from_millis(900) && after <= Duration::from_secs(3));
        // Once the backoff is over, a single probe goes.
        origins
            .0
            .state
            .lock()
            .get_mut("https://a")
            .expect("state")
            .until = None;
        let probe = admitted(origins.admit("https://a"));
        assert_eq!(deferred(origins.admit("https://a")).1, "origin_busy");
        // A slow answer is a failure too: the next backoff is longer.
        origins.record("https://a", true, timeout);
        drop(probe);
        let (after, _) = deferred(origins.admit("https://a"));
        assert!(after >= Duration::from_secs(2), "{after:?}");
        // A success ends it; the origin is forgotten once idle.
        origins
            .0
            .state
            .lock()
            .get_mut("https://a")
            .expect("state")
            .until = None;
        let probe = admitted(origins.admit("https://a"));
        origins.record("https://a", true, Duration::from_millis(5));
        drop(probe);
        assert!(origins.0.state.lock().is_empty());
        let _all: Vec<Pass> = (0..4)
            .map(|_| admitted(origins.admit("https://a")))
            .collect();
    }
}
