//! Per-installation rate limits: requests and pushes per minute, and how many registrations an
//! installation may hold.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Per-installation limits, per minute.
#[derive(Clone, Copy, Debug)]
pub struct RelayLimits {
    pub requests_per_minute: u32,
    pub pushes_per_minute: u32,
    pub max_registrations: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            pushes_per_minute: 1200,
            max_registrations: 100_000,
        }
    }
}

/// Token buckets per installation (this node's share; several nodes each allow the limit).
pub struct RateLimits {
    pub limits: RelayLimits,
    requests: DefaultKeyedRateLimiter<String>,
    pushes: DefaultKeyedRateLimiter<String>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            requests: RateLimiter::dashmap(per_minute(limits.requests_per_minute)),
            pushes: RateLimiter::dashmap(per_minute(limits.pushes_per_minute)),
        }
    }

    /// Takes one request from `key`'s budget, or says how long to wait.
    pub fn request(&self, key: &str) -> Result<(), Duration> {
        check(&self.requests, key)
    }

    /// Takes one push from the installation's budget, or says how long to wait.
    pub fn push(&self, key: &str) -> Result<(), Duration> {
        check(&self.pushes, key)
    }
}

fn check(limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), Duration> {
    limiter
        .check_key(&key.to_owned())
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_installation() {
        let limits = RateLimits::new(RelayLimits {
            requests_per_minute: 2,
            pushes_per_minute: 1,
            max_registrations: 1,
        });
        assert!(limits.request("a").is_ok());
        assert!(limits.request("a").is_ok());
        let wait = limits.request("a").expect_err("third request");
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limits.request("b").is_ok(), "limits are per installation");
        assert!(limits.push("a").is_ok());
        assert!(limits.push("a").is_err());
    }
}
