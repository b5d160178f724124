//! Adaptive concurrency per push provider. Each provider gets a [`Lane`]: at most `limit`
//! deliveries in flight, the limit moving with what the provider answers, additive increase
//! and multiplicative decrease (AIMD) as TCP moves its window:
//!
//! - a 429 ([`Feedback::Throttled`]) halves the limit, once per [`CUT_WINDOW`] so that the
//!   dozens of 429s answering one burst count as one signal, and pauses the lane until the
//!   Retry-After has passed ([`DEFAULT_PAUSE`] without one, never beyond [`MAX_PAUSE`]);
//! - every `limit` accepted deliveries raise it by one, back up to the configured maximum;
//! - anything else (a dead token, a server error, a network failure) says nothing about our
//!   rate and leaves the limit alone.
//!
//! A paused lane does not hold deliveries in memory: the caller asks [`Lane::paused_for`] and
//! puts the delivery back in the queue for that long, so a throttled provider ties up neither
//! memory nor the worker, and other providers' lanes keep going. A shrunk limit takes effect as
//! deliveries in flight come back; none is cancelled.
//!
//! Time is [`tokio::time::Instant`], so the worker's tests can pause and move it (tokio's
//! `test-util`); the tests here hand the lane explicit instants instead.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a lane pauses after a 429 that gave no Retry-After.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause a Retry-After can impose. A larger value is a broken or hostile server,
/// and a queue that stopped for days would look like an outage.
pub const MAX_PAUSE: Duration = Duration::from_secs(60 * 60);
/// Throttles closer together than this halve the limit once: the 429s answering one burst
/// arrive within a round trip of each other and describe one overload, not many.
pub const CUT_WINDOW: Duration = Duration::from_secs(1);

/// What the provider said about one delivery, as far as the lane cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// The provider took the push.
    Accepted,
    /// The provider answered 429, with its Retry-After if any.
    Throttled { retry_after: Option<Duration> },
    /// Anything else: says nothing about how fast we may send.
    Other,
}

/// One provider's lane: at most [`limit`](Lane::limit) deliveries in flight, the limit adapting
/// between 1 and the configured maximum (AIMD).
pub struct Lane {
    provider: &'static str,
    max: usize,
    state: Mutex<State>,
    /// The slots: `limit` permits, less those owed (see `State::owed`). Waiters are served
    /// first come, first served, one per freed slot (no herd woken per completion).
    slots: Arc<Semaphore>,
    /// A few slots beyond the limit for a small push that just arrived, so that it does not
    /// queue behind a big push's deliveries claimed ahead ([`Lane::try_express`]).
    express: Arc<Semaphore>,
}

/// Slots per lane beyond its limit for small new pushes.
pub const EXPRESS_SLOTS: usize = 16;

struct State {
    limit: usize,
    in_flight: usize,
    /// Permits out in flight that are retired when they come back, because the limit was cut
    /// below what was out.
    owed: usize,
    /// Accepted deliveries since the limit last changed; `limit` of them raise it by one.
    accepted: usize,
    paused_until: Option<Instant>,
    last_cut: Option<Instant>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Lane")
            .field("provider", &self.provider)
            .field("max", &self.max)
            .field("limit", &state.limit)
            .field("in_flight", &state.in_flight)
            .field("paused_until", &state.paused_until)
            .finish()
    }
}

impl Lane {
    /// A lane for `provider` (the metrics label) that starts at, and never exceeds, `max`
    /// deliveries in flight (at least 1).
    pub fn new(provider: &'static str, max: usize) -> Arc<Lane> {
        let max = max.max(1);
        let lane = Lane {
            provider,
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                owed: 0,
                accepted: 0,
                paused_until: None,
                last_cut: None,
            }),
            slots: Arc::new(Semaphore::new(max)),
            express: Arc::new(Semaphore::new(EXPRESS_SLOTS)),
        };
        lane.publish_limit(max);
        Arc::new(lane)
    }

    /// The provider this lane is for.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The most the limit can grow to.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The deliveries that may be in flight now.
    pub fn limit(&self) -> usize {
        self.state.lock().limit
    }

    /// The deliveries holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().in_flight
    }

    /// `Some(d)` while the provider asked us to hold off (a 429 with or without Retry-After):
    /// the caller puts the delivery back in the queue for `d` instead of waiting in memory.
    /// `None`: go ahead. A pause can begin while a caller waits in [`acquire`](Lane::acquire),
    /// so callers ask again once they hold a permit; dropping the permit unused is neutral.
    pub fn paused_for(&self) -> Option<Duration> {
        self.paused_for_at(Instant::now())
    }

    fn paused_for_at(&self, now: Instant) -> Option<Duration> {
        let until = self.state.lock().paused_until?;
        (until > now).then(|| until - now)
    }

    /// Waits for a slot (in flight < current limit), first come, first served. Cancel-safe:
    /// a slot is taken only when the future completes, so dropping it while it waits takes
    /// nothing.
    pub async fn acquire(self: &Arc<Self>) -> LanePermit {
        // The semaphore is never closed; were it, the lane would stop limiting, not block.
        let permit = self.slots.clone().acquire_owned().await.ok();
        self.state.lock().in_flight += 1;
        LanePermit {
            lane: self.clone(),
            permit,
            finished: false,
        }
    }

    /// One of the express slots if one is free, at once: a delivery of a small new push takes
    /// it instead of queueing behind the deliveries waiting for the lane. Not counted in
    /// [`Lane::in_flight`] nor adapted: at most [`EXPRESS_SLOTS`] more requests than the limit.
    pub fn try_express(&self) -> Option<OwnedSemaphorePermit> {
        self.express.clone().try_acquire_owned().ok()
    }

    /// Applies `feedback` (if any) and gives the slot back (or retires it, if the limit was
    /// cut below what is out).
    fn end(&self, permit: Option<OwnedSemaphorePermit>, feedback: Option<Feedback>, now: Instant) {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        self.adapt(&mut state, feedback, now);
        if let Some(permit) = permit {
            if state.owed > 0 {
                state.owed -= 1;
                permit.forget();
            }
            // Otherwise dropped below, after the lock: back to the next waiter.
            else {
                drop(state);
                drop(permit);
            }
        }
    }

    /// What the provider said about a delivery sent on an express slot: it adapts the lane as
    /// any other answer does (a 429 pauses everyone), without a slot to give back.
    pub fn report(&self, feedback: Feedback) {
        let mut state = self.state.lock();
        self.adapt(&mut state, Some(feedback), Instant::now());
    }

    /// Moves the limit and the pause by `feedback`.
    fn adapt(&self, state: &mut State, feedback: Option<Feedback>, now: Instant) {
        match feedback {
            Some(Feedback::Accepted) if state.limit < self.max => {
                state.accepted += 1;
                if state.accepted >= state.limit {
                    state.limit += 1;
                    state.accepted = 0;
                    if state.owed > 0 {
                        state.owed -= 1;
                    } else {
                        self.slots.add_permits(1);
                    }
                    self.publish_limit(state.limit);
                }
            }
            Some(Feedback::Throttled { retry_after }) => {
                metrics::counter!("pushwarden_push_throttled_total", "provider" => self.provider)
                    .increment(1);
                let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
                let until = now + pause;
                // A later, shorter Retry-After does not cut short an earlier, longer one.
                state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
                let cut_lately = state
                    .last_cut
                    .is_some_and(|cut| now.saturating_duration_since(cut) < CUT_WINDOW);
                if !cut_lately {
                    let cut = state.limit - (state.limit / 2).max(1);
                    state.limit -= cut;
                    // Free slots are retired now; the rest as they come back.
                    let retired = self.slots.forget_permits(cut);
                    state.owed += cut - retired;
                    state.last_cut = Some(now);
                    self.publish_limit(state.limit);
                }
                state.accepted = 0;
            }
            Some(Feedback::Accepted) | Some(Feedback::Other) | None => {}
        }
    }

    fn publish_limit(&self, limit: usize) {
        metrics::gauge!("pushwarden_push_provider_concurrency", "provider" => self.provider)
            .set(limit as f64);
    }
}

/// A slot in a [`Lane`], held while one delivery is in flight.
#[derive(Debug)]
pub struct LanePermit {
    lane: Arc<Lane>,
    permit: Option<OwnedSemaphorePermit>,
    finished: bool,
}

impl LanePermit {
    /// Ends the delivery with what the provider said; dropping the permit without it counts
    /// as neutral ([`Feedback::Other`]).
    pub fn finish(self, feedback: Feedback) {
        self.finish_at(feedback, Instant::now());
    }

    fn finish_at(mut self, feedback: Feedback, now: Instant) {
        self.finished = true;
        self.lane.end(self.permit.take(), Some(feedback), now);
    }
}

impl Drop for LanePermit {
    fn drop(&mut self) {
        if !self.finished {
            self.lane.end(self.permit.take(), None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    /// Long enough for a loaded machine; a correct lane answers at once.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// Polls `fut` once with the calling task's waker.
    async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
    }

    /// A permit, or a panic: the lane has room. (Awaited rather than polled once: tokio's
    /// cooperative budget may answer a first poll with `Pending` after many operations.)
    async fn permit(lane: &Arc<Lane>) -> LanePermit {
        match tokio::time::timeout(DEADLINE, lane.acquire()).await {
            Ok(permit) => permit,
            Err(_) => panic!("no free slot: {lane:?}"),
        }
    }

    fn throttled(retry_after: Option<Duration>) -> Feedback {
        Feedback::Throttled { retry_after }
    }

    #[tokio::test]
    async fn a_burst_of_throttles_halves_the_limit_once() {
        let lane = Lane::new("test", 64);
        let mut permits = Vec::new();
        for _ in 0..64 {
            permits.push(permit(&lane).await);
        }
        assert_eq!(lane.in_flight(), 64);
        let t0 = Instant::now();
        // 64 answers to one burst, spread over most of a window.
        for (i, p) in permits.into_iter().enumerate() {
            p.finish_at(throttled(None), t0 + Duration::from_millis(i as u64 * 15));
        }
        assert_eq!(lane.limit(), 32);
        assert_eq!(lane.in_flight(), 0);

        // A throttle after the window is a new signal.
        permit(&lane)
            .await
            .finish_at(throttled(None), t0 + CUT_WINDOW);
        assert_eq!(lane.limit(), 16);
    }

    #[tokio::test]
    async fn the_pause_honours_retry_after_within_bounds() {
        let lane = Lane::new("test", 4);
        assert_eq!(lane.paused_for(), None);
        let t0 = Instant::now();
        permit(&lane)
            .await
            .finish_at(throttled(Some(Duration::from_secs(30))), t0);
        assert_eq!(lane.paused_for_at(t0), Some(Duration::from_secs(30)));
        assert_eq!(
            lane.paused_for_at(t0 + Duration::from_secs(29)),
            Some(Duration::from_secs(1))
        );
        // A shorter Retry-After meanwhile does not end the pause early.
        permit(&lane).await.finish_at(
            throttled(Some(Duration::from_secs(2))),
            t0 + Duration::from_secs(10),
        );
        assert_eq!(
            lane.paused_for_at(t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(lane.paused_for_at(t0 + Duration::from_secs(30)), None);

        // Without Retry-After: the default pause.
        let t1 = t0 + Duration::from_secs(100);
        permit(&lane).await.finish_at(throttled(None), t1);
        assert_eq!(lane.paused_for_at(t1), Some(DEFAULT_PAUSE));
        assert_eq!(lane.paused_for_at(t1 + DEFAULT_PAUSE), None);

        // An absurd Retry-After is capped.
        let t2 = t1 + Duration::from_secs(100);
        permit(&lane)
            .await
            .finish_at(throttled(Some(Duration::from_secs(7 * 24 * 3600))), t2);
        assert_eq!(lane.paused_for_at(t2), Some(MAX_PAUSE));
    }

    #[tokio::test]
    async fn accepted_deliveries_grow_the_limit_back_to_max() {
        let lane = Lane::new("test", 8);
        let t0 = Instant::now();
        permit(&lane).await.finish_at(throttled(None), t0);
        assert_eq!(lane.limit(), 4);

        // One more slot per `limit` accepted deliveries: 4 at 4, then 5 at 5, ...
        for _ in 0..3 {
            permit(&lane).await.finish(Feedback::Accepted);
        }
        assert_eq!(lane.limit(), 4);
        permit(&lane).await.finish(Feedback::Accepted);
        assert_eq!(lane.limit(), 5);
        // Neutral answers count for nothing.
        for _ in 0..10 {
            permit(&lane).await.finish(Feedback::Other);
        }
        drop(permit(&lane).await);
        assert_eq!(lane.limit(), 5);
        for _ in 0..5 + 6 + 7 {
            permit(&lane).await.finish(Feedback::Accepted);
        }
        assert_eq!(lane.limit(), 8);
        for _ in 0..100 {
            permit(&lane).await.finish(Feedback::Accepted);
        }
        assert_eq!(lane.limit(), 8, "never beyond max");
    }

    #[tokio::test]
    async fn waiting_acquirers_start_when_the_limit_allows() {
        let lane = Lane::new("test", 2);
        let a = permit(&lane).await;
        let b = permit(&lane).await;
        let mut waiter = Box::pin(lane.acquire());
        assert!(poll_once(&mut waiter).await.is_pending());

        // Halved to 1 with `b` still out: no room yet, nothing in flight is cancelled.
        a.finish_at(throttled(None), Instant::now());
        assert_eq!((lane.limit(), lane.in_flight()), (1, 1));
        assert!(poll_once(&mut waiter).await.is_pending());

        b.finish(Feedback::Other);
        let c = tokio::time::timeout(DEADLINE, &mut waiter)
            .await
            .expect("the waiter gets the freed slot");
        assert_eq!(lane.in_flight(), 1);

        // With two waiting and room for one, exactly one goes.
        let mut first = Box::pin(lane.acquire());
        let mut second = Box::pin(lane.acquire());
        assert!(poll_once(&mut first).await.is_pending());
        assert!(poll_once(&mut second).await.is_pending());
        c.finish(Feedback::Other);
        let d = tokio::time::timeout(DEADLINE, &mut first)
            .await
            .expect("one waiter gets the slot");
        assert!(poll_once(&mut second).await.is_pending());

        // Growth makes room too: at limit 1, one accepted delivery raises it to 2.
        d.finish(Feedback::Accepted);
        assert_eq!(lane.limit(), 2);
        let _e = tokio::time::timeout(DEADLINE, &mut second)
            .await
            .expect("the other waiter gets a slot");
        let _f = permit(&lane).await;
        assert_eq!(lane.in_flight(), 2);
    }

    #[tokio::test]
    async fn express_slots_do_not_wait_for_the_lane() {
        let lane = Lane::new("test", 1);
        let _busy = permit(&lane).await;
        assert!(poll_once(&mut Box::pin(lane.acquire())).await.is_pending());
        let express: Vec<_> = (0..EXPRESS_SLOTS)
            .map_while(|_| lane.try_express())
            .collect();
        assert_eq!(express.len(), EXPRESS_SLOTS);
        assert!(lane.try_express().is_none(), "bounded");
        drop(express);
        assert!(lane.try_express().is_some());
    }

    #[tokio::test]
    async fn the_limit_never_drops_below_one() {
        let lane = Lane::new("test", 4);
        let t0 = Instant::now();
        for i in 0..6 {
            permit(&lane)
                .await
                .finish_at(throttled(None), t0 + CUT_WINDOW * i);
        }
        assert_eq!(lane.limit(), 1);
        let _only = permit(&lane).await;
        assert!(poll_once(&mut Box::pin(lane.acquire())).await.is_pending());
    }

    #[tokio::test]
    async fn a_dropped_acquire_leaks_no_slot() {
        let lane = Lane::new("test", 1);
        let held = permit(&lane).await;

        // Dropped while waiting.
        let mut gone = Box::pin(lane.acquire());
        assert!(poll_once(&mut gone).await.is_pending());
        drop(gone);

        // Dropped after being woken but before it ran: the wake-up must not die with it.
        let mut woken_then_dropped = Box::pin(lane.acquire());
        let mut patient = Box::pin(lane.acquire());
        assert!(poll_once(&mut woken_then_dropped).await.is_pending());
        assert!(poll_once(&mut patient).await.is_pending());
        drop(held);
        drop(woken_then_dropped);
        assert_eq!(lane.in_flight(), 0);
        let again = tokio::time::timeout(DEADLINE, &mut patient)
            .await
            .expect("the remaining waiter gets the slot");
        assert_eq!(lane.in_flight(), 1);

        // A permit dropped without `finish` is neutral: slot back, limit unchanged.
        drop(again);
        assert_eq!((lane.limit(), lane.in_flight()), (1, 0));
        drop(patient);
        let _next = permit(&lane).await;
    }
}
