//! What the delivery worker did lately, kept in memory for the admin page: each device's last
//! delivery attempts, each provider's last errors, and drops counted by reason.
//!
//! Off until [`Journal::enable`] (the admin page, its only reader, turns it on), so a service
//! without the page keeps nothing. Per process and lost on restart, on purpose: writing every
//! attempt to the database would double the queue's writes. Everything here is bounded: [`MAX_DEVICES`] devices (the least
//! recently attempted is forgotten first) with [`ATTEMPTS_PER_DEVICE`] attempts each,
//! [`ERRORS_PER_PROVIDER`] errors per provider, and one counter per provider and drop reason
//! (both are fixed label sets).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Devices whose attempts are remembered.
pub const MAX_DEVICES: usize = 10_000;
/// Attempts remembered per device.
pub const ATTEMPTS_PER_DEVICE: usize = 10;
/// Errors remembered per provider.
pub const ERRORS_PER_PROVIDER: usize = 10;
/// Longest detail kept (a provider's error text is capped, not the whole answer).
const MAX_DETAIL: usize = 200;

/// One delivery attempt, or a delivery given up without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: i64,
    pub message_id: String,
    pub push_type: u8,
    /// `apns`, `fcm`, `webpush`, or `unknown` for an unregistered device.
    pub provider: &'static str,
    /// `delivered`, `retry`, `misconfigured`, or why it was dropped: `gone`, `rejected`,
    /// `expired`, `no_provider`, `unregistered`.
    pub outcome: &'static str,
    /// The provider's reason, when it gave one.
    pub detail: String,
    /// Attempts made before this one.
    pub earlier_attempts: u32,
}

/// A provider's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    pub at_ms: i64,
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Default)]
struct Devices {
    /// Each device's attempts, newest last, and its place in `order`.
    attempts: HashMap<String, (u64, VecDeque<Attempt>)>,
    /// Devices by when they were last attempted (a sequence number), oldest first.
    order: BTreeMap<u64, String>,
    next: u64,
}

/// The recorder; one per push service.
#[derive(Default)]
pub struct Journal {
    enabled: AtomicBool,
    devices: Mutex<Devices>,
    errors: Mutex<HashMap<&'static str, VecDeque<ProviderError>>>,
    dropped: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

fn capped(detail: &str) -> String {
    match detail.char_indices().nth(MAX_DETAIL) {
        Some((cut, _)) => format!("{}…", &detail[..cut]),
        None => detail.to_owned(),
    }
}

impl Journal {
    /// Starts recording.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    fn on(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Records an attempt on a device.
    pub fn attempt(&self, device_id: &str, mut attempt: Attempt) {
        if !self.on() {
            return;
        }
        attempt.detail = capped(&attempt.detail);
        let mut devices = self.devices.lock();
        let seq = devices.next;
        devices.next += 1;
        let previous = devices.attempts.get(device_id).map(|(s, _)| *s);
        if let Some(previous) = previous {
            devices.order.remove(&previous);
        }
        devices.order.insert(seq, device_id.to_owned());
        let entry = devices
            .attempts
            .entry(device_id.to_owned())
            .or_insert_with(|| (seq, VecDeque::new()));
        entry.0 = seq;
        if entry.1.len() == ATTEMPTS_PER_DEVICE {
            entry.1.pop_front();
        }
        entry.1.push_back(attempt);
        while devices.attempts.len() > MAX_DEVICES {
            let Some((_, oldest)) = devices.order.pop_first() else {
                break;
            };
            devices.attempts.remove(&oldest);
        }
    }

    /// A device's remembered attempts, newest first.
    pub fn attempts(&self, device_id: &str) -> Vec<Attempt> {
        self.devices
            .lock()
            .attempts
            .get(device_id)
            .map(|(_, a)| a.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// How many devices have attempts remembered.
    pub fn devices(&self) -> usize {
        self.devices.lock().attempts.len()
    }

    /// Records a provider's error.
    pub fn provider_error(
        &self,
        provider: &'static str,
        outcome: &'static str,
        detail: &str,
        at_ms: i64,
    ) {
        if !self.on() {
            return;
        }
        let mut errors = self.errors.lock();
        let ring = errors.entry(provider).or_default();
        if ring.len() == ERRORS_PER_PROVIDER {
            ring.pop_front();
        }
        ring.push_back(ProviderError {
            at_ms,
            outcome,
            detail: capped(detail),
        });
    }

    /// A provider's remembered errors, newest first.
    pub fn provider_errors(&self, provider: &str) -> Vec<ProviderError> {
        self.errors
            .lock()
            .get(provider)
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts a dropped push.
    pub fn dropped(&self, provider: &'static str, reason: &'static str) {
        if !self.on() {
            return;
        }
        *self.dropped.lock().entry((provider, reason)).or_default() += 1;
    }

    /// Pushes dropped since the start, by provider and reason.
    pub fn dropped_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.dropped
            .lock()
            .iter()
            .map(|(&(p, r), &n)| (p, r, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: i64) -> Attempt {
        Attempt {
            at_ms: n,
            message_id: format!("m{n}"),
            push_type: 5,
            provider: "fcm",
            outcome: "delivered",
            detail: String::new(),
            earlier_attempts: 0,
        }
    }

    fn journal() -> Journal {
        let journal = Journal::default();
        journal.enable();
        journal
    }

    #[test]
    fn nothing_is_kept_until_enabled() {
        let journal = Journal::default();
        journal.attempt("d", attempt(1));
        journal.provider_error("fcm", "retry", "503", 1);
        journal.dropped("fcm", "gone");
        assert!(journal.attempts("d").is_empty());
        assert!(journal.provider_errors("fcm").is_empty());
        assert!(journal.dropped_counts().is_empty());
    }

    #[test]
    fn a_device_keeps_its_last_attempts_newest_first() {
        let journal = journal();
        for n in 0..(ATTEMPTS_PER_DEVICE as i64 + 3) {
            journal.attempt("d", attempt(n));
        }
        let seen = journal.attempts("d");
        assert_eq!(seen.len(), ATTEMPTS_PER_DEVICE);
        assert_eq!(seen[0].at_ms, ATTEMPTS_PER_DEVICE as i64 + 2);
        assert_eq!(seen.last().unwrap().at_ms, 3);
        assert!(journal.attempts("other").is_empty());
    }

    #[test]
    fn the_least_recently_attempted_device_is_forgotten_first() {
        let journal = journal();
        for n in 0..MAX_DEVICES {
            journal.attempt(&format!("d{n}"), attempt(n as i64));
        }
        // d0 is attempted again, so d1 is now the oldest.
        journal.attempt("d0", attempt(-1));
        journal.attempt("new", attempt(0));
        assert_eq!(journal.devices(), MAX_DEVICES);
        assert_eq!(journal.attempts("d0").len(), 2);
        assert!(journal.attempts("d1").is_empty());
        assert_eq!(journal.attempts("new").len(), 1);
    }

    #[test]
    fn provider_errors_and_drops_are_bounded_and_counted() {
        let journal = journal();
        for n in 0..25 {
            journal.provider_error("apns", "retry", &format!("e{n}"), n);
        }
        let errors = journal.provider_errors("apns");
        assert_eq!(errors.len(), ERRORS_PER_PROVIDER);
        assert_eq!(errors[0].detail, "e24");
        journal.provider_error("fcm", "rejected", &"x".repeat(10_000), 0);
        assert!(journal.provider_errors("fcm")[0].detail.chars().count() <= MAX_DETAIL + 1);
        journal.dropped("fcm", "gone");
        journal.dropped("fcm", "gone");
        journal.dropped("apns", "expired");
        assert_eq!(
            journal.dropped_counts(),
            vec![("apns", "expired", 1), ("fcm", "gone", 2)]
        );
    }
}
