//! The delivery worker: claims due deliveries from the store, sends them with bounded
//! concurrency per provider, and settles each by its outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};

use crate::backoff::Backoff;
use crate::health::Health;
use crate::outcome::Outcome;
use crate::providers::Providers;
use crate::registration::Provider;
use crate::store::{now_ms, ClaimedDelivery, RetryPlan, Store};

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

pub(crate) struct Worker {
    pub store: Store,
    pub providers: Arc<Providers>,
    pub health: Arc<Health>,
    pub options: DeliveryOptions,
    pub wake: Arc<Notify>,
    /// Settled deliveries on their way to [`settle_in_batches`].
    pub settled: mpsc::Sender<(String, String)>,
}

/// The most deliveries one batch removes.
const SETTLE_BATCH: usize = 512;

/// Removes settled deliveries in batches: whatever has settled while the previous batch was
/// written goes in the next one, so under load one commit covers hundreds of deliveries and
/// when idle each goes at once. A batch that fails is logged and its deliveries stay leased,
/// to be sent again when the lease lapses: a duplicate push, never a lost one. Ends when every
/// sender is gone, after writing what it has.
pub(crate) async fn settle_in_batches(store: Store, mut settled: mpsc::Receiver<(String, String)>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while settled.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        if let Err(e) = store.settle_many(&batch).await {
            tracing::warn!(error = %e, count = batch.len(), "push queue: settling deliveries failed; they will be sent again when their lease lapses");
        }
        metrics::histogram!("pushwarden_push_settle_batch_size").record(batch.len() as f64);
        batch.clear();
    }
}

impl Worker {
    /// Runs until `stop` resolves; deliveries in flight then finish (or their leases lapse).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let per_provider: HashMap<Provider, Arc<Semaphore>> = Provider::ALL
            .into_iter()
            .map(|p| (p, Arc::new(Semaphore::new(self.options.concurrency))))
            .collect();
        let total = Arc::new(Semaphore::new(
            self.options.concurrency * Provider::ALL.len(),
        ));
        let mut last_purge = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let free = total.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                let limit = u32::try_from(free.min(256)).unwrap_or(256);
                match self.store.claim(now_ms(), self.options.lease, limit).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "push queue: claiming deliveries failed");
                        Vec::new()
                    }
                }
            };
            let got_any = !claimed.is_empty();
            for delivery in claimed {
                let Ok(permit) = total.clone().try_acquire_owned() else {
                    break;
                };
                let worker = self.clone();
                let lane = delivery
                    .device
                    .as_ref()
                    .and_then(|d| per_provider.get(&d.platform.provider()).cloned());
                tokio::spawn(async move {
                    let _permit = permit;
                    let _lane = match lane {
                        Some(l) => l.acquire_owned().await.ok(),
                        None => None,
                    };
                    worker.deliver(delivery).await;
                });
            }
            if last_purge.elapsed() > Duration::from_secs(30) {
                last_purge = tokio::time::Instant::now();
                self.housekeeping().await;
            }
            if got_any && total.available_permits() > 0 {
                continue;
            }
            let wait = if total.available_permits() == 0 {
                Duration::from_millis(20)
            } else {
                self.until_next_due().await
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        let poll = self.options.poll_interval;
        match self.store.next_due_ms().await {
            Ok(Some(due)) => {
                let ms = (due - now_ms()).clamp(0, poll.as_millis() as i64);
                Duration::from_millis(ms as u64)
            }
            _ => poll,
        }
    }

    async fn housekeeping(&self) {
        if let Err(e) = self.store.purge_settled_messages().await {
            tracing::warn!(error = %e, "push queue: purging settled messages failed");
        }
        match self.store.pending_deliveries().await {
            Ok(n) => metrics::gauge!("pushwarden_push_queue_pending").set(n as f64),
            Err(e) => tracing::warn!(error = %e, "push queue: counting failed"),
        }
    }

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
        if age > self.options.max_age {
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
                    .store
                    .remove_dead_registration(
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
                self.settled(&delivery).await
            }
            Outcome::Rejected { reason } => {
                return self
                    .drop_delivery(&delivery, label, "rejected", &reason)
                    .await;
            }
            Outcome::Retry { after, reason } => {
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
        let delay = self.options.backoff.delay(delivery.attempts, after);
        let next = now.saturating_add(delay.as_millis() as i64);
        let deadline = delivery
            .created_ms
            .saturating_add(self.options.max_age.as_millis() as i64);
        if next > deadline {
            let why = format!("would retry after the maximum age; last error: {reason}");
            return self.drop_delivery(delivery, label, "expired", &why).await;
        }
        tracing::debug!(provider = label, device_id = %delivery.device_id, attempts = delivery.attempts + 1, ?delay, %reason, "push will be retried");
        let plan = RetryPlan {
            attempts: delivery.attempts.saturating_add(1),
            next_attempt_ms: next,
            error: reason,
        };
        if let Err(e) = self
            .store
            .reschedule(&delivery.message_id, &delivery.device_id, &plan)
            .await
        {
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

    /// Hands a settled delivery to the batcher.
    async fn settled(&self, delivery: &ClaimedDelivery) {
        let key = (delivery.message_id.clone(), delivery.device_id.clone());
        if self.settled.send(key).await.is_err() {
            // Only at shutdown; the lease brings the delivery back after a restart.
            tracing::debug!("push queue: settling after the batcher stopped");
        }
    }
}
