//! The outbox to an upstream relay: requests in Bitwarden's shapes, kept until the relay took
//! them, claimed under a lease and retried like deliveries, but in order: the oldest request
//! goes first, and nothing overtakes it while it waits for a retry.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::leased::{Leased, Order, RetryPlan, Spec};
use super::StoreError;

/// The outbox's table, keyed by id, claimed strictly in `seq` order.
static SPEC: Spec = Spec {
    table: "relay_outbox",
    key: &["id"],
    order: Order::Fifo("seq"),
    select_claimed: "SELECT id, method, path, body, attempts, created_ms FROM relay_outbox \
        WHERE lease_token = $1 ORDER BY seq",
};

/// The outbox: [`Store::outbox`](super::Store::outbox).
#[derive(Clone)]
pub struct Outbox {
    pool: AnyPool,
    queue: Leased,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: String,
    pub method: String,
    pub path: String,
    pub body: String,
    pub attempts: u32,
    pub created_ms: i64,
}

/// Increasing sequence numbers: microseconds, bumped past the last one handed out.
fn next_seq(now_ms: i64) -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let candidate = now_ms.saturating_mul(1000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

impl Outbox {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self {
            queue: Leased::new(pool.clone(), &SPEC),
            pool,
        }
    }

    /// Queues a request behind every one queued before it; answers its id.
    pub async fn add(
        &self,
        method: &str,
        path: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO relay_outbox (id, seq, method, path, body, attempts, next_attempt_ms, \
             lease_until_ms, created_ms) VALUES ($1, $2, $3, $4, $5, 0, $6, 0, $6)",
        )
        .bind(id.clone())
        .bind(next_seq(now_ms))
        .bind(method.to_owned())
        .bind(path.to_owned())
        .bind(body.to_owned())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Claims the oldest unclaimed items, in order, when the oldest of them is due; nothing
    /// when it waits for a retry (so no later request overtakes it).
    pub async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.queue.claim(now_ms, lease, limit, item_from_row).await
    }

    /// Gives claimed items back untouched (their schedule kept), for a batch cut short.
    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        self.queue.release(ids).await
    }

    /// Removes items the relay took, or that were dropped for a reason already counted.
    pub async fn settle(&self, ids: &[String]) -> Result<(), StoreError> {
        self.queue.settle(ids).await
    }

    /// Puts an item back for a later attempt; the ones behind it wait for it.
    pub async fn retry(&self, id: &str, plan: &RetryPlan) -> Result<(), StoreError> {
        self.queue.retry(&id.to_owned(), plan).await
    }

    /// Frees every item's lease (see [`Store::release_all_leases`](super::Store::release_all_leases)).
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        self.queue.release_all().await
    }

    /// Items not yet settled.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        self.queue.pending().await
    }

    /// When the oldest item falls due, if any (the rest wait behind it).
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.queue.next_due_ms().await
    }
}

fn item_from_row(row: &AnyRow) -> Result<OutboxItem, StoreError> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(OutboxItem {
        id: row.try_get("id")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        body: row.try_get("body")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_ms: row.try_get("created_ms")?,
    })
}
