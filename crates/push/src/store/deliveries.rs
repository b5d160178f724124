//! The durable delivery queue. A push is stored once, with its audience, when it is accepted;
//! the worker expands it to devices as it sends it, a batch at a time (`fan_out.rs`), so a
//! device delivered at the first attempt costs the database nothing of its own. A delivery that
//! must wait (a retry, a busy Web Push origin) gets a row here, keyed by push and device,
//! claimed under a lease, retried on its own schedule and removed once settled. Rows are
//! independent, so any due row may be claimed, the soonest due first.

use std::time::Duration;

use pushwarden_model::{DeviceTarget, PushMessage};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::audience::{Audience, TargetFilter, AUDIENCE_COLUMNS};
use super::fan_out::HEAD_START_MS;
use super::leased::{Leased, Order, RetryPlan, Spec};
use super::registrations::channel_from_row;
use super::{affected, Backend, StoreError};
use crate::apns::Environment;
use crate::registration::{parse_environment, Channel, Platform};

/// The delivery queue's table, keyed by message and device, claimed by due time.
static SPEC: Spec = Spec {
    table: "push_deliveries",
    key: &["message_id", "device_id"],
    order: Order::Due,
    select_claimed: "SELECT d.message_id, d.device_id, d.attempts, d.created_ms, m.push_type, \
        m.payload, m.context_id, r.platform, r.push_token, r.endpoint, r.p256dh, r.auth, \
        r.apns_environment, r.updated_ms \
        FROM push_deliveries d JOIN push_messages m ON m.id = d.message_id \
        LEFT JOIN push_registrations r ON r.device_id = d.device_id \
        WHERE d.lease_token = $1 ORDER BY d.next_attempt_ms",
};

/// The delivery queue: [`Store::deliveries`](super::Store::deliveries).
#[derive(Clone)]
pub struct Deliveries {
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    queue: Leased,
}

/// The most pushes one `INSERT` stores (10 values each, within the bind limit).
pub const MAX_PUSHES_PER_INSERT: usize = 64;

/// A push to store: what was sent, to whom, on which platforms, when.
#[derive(Clone, Debug)]
pub struct NewPush {
    pub target: DeviceTarget,
    pub message: PushMessage,
    pub platforms: Vec<Platform>,
    pub now_ms: i64,
}

/// What [`Deliveries::enqueue`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// `None` when no device matched, so nothing was written.
    pub message_id: Option<String>,
    pub deliveries: u64,
}

/// A delivery claimed by this worker until its lease runs out.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub message_id: String,
    pub device_id: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_ms: i64,
    pub push_type: u8,
    pub payload: String,
    pub context_id: Option<String>,
    /// Where the device is now; `None` if it was unregistered since the push was accepted.
    pub device: Option<ClaimedDevice>,
}

#[derive(Clone, Debug)]
pub struct ClaimedDevice {
    pub platform: Platform,
    pub channel: Channel,
    pub apns_environment: Option<Environment>,
    pub updated_ms: i64,
}

impl ClaimedDelivery {
    /// Its row's key, as [`Deliveries::settle`] and [`Deliveries::retry`] take it.
    pub fn key(&self) -> (String, String) {
        (self.message_id.clone(), self.device_id.clone())
    }
}

impl Deliveries {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        Self {
            queue: Leased::new(pool.clone(), &SPEC),
            pool,
            backend,
        }
    }

    /// Stores a push for the devices on `platforms` that `target` matches, with its audience,
    /// to be expanded to them as it is sent: when this returns, the push survives a restart.
    /// `deliveries` counts the devices that match now; none, and nothing is written.
    pub async fn enqueue(
        &self,
        target: &DeviceTarget,
        message: &PushMessage,
        platforms: &[Platform],
        now_ms: i64,
    ) -> Result<Enqueued, StoreError> {
        let deliveries = self.count_matching(target, platforms).await?;
        if deliveries == 0 {
            return Ok(Enqueued {
                message_id: None,
                deliveries: 0,
            });
        }
        let push = NewPush {
            target: target.clone(),
            message: message.clone(),
            platforms: platforms.to_vec(),
            now_ms,
        };
        let mut ids = self.store_pushes(std::slice::from_ref(&push)).await?;
        Ok(Enqueued {
            message_id: ids.pop(),
            deliveries,
        })
    }

    /// How many registered devices on `platforms` `target` matches now.
    pub async fn count_matching(
        &self,
        target: &DeviceTarget,
        platforms: &[Platform],
    ) -> Result<u64, StoreError> {
        let (count, filter) = TargetFilter::count(target, platforms);
        let n: i64 = filter
            .bind(sqlx::query(&count))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Stores pushes, at most [`MAX_PUSHES_PER_INSERT`] at a time, in one statement (one
    /// commit): when this returns, they survive a restart. Answers their ids, in order.
    pub async fn store_pushes(&self, pushes: &[NewPush]) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(pushes.len());
        let mut tx = self.pool.begin().await?;
        for chunk in pushes.chunks(MAX_PUSHES_PER_INSERT) {
            // Padded to a bucket size with rows that are filtered out, so the database plans a
            // few statements, once.
            let rows = super::fan_out::bucket(chunk.len());
            let values = (0..rows)
                .map(|i| {
                    let n = 1 + 10 * i;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, '', 0, ${} - {HEAD_START_MS})",
                        n,
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5,
                        n + 6,
                        n + 7,
                        n + 8,
                        n + 9,
                        n + 4
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!(
                "INSERT INTO push_messages (id, push_type, payload, context_id, created_ms, \
                 {AUDIENCE_COLUMNS}, expanded_through, expanded, turn_ms) \
                 SELECT * FROM (VALUES {values}) AS v WHERE v.column1 IS NOT NULL"
            );
            let mut query = sqlx::query(&insert);
            for push in chunk {
                let id = uuid::Uuid::new_v4().to_string();
                query = query
                    .bind(Some(id.clone()))
                    .bind(Some(i64::from(push.message.push_type.as_u8())))
                    .bind(Some(push.message.payload.clone()))
                    .bind(push.message.context_id.clone())
                    .bind(Some(push.now_ms));
                let audience = Audience {
                    target: push.target.clone(),
                    platforms: push.platforms.clone(),
                };
                query = audience.bind(query);
                ids.push(id);
            }
            for _ in chunk.len()..rows {
                query = query
                    .bind(None::<String>)
                    .bind(None::<i64>)
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(None::<i64>)
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(None::<i64>)
                    .bind(None::<String>);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Claims up to `limit` due deliveries for `lease`, the soonest due first.
    pub async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.queue
            .claim(now_ms, lease, limit, claimed_from_row)
            .await
    }

    /// Puts a delivery back for a later attempt.
    pub async fn retry(&self, key: &(String, String), plan: &RetryPlan) -> Result<(), StoreError> {
        self.queue.retry(key, plan).await
    }

    /// Puts deliveries back untried, to be claimed again at `next_attempt_ms` (an origin that
    /// is busy or backing off); their attempts are unchanged.
    pub async fn defer(
        &self,
        keys: &[(String, String)],
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        self.queue.defer(keys, next_attempt_ms).await
    }

    /// Frees every delivery's lease (see [`Store::release_all_leases`](super::Store::release_all_leases)).
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let batches = sqlx::query(
            "UPDATE push_batches SET lease_until_ms = 0, lease_token = NULL \
             WHERE lease_token IS NOT NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(self.queue.release_all().await? + affected(batches))
    }

    /// Deletes pushes that are fully expanded and that no batch or delivery refers to any
    /// more. (Finishing a push's last batch deletes it; this catches the rest: a push whose
    /// last retry settled, or whose last batch finished while it was being expanded.)
    pub async fn purge_settled_messages(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "DELETE FROM push_messages WHERE expanded = 1 AND NOT EXISTS \
             (SELECT 1 FROM push_deliveries d WHERE d.message_id = push_messages.id) \
             AND NOT EXISTS (SELECT 1 FROM push_batches b WHERE b.message_id = push_messages.id)",
        )
        .execute(&self.pool)
        .await?;
        Ok(affected(n))
    }

    /// What the queue holds: deliveries waiting for a retry, pushes not yet fully expanded and
    /// batches being sent. 0 means every accepted push is settled.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        let rows = self.queue.pending().await?;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM push_messages WHERE expanded = 0), \
             (SELECT COUNT(*) FROM push_batches)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(rows + row.try_get::<i64, _>(0)? + row.try_get::<i64, _>(1)?)
    }

    /// When there is next something to do, if anything: a retry falls due, a push waits to be
    /// expanded (now), or a batch's lease lapses.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let retry = self.queue.next_due_ms().await?;
        let row = sqlx::query(
            "SELECT (SELECT MIN(turn_ms) FROM push_messages WHERE expanded = 0), \
             (SELECT MIN(lease_until_ms) FROM push_batches)",
        )
        .fetch_one(&self.pool)
        .await?;
        let expand: Option<i64> = row.try_get(0)?;
        let lapse: Option<i64> = row.try_get(1)?;
        Ok([retry, expand, lapse].into_iter().flatten().min())
    }

    /// Pending deliveries per platform: how many in all, and how many of those failed at
    /// least once and wait for a retry.
    pub async fn pending_by_platform(&self) -> Result<Vec<PendingCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT platform, COUNT(*), COUNT(last_error) FROM push_deliveries \
             GROUP BY platform ORDER BY platform",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingCount {
                    platform: r.try_get(0)?,
                    pending: r.try_get(1)?,
                    retrying: r.try_get(2)?,
                })
            })
            .collect()
    }
}

/// Pending deliveries of one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCount {
    pub platform: String,
    pub pending: i64,
    /// Of those, the ones that failed before and wait for a retry.
    pub retrying: i64,
}

fn claimed_from_row(row: &AnyRow) -> Result<ClaimedDelivery, StoreError> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(ClaimedDelivery {
        message_id: row.try_get("message_id")?,
        device_id: row.try_get("device_id")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_ms: row.try_get("created_ms")?,
        push_type: push_type_from_row(row)?,
        payload: row.try_get("payload")?,
        context_id: row.try_get("context_id")?,
        device: device_from_row(row)?,
    })
}

pub(super) fn push_type_from_row(row: &AnyRow) -> Result<u8, StoreError> {
    let push_type: i64 = row.try_get("push_type")?;
    u8::try_from(push_type).map_err(|_| StoreError::Corrupt(format!("push type {push_type}")))
}

/// The device columns of a row (`None` where a left join found no registration).
pub(super) fn device_from_row(row: &AnyRow) -> Result<Option<ClaimedDevice>, StoreError> {
    let Some(name) = row.try_get::<Option<String>, _>("platform")? else {
        return Ok(None);
    };
    let platform = Platform::parse(&name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown platform {name:?}")))?;
    Ok(Some(ClaimedDevice {
        platform,
        channel: channel_from_row(row, platform)?,
        apns_environment: row
            .try_get::<Option<String>, _>("apns_environment")?
            .as_deref()
            .and_then(parse_environment),
        updated_ms: row.try_get::<Option<i64>, _>("updated_ms")?.unwrap_or(0),
    }))
}
