//! The delivery worker: claims due deliveries from the store, sends them with bounded
//! concurrency per provider, and settles each by its outcome. The loop and the retry decision
//! are [`lease`](crate::lease)'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::backoff::Backoff;
use crate::health::Health;
use crate::journal::{Attempt, Journal};
use crate::lease::{LeasedWork, RetryPolicy, Step};
use crate::origin::Admission;
use crate::outcome::Outcome;
use crate::providers::Providers;
use crate::registration::Provider;
use crate::store::{now_ms, ClaimedDelivery, Deliveries, Registrations, RetryPlan};

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
    /// Settled deliveries on their way to [`settle_in_batches`].
    pub settled: mpsc::Sender<(String, String)>,
}

/// The delivery queue as [`lease::run`](crate::lease::run) drives it: a lane of
/// `concurrency` pushes per provider, and room for as many in all.
pub(crate) struct DeliveryWork {
    worker: Arc<Worker>,
    lanes: HashMap<Provider, Arc<Semaphore>>,
    total: Arc<Semaphore>,
    last_housekeeping: parking_lot::Mutex<tokio::time::Instant>,
}

/// The most deliveries one batch removes.
const SETTLE_BATCH: usize = 512;

/// Removes settled deliveries in batches: whatever has settled while the previous batch was
/// written goes in the next one, so under load one commit covers hundreds of deliveries and
/// when idle each goes at once. A batch that fails is logged and its deliveries stay leased,
/// to be sent again when the lease lapses: a duplicate push, never a lost one. Ends when every
/// sender is gone, after writing what it has.
pub(crate) async fn settle_in_batches(
    deliveries: Deliveries,
    mut settled: mpsc::Receiver<(String, String)>,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while settled.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        if let Err(e) = deliveries.settle(&batch).await {
            tracing::warn!(error = %e, count = batch.len(), "push queue: settling deliveries failed; they will be sent again when their lease lapses");
        }
        metrics::histogram!("pushwarden_push_settle_batch_size").record(batch.len() as f64);
        batch.clear();
    }
}

/// The most deliveries one claim takes.
const CLAIM_BATCH: u32 = 256;

/// How often settled messages are purged and the queue's depth is reported.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

impl DeliveryWork {
    pub fn new(worker: Worker) -> Self {
        let concurrency = worker.options.concurrency;
        Self {
            lanes: Provider::ALL
                .into_iter()
                .map(|p| (p, Arc::new(Semaphore::new(concurrency))))
                .collect(),
            total: Arc::new(Semaphore::new(concurrency * Provider::ALL.len())),
            worker: Arc::new(worker),
            last_housekeeping: parking_lot::Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub fn pace(&self) -> crate::lease::Pace {
        crate::lease::Pace {
            batch: CLAIM_BATCH,
            poll_interval: self.worker.options.poll_interval,
        }
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
    type Item = ClaimedDelivery;
    const NAME: &'static str = "push queue";

    fn room(&self) -> usize {
        self.total.available_permits()
    }

    async fn claim(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, crate::store::StoreError> {
        self.worker
            .deliveries
            .claim(now_ms, self.worker.options.lease, limit)
            .await
    }

    async fn process(&self, claimed: Vec<ClaimedDelivery>) {
        // Deliveries put back in the queue (their Web Push origin busy or backing off, or no
        // slot left), by when they are due again.
        let mut deferred: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        let now = now_ms();
        for delivery in claimed {
            let label = delivery
                .device
                .as_ref()
                .map_or("unknown", |d| d.platform.provider().as_str());
            let ticket = match delivery
                .device
                .as_ref()
                .and_then(|d| self.worker.providers.admit(d))
            {
                None => None,
                Some(Admission::Queued(ticket)) => Some(ticket),
                Some(Admission::Deferred { after, reason }) => {
                    metrics::counter!("pushwarden_push_deferred_total", "provider" => label, "reason" => reason)
                        .increment(1);
                    deferred
                        .entry(due_after(now, after))
                        .or_default()
                        .push(delivery.key());
                    continue;
                }
            };
            // Others take a slot of the total now; Web Push takes one once its origin has a
            // slot for it, so waiting for a busy origin holds nothing another delivery needs.
            let permit = match ticket {
                Some(_) => None,
                None => match self.total.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        deferred.entry(now).or_default().push(delivery.key());
                        continue;
                    }
                },
            };
            let total = self.total.clone();
            let worker = self.worker.clone();
            let lane = delivery
                .device
                .as_ref()
                .and_then(|d| self.lanes.get(&d.platform.provider()).cloned());
            tokio::spawn(async move {
                let (_origin, _permit) = match ticket {
                    None => (None, permit),
                    Some(ticket) => match ticket.enter().await {
                        Ok(pass) => (Some(pass), total.acquire_owned().await.ok()),
                        Err(after) => {
                            metrics::counter!("pushwarden_push_deferred_total", "provider" => label, "reason" => "origin_busy")
                                .increment(1);
                            let at = due_after(now_ms(), after);
                            if let Err(e) = worker.deliveries.defer(&[delivery.key()], at).await {
                                tracing::warn!(error = %e, "push queue: deferring failed; the lease will bring it back");
                            }
                            return;
                        }
                    },
                };
                let _lane = match lane {
                    Some(l) => l.acquire_owned().await.ok(),
                    None => None,
                };
                worker.deliver(delivery).await;
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
    }

    async fn next_due_ms(&self) -> Result<Option<i64>, crate::store::StoreError> {
        self.worker.deliveries.next_due_ms().await
    }
}

impl Worker {
    /// Sends one delivery and settles it by its outcome.
    async fn deliver(&self, delivery: ClaimedDelivery) {
        let now = now_ms();
        let Some(device) = &delivery.device else {
            return self
                .drop_delivery(
                    &delivery,
                    "unknown",
                    "unregistered",
                    "the device was unregistered",
                )
                .await;
        };
        let provider = device.platform.provider();
        let label = provider.as_str();
        let age = Duration::from_millis(u64::try_from(now - delivery.created_ms).unwrap_or(0));
        if self
            .options
            .retry_policy()
            .expired(delivery.created_ms, now)
        {
            return self
                .drop_delivery(&delivery, label, "expired", "older than the maximum age")
                .await;
        }
        if !self.providers.is_configured(provider) {
            return self
                .drop_delivery(
                    &delivery,
                    label,
                    "no_provider",
                    "its provider is no longer configured",
                )
                .await;
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
        self.note(&delivery, label, &outcome, now);
        match outcome {
            Outcome::Delivered => {
                self.health.ok(label);
                metrics::histogram!("pushwarden_push_delivery_latency_seconds", "provider" => label)
                    .record(age.as_secs_f64());
                metrics::counter!("pushwarden_push_delivered_total", "provider" => label)
                    .increment(1);
                self.settled(&delivery).await
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
                self.settled(&delivery).await
            }
            Outcome::Rejected { reason } => {
                return self
                    .drop_delivery(&delivery, label, "rejected", &reason)
                    .await;
            }
            Outcome::Retry { after, reason, .. } => {
                self.health.ok(label);
                return self.retry(&delivery, label, after, reason, now).await;
            }
            Outcome::Misconfigured { reason } => {
                self.health.config_error(label, &reason, now);
                return self.retry(&delivery, label, None, reason, now).await;
            }
        }
    }

    async fn retry(
        &self,
        delivery: &ClaimedDelivery,
        label: &'static str,
        after: Option<Duration>,
        reason: String,
        now: i64,
    ) {
        let next = match self.options.retry_policy().next_step(
            delivery.attempts,
            delivery.created_ms,
            now,
            after,
        ) {
            Step::RetryAt(next) => next,
            Step::Expire => {
                let why = format!("would retry after the maximum age; last error: {reason}");
                return self.drop_delivery(delivery, label, "expired", &why).await;
            }
        };
        let delay = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tracing::debug!(provider = label, device_id = %delivery.device_id, attempts = delivery.attempts + 1, ?delay, %reason, "push will be retried");
        let plan = RetryPlan {
            attempts: delivery.attempts.saturating_add(1),
            next_attempt_ms: next,
            error: reason,
        };
        if let Err(e) = self.deliveries.retry(&delivery.key(), &plan).await {
            tracing::warn!(error = %e, "push queue: rescheduling failed; the lease will bring it back");
        }
    }

    /// Gives up on a delivery: counted per reason and logged, never silent.
    async fn drop_delivery(
        &self,
        delivery: &ClaimedDelivery,
        label: &'static str,
        reason: &'static str,
        detail: &str,
    ) {
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
        self.settled(delivery).await;
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

    /// Hands a settled delivery to the batcher.
    async fn settled(&self, delivery: &ClaimedDelivery) {
        if self.settled.send(delivery.key()).await.is_err() {
            // Only at shutdown; the lease brings the delivery back after a restart.
            tracing::debug!("push queue: settling after the batcher stopped");
        }
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
