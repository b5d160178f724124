//! What both leased queues (the delivery queue and the relay outbox) do alike: decide between a
//! retry and giving up ([`next_step`], pure), and the worker loop that claims a batch, works it
//! and sleeps until the next row is due or it is woken ([`run`]). The SQL behind them is the
//! store's `leased` module.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::store::{now_ms, StoreError};

/// What becomes of a row whose attempt failed but may succeed later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// The next attempt would come after the maximum age: give up.
    Expire,
}

/// How failed attempts are retried, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// A row older than this is dropped instead of tried (again).
    pub max_age: Duration,
}

impl RetryPolicy {
    /// Whether a row made at `created_ms` is past the maximum age at `now_ms`, and so is dropped
    /// without an attempt.
    pub fn expired(&self, created_ms: i64, now_ms: i64) -> bool {
        let age = u64::try_from(now_ms.saturating_sub(created_ms)).unwrap_or(0);
        Duration::from_millis(age) > self.max_age
    }

    /// [`next_step`] with random jitter.
    pub fn next_step(
        &self,
        attempts: u32,
        created_ms: i64,
        now_ms: i64,
        retry_after: Option<Duration>,
    ) -> Step {
        let jitter = rand::Rng::random_range(&mut rand::rng(), 0.0..=1.0);
        next_step(
            attempts,
            created_ms,
            now_ms,
            retry_after,
            self,
            JitterFraction(jitter),
        )
    }
}

/// Where in its jitter range a backoff falls, `0.0..=1.0` (see [`Backoff::delay_with`]).
#[derive(Clone, Copy, Debug)]
pub struct JitterFraction(pub f64);

/// After attempt number `attempts + 1` of a row made at `created_ms` failed at `now_ms`: when
/// to try again (the backoff for that many attempts, never sooner than the provider's
/// `Retry-After`), or to give up if that would be later than the row's maximum age.
pub fn next_step(
    attempts: u32,
    created_ms: i64,
    now_ms: i64,
    retry_after: Option<Duration>,
    policy: &RetryPolicy,
    jitter: JitterFraction,
) -> Step {
    let delay = policy.backoff.delay_with(attempts, retry_after, jitter.0);
    let at = now_ms.saturating_add(millis(delay));
    let deadline = created_ms.saturating_add(millis(policy.max_age));
    if at > deadline {
        Step::Expire
    } else {
        Step::RetryAt(at)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A queue's worker, as the loop in [`run`] drives it.
pub(crate) trait LeasedWork: Send + Sync + 'static {
    type Item: Send;
    /// For logs: "push queue", "relay outbox".
    const NAME: &'static str;

    /// How many more items may be claimed now; 0 while every slot is busy.
    fn room(&self) -> usize;

    /// Claims up to `limit` due items.
    fn claim(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Self::Item>, StoreError>> + Send;

    /// Works a claimed batch; each item is settled, retried or released here or by a task
    /// started here.
    fn process(&self, items: Vec<Self::Item>) -> impl Future<Output = ()> + Send;

    /// After every round: metrics, housekeeping.
    fn after_round(&self) -> impl Future<Output = ()> + Send;

    /// When the next item falls due, if any.
    fn next_due_ms(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
}

/// How the loop paces itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// The most items one claim takes.
    pub batch: u32,
    /// Right after a round that found work, the room the next one waits for (unless the
    /// queue's work wakes it first): a round per freed slot would cost a round of statements
    /// per delivery.
    pub min_batch: usize,
    /// How often the queue is looked at when nothing wakes the worker.
    pub poll_interval: Duration,
}

/// How long to wait for a free slot when all are busy.
const FULL_WAIT: Duration = Duration::from_millis(20);

/// The shortest wait after a round that found nothing; new work wakes the loop at once.
const IDLE_FLOOR: Duration = Duration::from_millis(2);

/// Claims, works and waits until `stop` turns true: straight on while a round found work and
/// there is room for more, else until the next item is due (at most `poll_interval`), `wake` is
/// notified, or `stop` changes.
pub(crate) async fn run<W: LeasedWork>(
    work: Arc<W>,
    pace: Pace,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            break;
        }
        let limit = u32::try_from(work.room())
            .unwrap_or(u32::MAX)
            .min(pace.batch);
        let claimed = if limit == 0 {
            Vec::new()
        } else {
            match work.claim(now_ms(), limit).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!(error = %e, queue = W::NAME, "claiming failed");
                    Vec::new()
                }
            }
        };
        let got_any = !claimed.is_empty();
        if got_any {
            work.process(claimed).await;
        }
        work.after_round().await;
        let room = work.room();
        if got_any && room >= pace.min_batch {
            continue;
        }
        let wait = if room > 0 && !got_any {
            // Not sooner than IDLE_FLOOR: what is due but was not claimed (another node holds
            // it) must not turn the loop into a busy one.
            until_due(work.next_due_ms().await, pace.poll_interval).max(IDLE_FLOOR)
        } else {
            FULL_WAIT
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How long until `due`, at most `poll` (and `poll` when nothing is due or the store failed).
fn until_due(due: Result<Option<i64>, StoreError>, poll: Duration) -> Duration {
    match due {
        Ok(Some(due)) => {
            let ms = due.saturating_sub(now_ms()).clamp(0, millis(poll));
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
        _ => poll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000;

    fn policy(max_age_secs: u64) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            max_age: Duration::from_secs(max_age_secs),
        }
    }

    fn step(attempts: u32, created: i64, now: i64, after: Option<u64>, jitter: f64) -> Step {
        next_step(
            attempts,
            created,
            now,
            after.map(Duration::from_secs),
            &policy(3600),
            JitterFraction(jitter),
        )
    }

    #[test]
    fn backs_off_exponentially_within_the_jitter_range() {
        // base · 2^attempts, half of it fixed and half jitter.
        assert_eq!(step(0, 0, 10 * SECOND, None, 0.0), Step::RetryAt(10_500));
        assert_eq!(step(0, 0, 10 * SECOND, None, 1.0), Step::RetryAt(11_000));
        assert_eq!(step(3, 0, 10 * SECOND, None, 0.0), Step::RetryAt(14_000));
        assert_eq!(step(3, 0, 10 * SECOND, None, 1.0), Step::RetryAt(18_000));
        // Capped at the backoff's maximum, however many attempts.
        assert_eq!(step(40, 0, 10 * SECOND, None, 1.0), Step::RetryAt(70_000));
    }

    #[test]
    fn never_sooner_than_retry_after() {
        assert_eq!(
            step(0, 0, 10 * SECOND, Some(30), 1.0),
            Step::RetryAt(40_000)
        );
        // A Retry-After shorter than the backoff changes nothing.
        assert_eq!(step(3, 0, 10 * SECOND, Some(1), 0.0), Step::RetryAt(14_000));
    }

    #[test]
    fn expires_when_the_retry_would_come_after_the_maximum_age() {
        let hour = 3600 * SECOND;
        // Due exactly at the deadline: still tried.
        assert_eq!(step(0, 0, hour - 1_000, None, 1.0), Step::RetryAt(hour));
        assert_eq!(step(0, 0, hour - 999, None, 1.0), Step::Expire);
        // A Retry-After reaching past the deadline expires a young row too.
        assert_eq!(step(0, 0, 0, Some(3601), 0.0), Step::Expire);
        // The age counts from creation, whatever the number of attempts.
        assert_eq!(
            step(0, 5 * hour, 6 * hour - 1_000, None, 1.0),
            Step::RetryAt(6 * hour)
        );
    }

    #[test]
    fn rows_past_the_maximum_age_are_not_tried() {
        let p = policy(60);
        assert!(!p.expired(0, 60 * SECOND));
        assert!(p.expired(0, 60 * SECOND + 1));
        // A clock that went backwards makes no row old.
        assert!(!p.expired(10 * SECOND, 0));
    }

    #[test]
    fn the_random_step_stays_in_range() {
        let p = policy(3600);
        for attempts in 0..10 {
            match p.next_step(attempts, 0, 0, None) {
                Step::RetryAt(at) => {
                    let exp = (1_000i64 << attempts).min(60_000);
                    assert!(at >= exp / 2 && at <= exp, "{attempts}: {at}");
                }
                Step::Expire => panic!("{attempts}: expired"),
            }
        }
    }

    /// A queue in memory: items are claimed in order, `room` at a time.
    struct Memory {
        queue: parking_lot::Mutex<Vec<u32>>,
        done: parking_lot::Mutex<Vec<u32>>,
        processed: Notify,
    }

    impl LeasedWork for Memory {
        type Item = u32;
        const NAME: &'static str = "test queue";

        fn room(&self) -> usize {
            2
        }

        async fn claim(&self, _now_ms: i64, limit: u32) -> Result<Vec<u32>, StoreError> {
            let mut queue = self.queue.lock();
            let n = queue.len().min(limit as usize);
            Ok(queue.drain(..n).collect())
        }

        async fn process(&self, items: Vec<u32>) {
            self.done.lock().extend(items);
            self.processed.notify_one();
        }

        async fn after_round(&self) {}

        async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
    }

    /// Waits until `memory` has processed `want`, for at most five seconds.
    async fn processed(memory: &Memory, want: &[u32]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while memory.done.lock().as_slice() != want {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let woke = tokio::time::timeout(left, memory.processed.notified()).await;
            assert!(woke.is_ok(), "processed {:?}", memory.done.lock());
        }
    }

    #[tokio::test]
    async fn the_loop_drains_in_batches_wakes_on_notify_and_stops() {
        let memory = Arc::new(Memory {
            queue: parking_lot::Mutex::new(vec![1, 2, 3]),
            done: parking_lot::Mutex::new(Vec::new()),
            processed: Notify::new(),
        });
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        // Polling once an hour: only a wake-up can find the fourth item in time.
        let pace = Pace {
            batch: 10,
            min_batch: 1,
            poll_interval: Duration::from_secs(3600),
        };
        let worker = tokio::spawn(run(memory.clone(), pace, wake.clone(), stopped));
        processed(&memory, &[1, 2, 3]).await;
        memory.queue.lock().push(4);
        wake.notify_one();
        processed(&memory, &[1, 2, 3, 4]).await;
        stop.send_replace(true);
        let ended = tokio::time::timeout(Duration::from_secs(5), worker).await;
        assert!(matches!(ended, Ok(Ok(()))), "the loop stops when told");
    }

    #[test]
    fn waits_until_due_but_no_longer_than_the_poll_interval() {
        let poll = Duration::from_secs(1);
        assert_eq!(until_due(Ok(None), poll), poll);
        assert_eq!(until_due(Ok(Some(0)), poll), Duration::ZERO);
        assert_eq!(until_due(Ok(Some(now_ms() + 60_000)), poll), poll);
        let soon = until_due(Ok(Some(now_ms() + 300)), poll);
        assert!(soon <= Duration::from_millis(300) && soon > Duration::from_millis(200));
    }
}
