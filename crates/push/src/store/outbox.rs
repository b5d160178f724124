//! The outbox to an upstream relay: requests in Bitwarden's shapes, kept until the relay took
//! them, claimed under a lease and retried like deliveries, but in order: the oldest request
//! goes first, and nothing overtakes it while it waits for a retry.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::Row;

use super::queue::RetryPlan;
use super::{affected, Store, StoreError};

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

impl Store {
    pub async fn outbox_add(
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
    pub async fn outbox_claim(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let head = sqlx::query(
            "SELECT next_attempt_ms FROM relay_outbox WHERE lease_until_ms <= $1 \
             ORDER BY seq LIMIT 1",
        )
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        match head {
            Some(row) if row.try_get::<i64, _>(0)? <= now_ms => {}
            _ => return Ok(Vec::new()),
        }
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now_ms.saturating_add(lease.as_millis() as i64);
        let n = sqlx::query(
            "UPDATE relay_outbox SET lease_until_ms = $1, lease_token = $2 \
             WHERE lease_until_ms <= $3 AND id IN \
             (SELECT id FROM relay_outbox WHERE lease_until_ms <= $3 ORDER BY seq LIMIT $4)",
        )
        .bind(lease_until)
        .bind(token.clone())
        .bind(now_ms)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        if affected(n) == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, method, path, body, attempts, created_ms FROM relay_outbox \
             WHERE lease_token = $1 ORDER BY seq",
        )
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let attempts: i64 = row.try_get("attempts")?;
                Ok(OutboxItem {
                    id: row.try_get("id")?,
                    method: row.try_get("method")?,
                    path: row.try_get("path")?,
                    body: row.try_get("body")?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    created_ms: row.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// Gives claimed items back untouched (their schedule kept), for a batch cut short.
    pub async fn outbox_release(&self, ids: &[String]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query(
                "UPDATE relay_outbox SET lease_until_ms = 0, lease_token = NULL WHERE id = $1",
            )
            .bind(id.clone())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn outbox_done(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM relay_outbox WHERE id = $1")
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_retry(&self, id: &str, plan: &RetryPlan) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE relay_outbox SET attempts = $1, next_attempt_ms = $2, lease_until_ms = 0, \
             lease_token = NULL, last_error = $3 WHERE id = $4",
        )
        .bind(i64::from(plan.attempts))
        .bind(plan.next_attempt_ms)
        .bind(plan.error.chars().take(500).collect::<String>())
        .bind(id.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        Ok(self
            .scalar("SELECT COUNT(*) FROM relay_outbox", &[])
            .await?
            .unwrap_or(0))
    }

    /// When the oldest outbox item falls due, if any (the rest wait behind it).
    pub async fn outbox_next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.scalar(
            "SELECT next_attempt_ms FROM relay_outbox ORDER BY seq LIMIT 1",
            &[],
        )
        .await
    }
}
