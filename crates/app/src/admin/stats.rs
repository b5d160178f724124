//! The live figures the admin page shows that nothing else keeps in process: notifications
//! accepted per 5 seconds over the last 15 minutes, and recent `/send` latencies. Both are
//! fixed-size (180 buckets, 1,024 samples), recorded by a middleware on the API routes while
//! the admin page is on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;
use parking_lot::Mutex;

/// Width of one bucket of the notification rate.
pub const BUCKET: Duration = Duration::from_secs(5);
/// Buckets kept: 15 minutes.
pub const BUCKETS: usize = 180;
/// `/send` latencies kept for the percentiles.
pub const LATENCY_SAMPLES: usize = 1024;

/// Counts per [`BUCKET`], keyed by the bucket's number since the epoch so that a bucket
/// reused after a quiet spell starts from zero.
struct Ring {
    buckets: [(u64, u64); BUCKETS],
}

impl Ring {
    fn add(&mut self, slot: u64, n: u64) {
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.0 != slot {
            *bucket = (slot, 0);
        }
        bucket.1 += n;
    }

    /// The counts of the [`BUCKETS`] buckets ending with `now`'s, oldest first.
    fn window(&self, now: u64) -> Vec<u64> {
        let first = now.saturating_sub(BUCKETS as u64 - 1);
        (first..=now)
            .map(|slot| {
                let bucket = self.buckets[(slot % BUCKETS as u64) as usize];
                if bucket.0 == slot {
                    bucket.1
                } else {
                    0
                }
            })
            .collect()
    }
}

pub struct LiveStats {
    started: Instant,
    notifications: Mutex<Ring>,
    send_latency: Mutex<VecDeque<Duration>>,
}

/// `/send` latency percentiles over the recent samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

fn slot_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / BUCKET.as_secs())
}

impl Default for LiveStats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            notifications: Mutex::new(Ring {
                buckets: [(u64::MAX, 0); BUCKETS],
            }),
            send_latency: Mutex::new(VecDeque::with_capacity(LATENCY_SAMPLES)),
        }
    }
}

impl LiveStats {
    /// Counts `n` accepted notifications at `at`.
    pub fn notifications_at(&self, at: SystemTime, n: u64) {
        self.notifications.lock().add(slot_of(at), n);
    }

    /// Notifications per bucket over the last 15 minutes as of `now`, oldest first.
    pub fn notification_window(&self, now: SystemTime) -> Vec<u64> {
        self.notifications.lock().window(slot_of(now))
    }

    pub fn send_took(&self, took: Duration) {
        let mut samples = self.send_latency.lock();
        if samples.len() == LATENCY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(took);
    }

    pub fn send_latency(&self) -> Option<Latency> {
        let mut samples: Vec<Duration> = self.send_latency.lock().iter().copied().collect();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            samples: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        })
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// What an API request counts as, for these figures.
fn kind(method: &Method, path: &str) -> Option<bool> {
    if method != Method::POST {
        return None;
    }
    match path {
        // A vault server's notification: counted, and timed.
        "/send" | "/notifications/send" => Some(true),
        // A device push through the push API (or the relay): counted.
        _ if path.ends_with("/push/send") => Some(false),
        _ => None,
    }
}

/// The middleware: counts every accepted notification and times `/send`.
pub async fn record(State(stats): State<Arc<LiveStats>>, request: Request, next: Next) -> Response {
    let Some(timed) = kind(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let response = next.run(request).await;
    if response.status().is_success() {
        stats.notifications_at(SystemTime::now(), 1);
        if timed {
            stats.send_took(started.elapsed());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_15_minutes_and_forgets_older_buckets() {
        let stats = LiveStats::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        stats.notifications_at(t0, 3);
        stats.notifications_at(t0 + Duration::from_secs(2), 1);
        stats.notifications_at(t0 + Duration::from_secs(60), 5);
        let window = stats.notification_window(t0 + Duration::from_secs(60));
        assert_eq!(window.len(), BUCKETS);
        assert_eq!(window[BUCKETS - 1], 5);
        assert_eq!(window[BUCKETS - 13], 4);
        assert_eq!(window.iter().sum::<u64>(), 9);
        // 15 minutes on, the first bucket's slot is reused: its old count is gone.
        let later = t0 + Duration::from_secs(900);
        stats.notifications_at(later, 1);
        let window = stats.notification_window(later);
        assert_eq!(window.iter().sum::<u64>(), 6);
        assert_eq!(window[BUCKETS - 1], 1);
    }

    #[test]
    fn latency_percentiles_come_from_the_last_samples() {
        let stats = LiveStats::default();
        assert!(stats.send_latency().is_none());
        for ms in 1..=100 {
            stats.send_took(Duration::from_millis(ms));
        }
        let l = stats.send_latency().unwrap();
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50, Duration::from_millis(51));
        assert_eq!(l.p99, Duration::from_millis(99));
        for _ in 0..LATENCY_SAMPLES {
            stats.send_took(Duration::from_millis(7));
        }
        let l = stats.send_latency().unwrap();
        assert_eq!(
            (l.samples, l.max),
            (LATENCY_SAMPLES, Duration::from_millis(7))
        );
    }

    #[test]
    fn only_notifications_are_counted() {
        assert_eq!(kind(&Method::POST, "/send"), Some(true));
        assert_eq!(kind(&Method::POST, "/notifications/send"), Some(true));
        assert_eq!(kind(&Method::POST, "/api/push/send"), Some(false));
        assert_eq!(kind(&Method::POST, "/push/register"), None);
        assert_eq!(kind(&Method::GET, "/send"), None);
    }
}
