//! Exponential backoff with jitter, bounded, and at least what the provider asked for.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The wait before attempt number `attempts + 1`: `base · 2^attempts`, capped at `max`, with
    /// "equal jitter" (half fixed, half random) so that pushes failed together do not retry in
    /// lockstep; never shorter than the provider's `Retry-After`.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with(attempts, retry_after, rand::rng().random_range(0.0..=1.0))
    }

    /// [`Backoff::delay`] with the random part given: `jitter` in `0.0..=1.0` picks where in
    /// the upper half the wait falls.
    pub fn delay_with(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempts.min(30)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = exp / 2;
        let spread = half.as_millis().max(1) as f64;
        let delay = half + Duration::from_millis((spread * jitter.clamp(0.0, 1.0)).round() as u64);
        retry_after.map_or(delay, |after| delay.max(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for attempts in 0..40 {
            let d = b.delay(attempts, None);
            let exp = Duration::from_secs(1u64 << attempts.min(6)).min(b.max);
            assert!(
                d >= exp / 2 && d <= exp + Duration::from_millis(1),
                "{attempts}: {d:?}"
            );
        }
        assert!(b.delay(0, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        let spread: std::collections::HashSet<_> = (0..50).map(|_| b.delay(5, None)).collect();
        assert!(spread.len() > 1, "jitter");
    }
}
