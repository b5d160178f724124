//! The delivery worker: each round it claims the retries that are due and expands stored pushes
//! into batches of devices (the store's fan-out), sends them with bounded concurrency per
//! provider, and writes each outcome: a batch is finished once all its deliveries have one, in
//! one transaction with other finished batches. The loop and the retry decision are
//! [`lease`](crate::lease)'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::backoff::Backoff;
use crate::health::Health;
use crate::journal::{Attempt, Journal};
use crate::lanes::{Feedback, Lane};
use crate::lease::{LeasedWork, RetryPolicy, Step};
use crate::origin::Admission;
use crate::outcome::Outcome;
use crate::providers::Providers;
use crate::registration::Provider;
use crate::store::{
    now_ms, ClaimedBatch, ClaimedDelivery, Deliveries, FinishedBatch, Pending, Registrations,
    RetryPlan,
};

#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// A push older than this is dropped (counted and logged) instead of retried.
    pub max_age: Duration,
    /// How long a claimed delivery stays invisible to other workers. Longer than a delivery
    /// can take, waiting for its provider's lane included, so it is never claimed twice.
    pub lease: Duration,
    /// Pushes in flight per provider (many share one HTTP/2 connection).
    pub concurrency: usize,
    pub backoff: Backoff,
    /// How often the queue is looked at when nothing wakes the worker.
    pub poll_interval: Duration,
}

impl DeliveryOptions {
    /// When failed pushes (and relay requests) are retried, and when they are given up.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff: self.backoff,
            max_age: self.max_age,
        }
    }
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(300),
            concurrency: 64,
            backoff: Backoff::default(),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What a delivery in flight needs.
pub(crate) struct Worker {
    pub deliveries: Deliveries,
    pub registrations: Registrations,
    pub providers: Arc<Providers>,
    pub health: Arc<Health>,
    pub journal: Arc<Journal>,
    pub options: DeliveryOptions,
    /// Finished batches and settled retries on their way to [`finish_in_batches`].
    pub finished: mpsc::Sender<Finished>,
    /// The worker loop's wake-up, rung when a finished delivery leaves room for a round.
    pub wake: Arc<tokio::sync::Notify>,
    /// Set when a push is accepted: something new may wait to be expanded.
    pub fresh: Arc<std::sync::atomic::AtomicBool>,
}

/// A claimed delivery and where it came from, which says how its outcome is written.
pub(crate) struct Job {
    delivery: ClaimedDelivery,
    source: Source,
    /// A delivery of a small push that came whole in one batch: it may take an express slot
    /// rather than queue behind the deliveries claimed ahead.
    express: bool,
}

enum Source {
    /// A row of `push_deliveries` (a retry): settled, retried or deferred on its own.
    Row,
    /// A batch of a push being expanded: the outcome is kept with the batch's others until
    /// all are in.
    Batch(Arc<BatchProgress>),
}

/// A batch in flight: how many of its deliveries have no outcome yet, and those of its
/// deliveries that go on in `push_deliveries`.
struct BatchProgress {
    message_id: String,
    after_device: String,
    created_ms: i64,
    left: AtomicUsize,
    pending: parking_lot::Mutex<Vec<Pending>>,
}

/// What becomes of a delivery after this attempt.
enum Next {
    /// Delivered, or dropped for a reason already counted.
    Settled,
    /// Tried again at `next_attempt_ms`, after an error.
    Retry(RetryPlan),
    /// Not tried now (a busy Web Push origin): sent at this time, its attempts unchanged.
    Defer(i64),
}

/// What the finisher writes.
pub(crate) enum Finished {
    /// A retry that settled.
    Row((String, String)),
    /// A batch whose deliveries all have an outcome.
    Batch(FinishedBatch),
}

/// A claimed batch as jobs; `Err` gives back a batch with no delivery left to send (every
/// device of a reclaimed range unregistered since), finished as it is.
fn jobs_of_batch(batch: ClaimedBatch) -> Result<Vec<Job>, FinishedBatch> {
    if batch.deliveries.is_empty() {
        return Err(FinishedBatch {
            message_id: batch.message_id,
            after_device: batch.after_device,
            created_ms: 0,
            pending: Vec::new(),
        });
    }
    let express = batch.whole && batch.deliveries.len() <= EXPRESS_PUSH;
    let progress = Arc::new(BatchProgress {
        created_ms: batch.deliveries.first().map_or(0, |d| d.created_ms),
        message_id: batch.message_id,
        after_device: batch.after_device,
        left: AtomicUsize::new(batch.deliveries.len()),
        pending: parking_lot::Mutex::new(Vec::new()),
    });
    Ok(batch
        .deliveries
        .into_iter()
        .map(|delivery| Job {
            delivery,
            source: Source::Batch(progress.clone()),
            express,
        })
        .collect())
}

/// The delivery queue as [`lease::run`](crate::lease::run) drives it: a lane of
/// `concurrency` pushes per provider, and room for as many in all.
pub(crate) struct DeliveryWork {
    worker: Arc<Worker>,
    lanes: HashMap<Provider, Arc<Lane>>,
    /// Deliveries started per provider and not yet done (waiting for their lane or in
    /// flight), bounded so that a slowed provider cannot take every slot of the total.
    started: HashMap<Provider, Arc<AtomicUsize>>,
    total: Arc<Semaphore>,
    /// Room for small new pushes while the total is taken (see [`DeliveryWork::room`]).
    express: Arc<Semaphore>,
    last_housekeeping: parking_lot::Mutex<tokio::time::Instant>,
    last_reclaim: parking_lot::Mutex<tokio::time::Instant>,
    last_statistics: parking_lot::Mutex<tokio::time::Instant>,
}

/// The most outcomes one finishing transaction writes.
const FINISH_BATCH: usize = 512;

/// Writes finished batches and settled retries in batches: whatever finished while the
/// previous transaction was written goes in the next one, so under load one commit covers
/// hundreds of deliveries and when idle each goes at once. A transaction that fails is logged
/// and what it held stays leased, to be sent again when the lease lapses: a duplicate push,
/// never a lost one. Ends when every sender is gone, after writing what it has.
pub(crate) async fn finish_in_batches(
    deliveries: Deliveries,
    mut finished: mpsc::Receiver<Finished>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut received = Vec::with_capacity(FINISH_BATCH);
    while finished.recv_many(&mut received, FINISH_BATCH).await > 0 {
        let mut batches = Vec::new();
        let mut rows = Vec::new();
        for item in received.drain(..) {
            match item {
                Finished::Row(key) => rows.push(key),
                Finished::Batch(batch) => batches.push(batch),
            }
        }
        let count = rows.len() + batches.len();
        let retries = batches.iter().any(|b| !b.pending.is_empty());
        match deliveries.finish(&batches, &rows).await {
            // The loop computed its next wake-up before these retries existed.
            Ok(()) if retries => wake.notify_one(),
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, count, "push queue: finishing deliveries failed; they will be sent again when their lease lapses");
            }
        }
        metrics::histogram!("pushwarden_push_settle_batch_size").record(count as f64);
    }
}

/// The most deliveries one claim takes.
const CLAIM_BATCH: u32 = 512;

/// Deliveries claimed ahead, per provider lane slot: a round of claims costs a few round trips
/// to the database, so the worker keeps several lanes' worth in memory to send while the next
/// round is claimed, instead of letting the lanes run dry between rounds.
const AHEAD: usize = 4;

/// The most devices of one push a round expands: a push to many devices is sent in batches of
/// this size, taking turns with the other pushes.
const EXPAND_BATCH: u32 = 128;

/// The most devices of a push that goes express (see [`Job::express`]): a user's devices.
const EXPRESS_PUSH: usize = 16;

/// Deliveries of small new pushes held in memory beyond the total (see [`DeliveryWork::room`]).
const EXPRESS_ROOM: usize = 64;

/// How long a delivery waits in the queue when its provider has as many started as it takes.
const PROVIDER_BUSY_WAIT: Duration = Duration::from_secs(1);

/// A delivery counted as started on its provider's lane until it is dropped.
struct Started {
    lane: Arc<Lane>,
    started: Arc<AtomicUsize>,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.started.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often the registry's planner statistics are checked (see
/// [`Registrations::refresh_statistics`]).
const STATISTICS_EVERY: Duration = Duration::from_secs(10);

/// How often batches whose lease lapsed (their worker died) are looked for.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// How often settled messages are purged and the queue's depth is reported.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

impl DeliveryWork {
    pub fn new(worker: Worker) -> Self {
        let concurrency = worker.options.concurrency;
        Self {
            lanes: Provider::ALL
                .into_iter()
                .map(|p| (p, Lane::new(p.as_str(), concurrency)))
                .collect(),
            started: Provider::ALL
                .into_iter()
                .map(|p| (p, Arc::new(AtomicUsize::new(0))))
                .collect(),
            total: Arc::new(Semaphore::new(AHEAD * concurrency * Provider::ALL.len())),
            express: Arc::new(Semaphore::new(EXPRESS_ROOM)),
            worker: Arc::new(worker),
            last_housekeeping: parking_lot::Mutex::new(tokio::time::Instant::now()),
            last_reclaim: parking_lot::Mutex::new(tokio::time::Instant::now() - RECLAIM_EVERY),
            last_statistics: parking_lot::Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub fn pace(&self) -> crate::lease::Pace {
        crate::lease::Pace {
            batch: CLAIM_BATCH,
            min_batch: self.min_claim(),
            poll_interval: self.worker.options.poll_interval,
        }
    }

    /// The room a round waits for when the previous one found work: claiming a handful at a
    /// time would cost a round of statements per handful.
    fn min_claim(&self) -> usize {
        self.worker.options.concurrency.clamp(1, 64)
    }

    /// Puts a delivery back untried, due at `at`: a retry row with others due then (one
    /// statement for them all), a batch's delivery with its batch.
    async fn put_back(
        &self,
        job: Job,
        at: i64,
        deferred: &mut HashMap<i64, Vec<(String, String)>>,
    ) {
        match job.source {
            Source::Row => deferred.entry(at).or_default().push(job.delivery.key()),
            Source::Batch(_) => self.worker.finish(job, Next::Defer(at)).await,
        }
    }

    /// The most deliveries one provider may have started (waiting for its lane or in flight):
    /// all of the total but a lane's worth, so a slowed provider leaves room for the others.
    /// (A throttled one holds none: its deliveries wait in the queue.)
    fn provider_bound(&self) -> usize {
        let total = AHEAD * self.worker.options.concurrency * Provider::ALL.len();
        total.saturating_sub(self.worker.options.concurrency)
    }

    /// Whether batches whose lease lapsed are due to be looked for.
    fn reclaim_due(&self) -> bool {
        let mut last = self.last_reclaim.lock();
        let due = last.elapsed() >= RECLAIM_EVERY;
        if due {
            *last = tokio::time::Instant::now();
        }
        due
    }

    async fn housekeeping(&self) {
        let deliveries = &self.worker.deliveries;
        if let Err(e) = deliveries.purge_settled_messages().await {
            tracing::warn!(error = %e, "push queue: purging settled messages failed");
        }
        match deliveries.pending().await {
            Ok(n) => metrics::gauge!("pushwarden_push_queue_pending").set(n as f64),
            Err(e) => tracing::warn!(error = %e, "push queue: counting failed"),
        }
    }
}

/// `after` from `now_ms`, rounded up to the next whole second so that deliveries deferred
/// together go back to the queue in one statement.
fn due_after(now_ms: i64, after: Duration) -> i64 {
    let at = now_ms.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
    at.saturating_sub(at.rem_euclid(1000)).saturating_add(1000)
}

/// Deliveries finish on their own tasks: `process` only starts them, each holding a slot of
/// the total and, once it has one, of its provider's lane (Web Push first waits for a slot of
/// its endpoint's origin, see [`crate::origin`]). When the loop stops, deliveries in flight
/// still finish (or their leases lapse).
impl LeasedWork for DeliveryWork {
    type Item = Job;
    const NAME: &'static str = "push queue";

    /// Free slots of the total, but none while a provider has as many started as it may hold
    /// ([`Self::provider_bound`]): what a round would claim for it could not start.
    ///
    /// While none is left, pushes accepted since the last look get the express room: the
    /// deliveries claimed ahead are a big push's, and a small push that arrives now is claimed
    /// at once (only pushes not started yet, see `claim`) and sent beside them.
    fn room(&self) -> usize {
        let bound = self.provider_bound();
        let provider_room = self
            .started
            .values()
            .map(|n| bound.saturating_sub(n.load(Ordering::Relaxed)))
            .min()
            .unwrap_or(bound);
        match self.total.available_permits().min(provider_room) {
            0 if self.worker.fresh.load(Ordering::Relaxed) => self.express.available_permits(),
            room => room,
        }
    }

    /// Due retries first (they waited), then batches whose worker died, then new batches of
    /// the pushes being expanded, with what room is left.
    async fn claim(&self, now_ms: i64, limit: u32) -> Result<Vec<Job>, crate::store::StoreError> {
        let deliveries = &self.worker.deliveries;
        let lease = self.worker.options.lease;
        if self.total.available_permits() == 0 {
            // The express room (see `room`): new pushes only, in batches no bigger than an
            // express push, so a big new one is started but cannot fill it.
            self.worker.fresh.store(false, Ordering::Relaxed);
            let batches = deliveries
                .expand_new(now_ms, lease, limit, EXPRESS_PUSH as u32)
                .await?;
            let mut jobs = Vec::new();
            for batch in batches {
                match jobs_of_batch(batch) {
                    Ok(batch_jobs) => jobs.extend(batch_jobs),
                    Err(empty) => self.worker.send_finished(Finished::Batch(empty)).await,
                }
            }
            return Ok(jobs);
        }
        self.worker.fresh.store(false, Ordering::Relaxed);
        let mut jobs: Vec<Job> = deliveries
            .claim(now_ms, lease, limit)
            .await?
            .into_iter()
            .map(|delivery| Job {
                delivery,
                source: Source::Row,
                express: false,
            })
            .collect();
        let mut batches = Vec::new();
        if self.reclaim_due() {
            let left = limit.saturating_sub(jobs.len() as u32) / EXPAND_BATCH;
            if left > 0 {
                batches = deliveries.reclaim_batches(now_ms, lease, left).await?;
                if !batches.is_empty() {
                    tracing::info!(
                        count = batches.len(),
                        "push queue: sending again batches whose lease lapsed"
                    );
                    metrics::counter!("pushwarden_push_batches_reclaimed_total")
                        .increment(batches.len() as u64);
                }
            }
        }
        let claimed: usize = batches.iter().map(|b| b.deliveries.len()).sum();
        let left = limit.saturating_sub((jobs.len() + claimed) as u32);
        batches.extend(deliveries.expand(now_ms, lease, left, EXPAND_BATCH).await?);
        for batch in batches {
            match jobs_of_batch(batch) {
                Ok(batch_jobs) => jobs.extend(batch_jobs),
                Err(empty) => self.worker.send_finished(Finished::Batch(empty)).await,
            }
        }
        Ok(jobs)
    }

    async fn process(&self, claimed: Vec<Job>) {
        // Retry rows put back in the queue (their Web Push origin busy or backing off, or no
        // slot left), by when they are due again; batch deliveries go back with their batch.
        let mut deferred: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        let now = now_ms();
        for job in claimed {
            let device = job.delivery.device.as_ref();
            let provider = device.map(|d| d.platform.provider());
            let label = provider.map_or("unknown", |p| p.as_str());
            // The provider's lane first: paused by a 429, or with as many started as it can
            // take, the delivery goes back to the queue instead of waiting in memory.
            let lane = provider.and_then(|p| Some((self.lanes.get(&p)?, self.started.get(&p)?)));
            if let Some((lane, started)) = lane {
                let busy = match lane.paused_for() {
                    Some(pause) => Some((pause, "provider_throttled")),
                    None if started.load(Ordering::Relaxed) >= self.provider_bound() => {
                        Some((PROVIDER_BUSY_WAIT, "provider_busy"))
                    }
                    None => None,
                };
                if let Some((after, reason)) = busy {
                    metrics::counter!("pushwarden_push_deferred_total", "provider" => label, "reason" => reason)
                        .increment(1);
                    self.put_back(job, due_after(now, after), &mut deferred)
                        .await;
                    continue;
                }
            }
            let ticket = match device.and_then(|d| self.worker.providers.admit(d)) {
                None => None,
                Some(Admission::Queued(ticket)) => Some(ticket),
                Some(Admission::Deferred { after, reason }) => {
                    metrics::counter!("pushwarden_push_deferred_total", "provider" => label, "reason" => reason)
                        .increment(1);
                    self.put_back(job, due_after(now, after), &mut deferred)
                        .await;
                    continue;
                }
            };
            // Others take a slot of the total now; Web Push takes one once its origin has a
            // slot for it, so waiting for a busy origin holds nothing another delivery needs.
            let permit = match ticket {
                Some(_) => None,
                None => {
                    let express = job
                        .express
                        .then(|| self.express.clone().try_acquire_owned().ok())
                        .flatten();
                    match express.or_else(|| self.total.clone().try_acquire_owned().ok()) {
                        Some(permit) => Some(permit),
                        None => {
                            self.put_back(job, now, &mut deferred).await;
                            continue;
                        }
                    }
                }
            };
            let total = self.total.clone();
            let worker = self.worker.clone();
            let lane = lane.map(|(lane, started)| {
                started.fetch_add(1, Ordering::Relaxed);
                Started {
                    lane: lane.clone(),
                    started: started.clone(),
                }
            });
            let wake_at = self.min_claim();
            tokio::spawn(async move {
                let (origin, permit) = match ticket {
                    None => (None, permit),
                    Some(ticket) => match ticket.enter().await {
                        Ok(pass) => (Some(pass), total.clone().acquire_owned().await.ok()),
                        Err(after) => {
                            metrics::counter!("pushwarden_push_deferred_total", "provider" => label, "reason" => "origin_busy")
                                .increment(1);
                            let at = due_after(now_ms(), after);
                            return worker.defer(job, at).await;
                        }
                    },
                };
                let express = match (&lane, job.express) {
                    (Some(started), true) => started.lane.try_express(),
                    _ => None,
                };
                let slot = match &lane {
                    Some(_) if express.is_some() => None,
                    Some(started) => {
                        let slot = started.lane.acquire().await;
                        // A 429 may have paused the lane while this one waited.
                        if let Some(pause) = started.lane.paused_for() {
                            metrics::counter!("pushwarden_push_deferred_total", "provider" => label, "reason" => "provider_throttled")
                                .increment(1);
                            drop(slot);
                            return worker.defer(job, due_after(now_ms(), pause)).await;
                        }
                        Some(slot)
                    }
                    None => None,
                };
                let feedback = worker.deliver(job).await;
                match (slot, &lane) {
                    (Some(slot), _) => slot.finish(feedback),
                    // Sent on an express slot: the answer still adapts the lane.
                    (None, Some(started)) => started.lane.report(feedback),
                    (None, None) => {}
                }
                drop((lane, express, origin, permit));
                // Room for a round again: the loop may be waiting for it.
                if total.available_permits() >= wake_at {
                    worker.wake.notify_one();
                }
            });
        }
        for (at, keys) in deferred {
            tracing::debug!(
                count = keys.len(),
                due_ms = at,
                "push queue: deferred deliveries to a busy or backing-off origin"
            );
            // Not lost if this fails: the lease brings them back.
            if let Err(e) = self.worker.deliveries.defer(&keys, at).await {
                tracing::warn!(error = %e, count = keys.len(), "push queue: deferring failed; the lease will bring them back");
            }
        }
    }

    async fn after_round(&self) {
        let due = {
            let mut last = self.last_housekeeping.lock();
            let due = last.elapsed() > HOUSEKEEPING_EVERY;
            if due {
                *last = tokio::time::Instant::now();
            }
            due
        };
        if due {
            self.housekeeping().await;
        }
        let analyze = {
            let mut last = self.last_statistics.lock();
            let due = last.elapsed() > STATISTICS_EVERY;
            if due {
                *last = tokio::time::Instant::now();
            }
            due
        };
        if analyze {
            match self.worker.registrations.refresh_statistics().await {
                Ok(tables) if !tables.is_empty() => {
                    tracing::debug!(?tables, "push registry: planner statistics refreshed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "push registry: refreshing statistics failed"),
            }
        }
    }

    async fn next_due_ms(&self) -> Result<Option<i64>, crate::store::StoreError> {
        self.worker.deliveries.next_due_ms().await
    }
}

impl Worker {
    /// Sends one delivery and writes what follows from its outcome; answers what it tells the
    /// provider's lane.
    async fn deliver(&self, job: Job) -> Feedback {
        let delivery = &job.delivery;
        let now = now_ms();
        let Some(device) = &delivery.device else {
            self.drop_delivery(
                job,
                "unknown",
                "unregistered",
                "the device was unregistered",
            )
            .await;
            return Feedback::Other;
        };
        let provider = device.platform.provider();
        let label = provider.as_str();
        let age = Duration::from_millis(u64::try_from(now - delivery.created_ms).unwrap_or(0));
        if self
            .options
            .retry_policy()
            .expired(delivery.created_ms, now)
        {
            self.drop_delivery(job, label, "expired", "older than the maximum age")
                .await;
            return Feedback::Other;
        }
        if !self.providers.is_configured(provider) {
            self.drop_delivery(
                job,
                label,
                "no_provider",
                "its provider is no longer configured",
            )
            .await;
            return Feedback::Other;
        }
        let outcome = self
            .providers
            .deliver(
                device,
                delivery.push_type,
                &delivery.payload,
                delivery.context_id.as_deref(),
            )
            .await;
        metrics::counter!("pushwarden_push_attempts_total", "provider" => label, "outcome" => outcome.label())
            .increment(1);
        self.note(delivery, label, &outcome, now);
        let feedback = lane_feedback(provider, &outcome);
        match outcome {
            Outcome::Delivered => {
                self.health.ok(label);
                metrics::histogram!("pushwarden_push_delivery_latency_seconds", "provider" => label)
                    .record(age.as_secs_f64());
                metrics::counter!("pushwarden_push_delivered_total", "provider" => label)
                    .increment(1);
                self.finish(job, Next::Settled).await
            }
            Outcome::Gone { reason, at_ms } => {
                self.health.ok(label);
                let removed = self
                    .registrations
                    .remove_dead(
                        &delivery.device_id,
                        device.channel.address(),
                        at_ms.unwrap_or(now),
                    )
                    .await;
                match removed {
                    Ok(true) => {
                        metrics::counter!("pushwarden_push_registrations_removed_total", "provider" => label)
                            .increment(1);
                        tracing::info!(provider = label, device_id = %delivery.device_id, %reason, "removed a dead push registration");
                    }
                    Ok(false) => {
                        tracing::info!(provider = label, device_id = %delivery.device_id, %reason, "dead token reported, but the device registered again since")
                    }
                    Err(e) => tracing::warn!(error = %e, "removing a dead registration failed"),
                }
                metrics::counter!("pushwarden_push_dropped_total", "provider" => label, "reason" => "gone")
                    .increment(1);
                self.journal.dropped(label, "gone");
                self.finish(job, Next::Settled).await
            }
            Outcome::Rejected { reason } => {
                self.drop_delivery(job, label, "rejected", &reason).await
            }
            Outcome::Retry { after, reason, .. } => {
                self.health.ok(label);
                self.retry(job, label, after, reason, now).await
            }
            Outcome::Misconfigured { reason } => {
                self.health.config_error(label, &reason, now);
                self.retry(job, label, None, reason, now).await
            }
        }
        feedback
    }

    async fn retry(
        &self,
        job: Job,
        label: &'static str,
        after: Option<Duration>,
        reason: String,
        now: i64,
    ) {
        let delivery = &job.delivery;
        let next = match self.options.retry_policy().next_step(
            delivery.attempts,
            delivery.created_ms,
            now,
            after,
        ) {
            Step::RetryAt(next) => next,
            Step::Expire => {
                let why = format!("would retry after the maximum age; last error: {reason}");
                return self.drop_delivery(job, label, "expired", &why).await;
            }
        };
        let delay = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tracing::debug!(provider = label, device_id = %delivery.device_id, attempts = delivery.attempts + 1, ?delay, %reason, "push will be retried");
        let plan = RetryPlan {
            attempts: delivery.attempts.saturating_add(1),
            next_attempt_ms: next,
            error: reason,
        };
        self.finish(job, Next::Retry(plan)).await
    }

    /// Gives up on a delivery: counted per reason and logged, never silent.
    async fn drop_delivery(
        &self,
        job: Job,
        label: &'static str,
        reason: &'static str,
        detail: &str,
    ) {
        let delivery = &job.delivery;
        metrics::counter!("pushwarden_push_dropped_total", "provider" => label, "reason" => reason)
            .increment(1);
        self.journal.dropped(label, reason);
        // A rejection was noted with the attempt that got it.
        if reason != "rejected" {
            self.journal.attempt(
                &delivery.device_id,
                attempt(delivery, label, reason, detail),
            );
        }
        tracing::warn!(
            provider = label,
            reason,
            device_id = %delivery.device_id,
            message_id = %delivery.message_id,
            attempts = delivery.attempts,
            %detail,
            "push dropped"
        );
        self.finish(job, Next::Settled).await;
    }

    /// Notes an attempt's outcome in the journal, and the provider's error if it was one.
    fn note(&self, delivery: &ClaimedDelivery, label: &'static str, outcome: &Outcome, now: i64) {
        let (name, detail, error) = match outcome {
            Outcome::Delivered => ("delivered", "", false),
            Outcome::Gone { reason, .. } => ("gone", reason.as_str(), false),
            Outcome::Rejected { reason } => ("rejected", reason.as_str(), true),
            Outcome::Retry { reason, .. } => ("retry", reason.as_str(), true),
            Outcome::Misconfigured { reason } => ("misconfigured", reason.as_str(), true),
        };
        if error {
            self.journal.provider_error(label, name, detail, now);
        }
        let mut noted = attempt(delivery, label, name, detail);
        noted.at_ms = now;
        self.journal.attempt(&delivery.device_id, noted);
    }

    /// Writes what becomes of a delivery: a retry row on its own (settled through the
    /// finisher, retried or deferred at once), a batch's delivery with its batch.
    async fn finish(&self, job: Job, next: Next) {
        let Job {
            delivery, source, ..
        } = job;
        let progress = match source {
            Source::Row => {
                let key = delivery.key();
                let written = match next {
                    Next::Settled => return self.send_finished(Finished::Row(key)).await,
                    Next::Retry(plan) => self.deliveries.retry(&key, &plan).await,
                    Next::Defer(at) => self.deliveries.defer(&[key], at).await,
                };
                match written {
                    // The loop may be asleep until this row's lease would have lapsed.
                    Ok(()) => self.wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "push queue: rescheduling failed; the lease will bring it back");
                    }
                }
                return;
            }
            Source::Batch(progress) => progress,
        };
        let platform = delivery
            .device
            .as_ref()
            .map_or("unknown", |d| d.platform.as_str());
        let pending = match next {
            Next::Settled => None,
            Next::Retry(plan) => Some(Pending {
                device_id: delivery.device_id,
                platform,
                attempts: plan.attempts,
                next_attempt_ms: plan.next_attempt_ms,
                last_error: Some(plan.error),
            }),
            Next::Defer(at) => Some(Pending {
                device_id: delivery.device_id,
                platform,
                attempts: delivery.attempts,
                next_attempt_ms: at,
                last_error: None,
            }),
        };
        if let Some(pending) = pending {
            progress.pending.lock().push(pending);
        }
        // The last outcome of the batch finishes it.
        if progress.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let pending = std::mem::take(&mut *progress.pending.lock());
            self.send_finished(Finished::Batch(FinishedBatch {
                message_id: progress.message_id.clone(),
                after_device: progress.after_device.clone(),
                created_ms: progress.created_ms,
                pending,
            }))
            .await;
        }
    }

    /// Puts a delivery back untried, to be sent at `at`.
    async fn defer(&self, job: Job, at: i64) {
        self.finish(job, Next::Defer(at)).await
    }

    /// Hands an outcome to the finisher.
    async fn send_finished(&self, finished: Finished) {
        if self.finished.send(finished).await.is_err() {
            // Only at shutdown; the lease brings the work back after a restart.
            tracing::debug!("push queue: finishing after the finisher stopped");
        }
    }
}

/// What an outcome tells a provider's lane. Only FCM's 429 throttles the lane: FCM's quota is
/// the project's, while APNs answers 429 for one device token sent to too often, and a Web Push
/// 429 is one push service's (its origin backs off on its own, see [`crate::origin`]); those
/// are retried on the delivery's own schedule without slowing the provider for everyone.
fn lane_feedback(provider: Provider, outcome: &Outcome) -> Feedback {
    match outcome {
        Outcome::Delivered => Feedback::Accepted,
        Outcome::Retry {
            throttled: true,
            after,
            ..
        } if provider == Provider::Fcm => Feedback::Throttled {
            retry_after: *after,
        },
        _ => Feedback::Other,
    }
}

/// A journal entry for a delivery.
fn attempt(
    delivery: &ClaimedDelivery,
    provider: &'static str,
    outcome: &'static str,
    detail: &str,
) -> Attempt {
    Attempt {
        at_ms: now_ms(),
        message_id: delivery.message_id.clone(),
        push_type: delivery.push_type,
        provider,
        outcome,
        detail: detail.to_owned(),
        earlier_attempts: delivery.attempts,
    }
}
