//! Scripted answers: what a test wants a provider to say instead of "accepted".

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// A scripted answer, rendered in each provider's own error format:
///
/// - APNs: `{"reason": reason}`, plus `"timestamp"` (now, in milliseconds) when `status` is 410.
/// - FCM: Google's error envelope, with `reason` as the `FcmError.errorCode` detail
///   (see [`crate::fcm::FcmErrorReply`] for full control over the body).
/// - Web Push: `reason` as a plain-text body.
///
/// `retry_after_secs` becomes a `Retry-After` header. A status below 300 means "accept as
/// usual", which lets a script end with a success in the middle of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub retry_after_secs: Option<u64>,
}

impl Reply {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after_secs: None,
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

/// Per-token queues of scripted replies. Scripts for the same token queue up behind each other
/// rather than replace each other, so a test can say "two 503s, then one 429".
pub(crate) struct ScriptBook<R> {
    queues: Mutex<HashMap<String, VecDeque<(R, usize)>>>,
}

impl<R: Clone> ScriptBook<R> {
    pub(crate) fn new() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn push(&self, token: &str, reply: R, times: usize) {
        if times == 0 {
            return;
        }
        self.queues
            .lock()
            .entry(token.to_owned())
            .or_default()
            .push_back((reply, times));
    }

    /// The reply for the next request to `token`, consuming one use of it.
    pub(crate) fn take(&self, token: &str) -> Option<R> {
        let mut queues = self.queues.lock();
        let queue = queues.get_mut(token)?;
        let (reply, left) = queue.front_mut()?;
        let reply = reply.clone();
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        if queue.is_empty() {
            queues.remove(token);
        }
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_queue_and_run_out() {
        let book = ScriptBook::new();
        book.push("t", 1, 2);
        book.push("t", 2, 1);
        book.push("t", 3, 0);
        assert_eq!(book.take("t"), Some(1));
        assert_eq!(book.take("other"), None);
        assert_eq!(book.take("t"), Some(1));
        assert_eq!(book.take("t"), Some(2));
        assert_eq!(book.take("t"), None);
    }
}
